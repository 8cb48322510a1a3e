"""Celery Doorman: alerts for Celery deployments, as a pipeline of NDJSON commands."""

__version__ = "0.2.0"  # the fallback of --version in a checkout never installed; pyproject.toml is the truth
from doorman.contract.version import SCHEMA_VERSION  # noqa: E402 - its home is the contract; kept here for plugins

__all__ = ["SCHEMA_VERSION", "__version__"]
