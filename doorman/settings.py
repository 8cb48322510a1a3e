"""Plugins' import path for configuration declarations: `doorman.settings.Setting` and `Config`.

Kept stable for plugins written against it; the code lives in doorman.config.settings.
"""

from doorman.config.settings import (  # noqa: F401 - re-exported for plugins
    THRESHOLDS,
    TOP,
    TRANSPORT,
    TYPES,
    Config,
    Section,
    Setting,
    Thresholds,
    queue_names,
)

__all__ = ["THRESHOLDS", "TOP", "TRANSPORT", "TYPES", "Config", "Section", "Setting", "Thresholds", "queue_names"]
