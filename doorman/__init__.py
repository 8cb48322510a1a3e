"""Celery Doorman: alerts for Celery deployments, as a pipeline of NDJSON commands."""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
