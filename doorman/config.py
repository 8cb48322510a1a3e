"""One configuration for every command: defaults < YAML file < environment < flags.

The keys every command shares are declared in doorman.config_schema (`CORE`); rules, sinks and
brokers declare their own next to their code (`settings`), plugins' included. `schema()` gathers
them all, and the loader, `config.example.yaml`, `docs/configuration.md` and `--help` are made
from it. A bad value is a `BadConfig` naming the file (or `environment` / `--flag`) and the key;
the CLIs print it on one line and exit 2.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any

from doorman import config_clusters, config_warnings, plugins
from doorman.config_schema import all_settings, schema, sections
from doorman.config_values import coerce, plain_http_problem
from doorman.errors import BadConfig
from doorman.redact import url_secrets, webhook_secrets
from doorman.settings import THRESHOLDS, TOP, Config, Section, Setting, Thresholds


def _suggest(key: str, section: str) -> str:
    """The closest known key; at the top level, nested keys are candidates too (with their path)."""
    names = {k: k for k in schema()[section]}
    names.update({a: a for s in schema()[section].values() for a in s.aliases})
    if section == TOP:
        names.update({s.name: s.path for s in all_settings() if s.section})
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f" (did you mean '{names[close[0]]}'?)" if close else ""


def _merge(raw: Mapping[Any, Any], keys: Mapping[str, Setting], source: str, prefix: str,
           section: str) -> dict[str, Any]:
    """Check each given key; an alias (an older name) counts as its key, and is named in errors."""
    aliases = {a: s.name for s in keys.values() for a in s.aliases}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name = f"{prefix}{k}"
        key = aliases.get(k, k) if isinstance(k, str) else k
        if not isinstance(key, str) or key not in keys:
            raise BadConfig(source, name, f"unknown key{_suggest(str(k), section)}")
        if key in out:
            raise BadConfig(source, name, f"the same key as {prefix}{key}: give only one of them")
        out[key] = coerce(v, keys[key], source, name, from_text=False)
    return out


def _queue_overrides(raw: Mapping[Any, Any], source: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    keys = {n: s for n, s in schema()[THRESHOLDS].items() if s.per_queue}
    out: dict[str, dict[str, Any]] = {}
    for q, over in raw.items():
        if not isinstance(over, dict):
            raise BadConfig(source, f"{prefix}thresholds.queues.{q}", "must be a mapping")
        out[str(q)] = _merge(over, keys, source, f"{prefix}thresholds.queues.{q}.", THRESHOLDS)
    return out


def given_values(data: Mapping[Any, Any], src: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """A file's (or a `clusters:` entry's) keys, checked, by section; `prefix` goes before every
    key named in an error (`clusters[3].`)."""
    keys = schema()
    top = _merge(data, keys[TOP], src, prefix, TOP)
    given = {name: _merge(top.pop(name, None) or {}, keys[name], src, f"{prefix}{name}.", name) for name in sections()}
    given[TOP] = top
    given[THRESHOLDS]["queues"] = _queue_overrides(given[THRESHOLDS].get("queues") or {}, src, prefix)
    return given


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


def _finish(values: dict[str, Any], keys: Mapping[str, Setting]) -> dict[str, Any]:
    """Defaults for what is unset, then each key's conversion (lists become tuples)."""
    out = {}
    for name, s in keys.items():
        v = values.get(name, s.default)
        if s.convert is not None and v is not None:
            v = s.convert(v)
        elif isinstance(v, list):
            v = tuple(v)
        out[name] = v
    return out


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
    listed = top.pop("clusters", None)  # many brokers: doorman.config_clusters

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


def build(given: Mapping[str, Mapping[str, Any]], src: str, origin: Mapping[str, tuple[str, str]],
          prefix: str = "") -> Config:
    """The checked `Config` of values given by section (defaults for the rest)."""
    keys = schema()
    values = _finish(dict(given[TOP]), keys[TOP])
    for name in sections():
        finished = _finish(dict(given[name]), keys[name])
        values[name] = Thresholds(finished) if name == THRESHOLDS else Section(finished)
    values["clusters"] = ()
    values["secret_values"] = tuple(_secrets(values))
    values["notes"] = ()
    cfg = Config(values)
    _check_plain_http(cfg, origin)
    for broker in plugins.brokers():
        problem = broker.config_problem(cfg)
        if problem:
            raise BadConfig(src, prefix + problem[0], problem[1])
    return cfg


def _secrets(values: Mapping[str, Any]) -> list[str]:
    """Secret values that differ from their defaults (a URL's secret parts only)."""
    out: list[str] = []
    for s in schema()[TOP].values():
        v = values.get(s.name)
        if not s.secret or not v or v == s.default:
            continue
        if s.type == "broker_url":
            out += url_secrets(v)
        elif s.type == "webhook":
            out += webhook_secrets(v)
        else:
            out.append(str(v))
    return out


def _notes(cfg: Config, path: str | None, file_data: Mapping[str, Any]) -> list[str]:
    notes = []
    secret_keys = [k for n, s in schema()[TOP].items() if s.secret for k in (n, *s.aliases)]
    secret_keys.append("clusters")  # each entry holds a broker_url
    if path and cfg.secrets() and _readable_by_others(path) and any(k in file_data for k in secret_keys):
        notes.append(f"warning: {path} holds secrets and is readable by other users (chmod 600 {path})")
    if cfg.tls_insecure:  # URL options that weaken TLS: doorman.config_warnings
        notes.append("warning: TLS certificate verification of the broker is disabled (tls_insecure)")
    notes += [note for c in cfg.clusters for note in c.notes]  # each cluster's weakened TLS
    return notes


def _check_plain_http(cfg: Config, origin: Mapping[str, tuple[str, str]]) -> None:
    if cfg.allow_insecure_webhooks:
        return
    for s in schema()[TOP].values():
        problem = plain_http_problem(getattr(cfg, s.name)) if s.type == "webhook" else None
        if problem:
            raise BadConfig(*origin.get(s.name, ("config", s.name)), problem)


def _readable_by_others(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o044)
    except OSError:
        return False


def make_config(**values: Any) -> Config:
    """A config from keyword values, as if they were a file's (library use and tests)."""
    return load_config(None, env={}, data=values)
