"""One configuration for every command: defaults < YAML file < environment < flags.

The keys every command shares are declared in doorman.config.schema (`CORE`); rules, sinks and
brokers declare their own next to their code (`settings`), plugins' included. `schema()` gathers
them all, and the loader, `config.example.yaml`, `docs/configuration.md` and `--help` are made
from it. A bad value is a `BadConfig` naming the file (or `environment` / `--flag`) and the key;
the CLIs print it on one line and exit 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from doorman.config import clusters as config_clusters
from doorman.config import warnings as config_warnings
from doorman.config.build import build, given_values
from doorman.config.schema import schema
from doorman.config.settings import TOP, Config
from doorman.config.values import coerce
from doorman.errors import BadConfig


def _read_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise BadConfig(path, "", f"cannot read config file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise BadConfig(path, "", f"not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise BadConfig(path, "", f"{where}{problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadConfig(path, "", f"must be a mapping of keys, got {type(data).__name__}")
    return data




def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective config. `overrides` are flags: {key: value}, None meaning unset.
    `data` stands in for a file's content (library use and tests)."""
    env = os.environ if env is None else env
    path = path or env.get("DOORMAN_CONFIG") or None
    file_data = dict(data) if data is not None else (_read_file(path) if path else {})
    src = path or "config"
    keys = schema()
    given = given_values(file_data, src)
    top = given[TOP]
    listed = top.pop("clusters", None)  # many brokers: doorman.config.clusters

    origin = {k: (src, k) for k in top}
    for section, section_keys in keys.items():
        for k, spec in section_keys.items():
            for var in spec.env:
                empty = spec.check("") if env.get(var) == "" and spec.type == "str" and spec.check else None
                if empty:  # `VAR=` usually means "unset" (an env file's blank line) and is skipped, but
                    # a key that refuses an empty value (`cluster`) refuses an empty variable: no silent default
                    raise BadConfig("environment", var, empty)
                if env.get(var):
                    given[section][k] = coerce(env[var], spec, "environment", var, from_text=True)
                    origin[k] = ("environment", var)
                    break

    for k, v in (overrides or {}).items():
        if v is None:
            continue
        section = next(s for s in keys if k in keys[s])
        flag = (flag_names or {}).get(k) or "--" + k.replace("_", "-")
        given[section][k] = coerce(v, keys[section][k], "command line", flag, from_text=isinstance(v, str))
        origin[k] = ("command line", flag)

    cfg = build(given, src, origin)
    if listed is not None:
        cfg = config_clusters.expand(cfg, given, listed, src, origin)
    extra = config_warnings.notes(cfg, keys[TOP], path, origin)  # secrets as flags, writable file, weak TLS
    return cfg.replace(notes=tuple(_notes(cfg, path, file_data) + extra))






def _notes(cfg: Config, path: str | None, file_data: Mapping[str, Any]) -> list[str]:
    notes = []
    secret_keys = [k for n, s in schema()[TOP].items() if s.secret for k in (n, *s.aliases)]
    secret_keys.append("clusters")  # each entry holds a broker_url
    if path and cfg.secrets() and _readable_by_others(path) and any(k in file_data for k in secret_keys):
        notes.append(f"warning: {path} holds secrets and is readable by other users (chmod 600 {path})")
    if cfg.tls_insecure:  # URL options that weaken TLS: doorman.config.warnings
        notes.append("warning: TLS certificate verification of the broker is disabled (tls_insecure)")
    notes += [note for c in cfg.clusters for note in c.notes]  # each cluster's weakened TLS
    return notes




def _readable_by_others(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o044)
    except OSError:
        return False


def make_config(**values: Any) -> Config:
    """A config from keyword values, as if they were a file's (library use and tests)."""
    return load_config(None, env={}, data=values)
