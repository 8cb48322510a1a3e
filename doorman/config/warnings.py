"""Warnings about a configuration that works but exposes something: the config's own caller decides
nothing here, it only prints them (`Config.notes`) on stderr at start.

- A secret given as a flag is in `/proc/PID/cmdline`: every local user sees it with `ps`.
- A config file others can write can redirect alerts (a webhook URL) or silence them; one others
  can read leaks the secrets it holds (that warning is `doorman.config.load`'s).
- Every TLS-weakening broker URL option, however spelled (`doorman.config.urls.tls_weakening`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

from doorman.config.settings import Config, Setting
from doorman.config.urls import tls_weakening
from doorman.redact import url_secrets


def _holds_secret(spec: Setting, value: object) -> bool:
    if not spec.secret or not value or value == spec.default:
        return False
    if spec.type == "broker_url":  # redis://host has nothing secret; redis://:pw@host has
        return bool(url_secrets(str(value)))
    return True


def secret_flags(cfg: Config, specs: Mapping[str, Setting], origin: Mapping[str, tuple[str, str]]) -> list[str]:
    out = []
    for name, spec in specs.items():
        source, flag = origin.get(name, ("", ""))
        if source == "command line" and _holds_secret(spec, getattr(cfg, name, None)):
            env = f"the environment ({spec.env[0]}) or " if spec.env else ""
            out.append(f"warning: {flag} puts a secret on the command line, where every local user sees it "
                       f"(ps, /proc); pass it through {env}the config file (chmod 600) instead")
    return out


def writable_config(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        st = os.stat(path)
    except OSError:
        return []
    if st.st_mode & 0o002:
        return [f"warning: {path} is writable by every user (mode {stat.S_IMODE(st.st_mode):04o}): anyone can "
                f"redirect or silence the alerts (chmod 600 {path})"]
    return []


def tls_warnings(cfg: Config) -> list[str]:
    return [f"warning: TLS certificate verification of the broker is weakened by the URL option {w}"
            for w in tls_weakening(str(cfg.broker_url or ""))]


def notes(cfg: Config, specs: Mapping[str, Setting], path: str | None,
          origin: Mapping[str, tuple[str, str]]) -> list[str]:
    return secret_flags(cfg, specs, origin) + writable_config(path) + tls_warnings(cfg)
