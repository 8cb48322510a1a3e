"""The rules: one module each, every one a `base.Rule` exported as `RULE`.

A rule owns its alert types (severities, subject, what inhibits them), its configuration keys
(`settings`), the shape of its state and `evaluate`. Adding one means adding a module and naming
it in `doorman.plugins.BUILTIN`; another package adds its own through the `doorman.rules` entry
point group. The engine knows no rule by name.
"""
