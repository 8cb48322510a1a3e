"""Configuration: the declared keys (settings, schema), the checks of one value (values, urls,
warnings), and the loader (load: flags > environment > YAML file > defaults; build; clusters).

`docgen` writes config.example.yaml and docs/configuration.md from the declarations.
"""
