"""doorman-serve's keys in the config file (its other options are flags)."""

from __future__ import annotations

from doorman.config.settings import Setting

SETTINGS = (
    Setting("serve_allowed_hosts", "list", [], ("DOORMAN_SERVE_ALLOWED_HOSTS",),
            "Host names doorman-serve answers to besides loopback names, IP addresses, its bind address "
            "and this machine's name (a request naming another host is refused: DNS rebinding)."),
)
