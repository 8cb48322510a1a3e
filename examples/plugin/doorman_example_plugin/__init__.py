"""An example Celery Doorman plugin: the rule `example_odd_backlog` and the sink `example_file`."""
