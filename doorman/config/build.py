"""Checked values into a `Config`: each given key checked against its declaration, defaults for
the rest. Shared by the loader (doorman.config.load) and each `clusters:` entry
(doorman.config.clusters), so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from doorman import plugins
from doorman.config.schema import all_settings, schema, sections
from doorman.config.settings import THRESHOLDS, TOP, Config, Section, Setting, Thresholds
from doorman.config.values import coerce, plain_http_problem
from doorman.errors import BadConfig
from doorman.redact import url_secrets, webhook_secrets


def _suggest(key: str, section: str) -> str:
    """The closest known key; at the top level, nested keys are candidates too (with their path)."""
    import difflib  # only on a mistake: not worth its import at every start
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
    for section, keys in schema().items():
        held = values if section == TOP else values.get(section)
        for s in keys.values():
            v = held.get(s.name) if held is not None else None
            if s.secret and v and v != s.default:
                out += _secret_parts(s.type, v)
    return out


def _secret_parts(kind: str, v: Any) -> list[str]:
    if kind == "broker_url":
        return url_secrets(v)
    return webhook_secrets(v) if kind == "webhook" else [str(v)]


def _check_plain_http(cfg: Config, origin: Mapping[str, tuple[str, str]]) -> None:
    if cfg.allow_insecure_webhooks:
        return
    for s in schema()[TOP].values():
        value = getattr(cfg, s.name)
        if s.type != "webhook" or value == s.default:  # a default is the code's (https): no urllib3 import for it
            continue
        problem = plain_http_problem(value)
        if problem:
            raise BadConfig(*origin.get(s.name, ("config", s.name)), problem)
