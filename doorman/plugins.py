"""Where rules, destinations (sinks) and brokers come from: Doorman's own, then other packages'.

A package adds its own through the entry-point groups `doorman.rules`, `doorman.sinks` and
`doorman.brokers`; each entry point names one object (`my_pkg.rule:RULE`). A plugin that fails to
load, or that reuses a name already taken, is left out with one warning on stderr: a broken
plugin must never take the alert path down with it.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

GROUPS = ("doorman.rules", "doorman.sinks", "doorman.brokers")

# Built-ins, in evaluation (rules) and delivery (sinks) order: module, attribute.
BUILTIN: dict[str, tuple[str, ...]] = {
    "doorman.rules": ("doorman.rules.redis_down:RULE", "doorman.rules.workers:RULE",
                      "doorman.rules.worker_lost:RULE", "doorman.rules.backlog:RULE",
                      "doorman.rules.backlog_growing:RULE", "doorman.rules.zombie:RULE",
                      "doorman.rules.latency:RULE",
                      # issue 12: liveness from the connection table
                      "doorman.rules.ghost_worker:RULE", "doorman.rules.queue_unconsumed:RULE",
                      # issue 13: tasks lost in silence
                      "doorman.rules.redelivery:RULE", "doorman.rules.stranded:RULE",
                      "doorman.rules.broker_memory:RULE", "doorman.rules.broker_errors:RULE",
                      "doorman.rules.results_growing:RULE", "doorman.rules.beat:RULE",
                      # issue 14: RabbitMQ's own risks
                      "doorman.rules.broker_alarm:RULE", "doorman.rules.consumer_timeout:RULE",
                      # issue 16: the opt-in always-firing alert for dead-man receivers
                      "doorman.rules.watchdog:RULE",
                      # issue 24: task outcomes from task events
                      "doorman.rules.task_failure_rate:RULE", "doorman.rules.task_retry_storm:RULE",
                      "doorman.rules.task_slowdown:RULE", "doorman.rules.task_events:RULE"),
    "doorman.sinks": ("doorman.sinks.pagerduty:SINK", "doorman.sinks.webhook:SINK", "doorman.sinks.slack:SINK",
                      "doorman.sinks.alertmanager:SINK"),
    "doorman.brokers": ("doorman.brokers.redis:BROKER", "doorman.brokers.rabbitmq:BROKER"),
}


def _warn(message: str) -> None:
    sys.stderr.write(f"doorman: warning: {message}\n")


# The protocol each group's objects must meet; checked at load, so an incomplete plugin is refused
# with one line instead of failing mid-run on the alert path.
PROTOCOLS: dict[str, str] = {
    "doorman.rules": "doorman.rules.base:Rule",
    "doorman.sinks": "doorman.sinks.base:SinkClass",
    "doorman.brokers": "doorman.brokers.base:BrokerPlugin",
}


def protocol_members(proto: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(attributes, methods) a protocol declares: annotations and properties are attributes,
    plain functions are methods that must be callable."""
    attrs: list[str] = []
    methods: list[str] = []
    for klass in reversed(proto.__mro__):
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        for name in getattr(klass, "__annotations__", {}):
            if not name.startswith("_"):
                attrs.append(name)
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            (attrs if isinstance(value, property) else methods if callable(value) else attrs).append(name)
    return tuple(dict.fromkeys(attrs)), tuple(dict.fromkeys(methods))


def missing(group: str, obj: object) -> list[str]:
    """The members of its group's protocol that `obj` lacks (a method must be callable)."""
    attrs, methods = protocol_members(load_ref(PROTOCOLS[group]))
    return ([m for m in attrs if not hasattr(obj, m)]
            + [m for m in methods if not callable(getattr(obj, m, None))])


def load_ref(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def builtins(group: str) -> tuple[Any, ...]:
    return tuple(load_ref(ref) for ref in BUILTIN[group])


def _dist_name(dirname: str) -> str:
    """`celery_doorman-0.2.0.dist-info` → `celery-doorman` (the name importlib.metadata dedups by)."""
    return re.sub(r"[-_.]+", "-", dirname.rsplit(".", 1)[0].split("-")[0]).lower()


def _parse(text: str) -> dict[str, list[tuple[str, str]]]:
    """The doorman.* sections of an entry_points.txt (an INI file): {group: [(name, value)]}."""
    out: dict[str, list[tuple[str, str]]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section in GROUPS and "=" in line:
            name, _, value = line.partition("=")
            out.setdefault(section, []).append((name.strip(), value.strip()))
    return out


@functools.cache
def _installed() -> dict[str, list[tuple[str, str]]] | None:
    """Every installed package's doorman.* entry points, found by reading only their
    entry_points.txt files, the first distribution of a name on sys.path winning, as
    importlib.metadata does. importlib.metadata costs ~0.1 s at every start (its import, and the
    metadata of every distribution), which a cron check pays each minute. None: a sys.path entry
    is an archive (zip, egg), which only importlib.metadata reads."""
    found: dict[str, list[tuple[str, str]]] = {g: [] for g in GROUPS}
    seen: set[str] = set()
    for entry in sys.path:
        where = entry or "."
        try:
            names = os.listdir(where)
        except NotADirectoryError:
            return None
        except OSError:
            continue
        for n in sorted(names):
            if not n.endswith((".dist-info", ".egg-info")):
                continue
            dist = _dist_name(n)
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(where, n, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError):
                continue
            if "doorman." in text:
                for group, eps in _parse(text).items():
                    found[group] += eps
    return found


def entry_points(group: str) -> list[tuple[str, str]]:
    """(name, value) of every installed entry point of `group`, sorted by name."""
    installed = _installed()
    if installed is None:
        from importlib.metadata import entry_points as scan

        return sorted((ep.name, ep.value) for ep in scan(group=group))
    return sorted(installed[group])


def load_value(value: str) -> Any:
    """An entry point's object: `module:attr.sub`, extras (`[x]`) ignored."""
    module, _, attrs = value.split("[", 1)[0].strip().partition(":")
    obj = importlib.import_module(module.strip())
    for attr in filter(None, attrs.strip().split(".")):
        obj = getattr(obj, attr)
    return obj


@functools.cache
def load(group: str, warn: Callable[[str], None] = _warn) -> tuple[Any, ...]:
    """The objects of one group: built-ins first, then installed plugins sorted by name."""
    found = {obj.name: obj for obj in builtins(group)}
    for ep_name, value in entry_points(group):
        try:
            obj = load_value(value)
            lacks = missing(group, obj)
            name = None if lacks else obj.name
        except Exception as e:  # noqa: BLE001 - any failure of foreign code: leave it out, say so
            warn(f"plugin {ep_name!r} ({value}) of {group} not loaded: {type(e).__name__}: {e}")
            continue
        if lacks or not isinstance(name, str) or not name:
            what = f"it lacks {', '.join(lacks)}" if lacks else "its name is not a non-empty string"
            warn(f"plugin {ep_name!r} ({value}) of {group} not loaded: {what}")
            continue
        if name in found:
            if found[name] is not obj:
                warn(f"plugin {ep_name!r} of {group} not loaded: the name {name!r} is taken")
            continue
        found[name] = obj
    return tuple(found.values())


def rules() -> tuple[Any, ...]:
    return load("doorman.rules")


def sinks() -> tuple[Any, ...]:
    return load("doorman.sinks")


def brokers() -> tuple[Any, ...]:
    return load("doorman.brokers")
