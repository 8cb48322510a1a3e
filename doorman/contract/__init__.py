"""The stream contract (schema `v: 1`): one module per record, each with its type and its check.

snapshot (collect -> analyze, serve, scale), tasks (the snapshot's task-event section), alert
(analyze -> notify, serve, the webhook), tick (analyze -> notify), delivery (notify's stdout);
version holds SCHEMA_VERSION and the one version check; severity and shapes are shared helpers.
"""

from doorman.contract.version import SCHEMA_VERSION, version_problem

__all__ = ["SCHEMA_VERSION", "version_problem"]
