"""`doorman-check-config`: every problem of a configuration, before a restart, without a broker.

The loader stops at the first bad key (a stage must not start half-configured); a check should
name them all. So the check loads as a stage would (file < environment < flags), and after each
`BadConfig` takes the key it named out of the file (or the environment, or the flags) and loads
again, until the rest loads. Plugins that fail to load are problems too (a stage would run
without them). `reachability()` is the only part that touches the network, and only when asked.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from doorman import plugins
from doorman.config.load import _read_file, load_config
from doorman.config.schema import schema
from doorman.config.settings import TOP, Config
from doorman.errors import BadConfig
from doorman.redact import Scrubber, redact_url, redact_webhook, url_secrets, webhook_secrets

MAX_PROBLEMS = 100  # a file of garbage is not worth a thousand lines
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass
class Report:
    """What the check found. `problems` are lines in BadConfig's format (`file: key: problem`)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: Config | None = None
    secrets: list[str] = field(default_factory=list)


def check(path: str | None, env: Mapping[str, str] | None = None,
          overrides: Mapping[str, Any] | None = None, flag_names: Mapping[str, str] | None = None) -> Report:
    """Every problem of the configuration a stage would load from these file, environment and flags."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("DOORMAN_CONFIG") or None
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    report = Report()
    for group in plugins.GROUPS:  # a plugin that fails to load: the stage would run without it
        plugins.load(group, lambda msg, g=group: report.problems.append(f"{g}: {msg}"))
    data: dict[str, Any] | None = None
    if path:
        try:
            data = _read_file(path)
        except BadConfig as e:
            report.problems.append(str(e))
            return report
    report.secrets = _secrets(data or {}, env, flags)
    for _ in range(MAX_PROBLEMS):
        try:
            cfg = load_config(path, env=env, overrides=flags, flag_names=flag_names, data=data or {})
        except BadConfig as e:
            report.problems.append(str(e))
            if not _drop(e, path, data, env, flags, flag_names or {}):
                break  # nothing left to take out: the rest cannot be checked past this one
            continue
        if not report.problems:
            report.config = cfg
            report.notes = list(cfg.notes)
        break
    scrub = Scrubber(report.secrets)
    report.problems = [scrub(p) for p in report.problems]
    report.notes = [scrub(n) for n in report.notes]
    return report


def _drop(e: BadConfig, path: str | None, data: dict[str, Any] | None, env: dict[str, str],
          flags: dict[str, Any], flag_names: Mapping[str, str]) -> bool:
    """Take the key `e` names out of where it came from; False when it is not found there."""
    if e.source == "environment":
        return env.pop(e.key, None) is not None
    if e.source == "command line":
        for k in list(flags):
            if (flag_names.get(k) or "--" + k.replace("_", "-")) == e.key:
                del flags[k]
                return True
        return False
    if data is None or e.source != path or not e.key:
        return False
    return _remove(data, e.key)


def _remove(data: Any, key: str) -> bool:
    """Remove `clusters[3].thresholds.max_queue_size` (a path as BadConfig names it) from `data`."""
    steps: list[str | int] = [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _STEP.finditer(key)]
    node = data
    for step in steps[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    last = steps[-1] if steps else None
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = {}  # keeps the entries' numbers as the file has them; {} is one more problem, named
        return True
    return False


def _secrets(data: Mapping[str, Any], env: Mapping[str, str], flags: Mapping[str, Any]) -> list[str]:
    """Every value of a secret key, wherever given, in case a problem line quotes it."""
    out: list[str] = []
    values: list[tuple[str, Any]] = []
    for section, keys in schema().items():
        given = data if section == TOP else data.get(section)
        for s in keys.values():
            if not s.secret:
                continue
            for name in (s.name, *s.aliases):
                values.append((s.type, given.get(name) if isinstance(given, dict) else None))
            values += [(s.type, env.get(v)) for v in s.env]
    for s in schema()[TOP].values():
        if not s.secret:
            continue
        values.append((s.type, flags.get(s.name)))
    listed = data.get("clusters")
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict):
            values += [("broker_url", entry.get("broker_url")), ("broker_url", entry.get("redis_url"))]
            beat = entry.get("beat")
            values.append(("broker_url", beat.get("redis_url") if isinstance(beat, dict) else None))
    for kind, v in values:
        if not isinstance(v, str) or not v:
            continue
        out += url_secrets(v) if kind == "broker_url" else webhook_secrets(v) if kind == "webhook" else [v]
        if kind not in ("broker_url", "webhook") and "://" in v:
            out += [s for u in v.split(",") for s in webhook_secrets(u.strip())]
    return out


# ------------------------------------------------------------------ --connect


@dataclass
class Answer:
    what: str  # "broker of cluster default", "destination webhook"
    shown: str  # the URL with its secrets masked
    ok: bool
    detail: str


def _broker_addresses(url: str) -> list[tuple[str, Any]]:
    """Where a broker URL points: (family name, address) per host; a sentinel list gives several."""
    from urllib.parse import urlsplit

    ports = {"redis": 6379, "rediss": 6379, "sentinel": 26379, "amqp": 5672, "amqps": 5671, "pyamqp": 5672}
    out: list[tuple[str, Any]] = []
    for part in url.split(";"):
        p = urlsplit(part)
        if p.scheme == "unix":
            out.append(("unix", p.path))
        elif p.hostname:
            out.append(("tcp", (p.hostname, p.port or ports.get(p.scheme, 6379))))
    return out


def _dial(family: str, address: Any, timeout: float) -> str:
    """Open a connection and close it at once; the time it took. Raises OSError."""
    start = time.monotonic()
    if family == "unix":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(address)
    else:
        socket.create_connection(address, timeout=timeout).close()
    return f"answered in {(time.monotonic() - start) * 1000:.0f} ms"


def _destination_urls(cfg: Config) -> list[tuple[str, str]]:
    """(sink name, URL) for every configured destination: its switch key when it is a URL (or a
    comma-separated list of them), and its other URL keys."""
    from doorman.sinks.base import switch_setting

    out: list[tuple[str, str]] = []
    for plugin in plugins.sinks():
        switch = switch_setting(plugin)
        if switch is None or not cfg.get(switch.name):
            continue  # the destination is off
        for s in plugin.settings:
            value = cfg.get(s.name)
            if isinstance(value, str) and (s.type == "webhook" or (s is switch and "://" in value)):
                out += [(plugin.name, u.strip()) for u in value.split(",") if u.strip()]
    return out


def reachability(cfg: Config, timeout: float, dial: Callable[[str, Any, float], str] = _dial) -> list[Answer]:
    """Try each broker and each destination's host once (a TCP connect, nothing sent: no alert is
    ever posted), each within `timeout` seconds."""
    from doorman.config.urls import webhook_parts

    answers: list[Answer] = []
    for c in cfg.clusters or (cfg,):
        url = str(c.broker_url)
        what = f"broker of cluster {c.cluster}"
        for family, address in _broker_addresses(url) or [("tcp", None)]:
            answers.append(_try(what, redact_url(url) or "", family, address, timeout, dial))
    for name, url in _destination_urls(cfg):
        scheme, host, port = webhook_parts(url)
        address = (host, port or (443 if scheme == "https" else 80)) if host else None
        answers.append(_try(f"destination {name}", redact_webhook(url) or "", "tcp", address, timeout, dial))
    return answers


def _try(what: str, shown: str, family: str, address: Any, timeout: float,
         dial: Callable[[str, Any, float], str]) -> Answer:
    if address is None:
        return Answer(what, shown, False, "no host in the URL")
    where = address if family == "unix" else f"{address[0]}:{address[1]}"
    try:
        return Answer(what, shown, True, f"{where} {dial(family, address, timeout)}")
    except TimeoutError:
        return Answer(what, shown, False, f"{where} did not answer within {timeout:g} s")
    except OSError as e:
        return Answer(what, shown, False, f"{where} did not answer: {e.strerror or type(e).__name__}")
