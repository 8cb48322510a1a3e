"""doorman-serve: /metrics, /healthz and a history dashboard, reading beside the pipeline."""
