"""Brokers Doorman can read: one module each, behind `doorman.brokers.base.BrokerPlugin`.

The scheme of `broker_url` picks the plugin, among Doorman's own and those installed through the
entry-point group `doorman.brokers` (see `doorman.plugins`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from doorman import plugins
from doorman.errors import DoormanError

if TYPE_CHECKING:
    from doorman.brokers.base import Broker, BrokerPlugin
    from doorman.config.settings import Config


def scheme_of(url: str) -> str:
    """The scheme of a broker URL (of its first part, for `;`-separated sentinel lists)."""
    try:
        return urlsplit(url.split(";")[0]).scheme
    except ValueError:
        return ""


def for_url(url: str) -> BrokerPlugin:
    """The plugin serving the URL's scheme (the config loader has already refused other schemes)."""
    scheme = scheme_of(url)
    for plugin in plugins.brokers():
        if scheme in plugin.schemes:
            return plugin
    raise DoormanError(f"no broker plugin serves the scheme {scheme!r}")


def connect(cfg: Config) -> Broker:
    """A connected broker for `cfg.broker_url` (nothing is sent yet: a down broker does not fail here)."""
    return for_url(cfg.broker_url).connect(cfg)
