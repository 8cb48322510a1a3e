"""Celery Doorman: alerts for Celery deployments, as a pipeline of NDJSON commands."""

__version__ = "0.2.0"  # the fallback of --version in a checkout never installed; pyproject.toml is the truth
SCHEMA_VERSION = 1
