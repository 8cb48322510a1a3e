"""`clusters:`: many brokers watched by one doorman-collect, each with its own config.

Each entry is `{name, broker_url, ...overrides}`. A cluster's effective config is the top-level
one (defaults < file < environment < flags) with the entry's keys applied on top, checked by the
same settings, so a bad value names `clusters[3].thresholds.max_queue_size`. Only keys that
collect and analyze read per broker may be overridden (a rule's or broker's, the core's
per-broker ones); destinations, spool, delivery and scaling are one per process and refused in an
entry rather than silently ignored. `broker_url` and `cluster` then come from the entries only: a
top-level value (file, environment or flag) is refused, since it would watch nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from doorman.config.build import build, given_values
from doorman.config.schema import owners
from doorman.config.settings import THRESHOLDS, TOP, Config
from doorman.config.urls import tls_weakening
from doorman.errors import BadConfig

MAX_CLUSTERS = 256
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
# core keys a cluster may override: what collect and analyze read for one broker
CORE_PER_CLUSTER = frozenset({
    "broker_url", "check_interval", "alert_cooldown_seconds", "flap_window_seconds", "monitored_queues",
    "inspect_timeout", "inspect", "publish_time_header", "tls_ca_file", "tls_insecure", THRESHOLDS,
    "broker_transport_options", "thresholds.queues", "thresholds.reconnect_grace_seconds",
})
PER_CLUSTER_OWNERS = ("rule ", "broker ", "doorman-collect")


def per_cluster(path: str) -> bool:
    """May `path` (`thresholds.max_queue_size`) differ between clusters?"""
    owner = owners().get(path, "")
    return path in CORE_PER_CLUSTER if owner == "doorman" else owner.startswith(PER_CLUSTER_OWNERS)


def expand(top: Config, given: Mapping[str, Mapping[str, Any]], listed: list[Any], src: str,
           origin: Mapping[str, tuple[str, str]]) -> Config:
    """`top` with `clusters` set: one effective `Config` per entry, in the file's order. Every
    config (the top one and each cluster's) knows every cluster's secrets, for scrubbing."""
    if "discovery_cache" in origin:  # one file per broker: a shared path would make them overwrite each other
        source, name = origin["discovery_cache"]
        raise BadConfig(source, name, "one file per broker: with clusters: leave it out (each broker gets its "
                                      "own file under the cache directory) or set it in each entry")
    for key in ("broker_url", "cluster"):
        if key in origin:
            source, name = origin[key]
            raise BadConfig(source, name, "not used with clusters: (each entry names its own "
                                          f"{'broker_url' if key == 'broker_url' else 'name'}); "
                                          f"{'unset' if source == 'environment' else 'remove'} it")
    if not listed:
        raise BadConfig(src, "clusters", "must list at least one {name, broker_url} (or leave the key out)")
    if len(listed) > MAX_CLUSTERS:
        raise BadConfig(src, "clusters", f"at most {MAX_CLUSTERS} entries (run one collector per group)")
    out: list[Config] = []
    seen: set[str] = set()
    for i, entry in enumerate(listed):
        prefix = f"clusters[{i}]."
        if not isinstance(entry, dict):
            raise BadConfig(src, f"clusters[{i}]", f"must be a mapping with name and broker_url, got "
                                                   f"{type(entry).__name__}")
        entry = dict(entry)
        name = _name(entry.pop("name", None), src, prefix, seen)
        for refused in ("cluster", "clusters"):
            if refused in entry:
                raise BadConfig(src, prefix + refused, "not allowed in a cluster entry (its name is `name`)")
        if "broker_url" not in entry and "redis_url" not in entry:
            raise BadConfig(src, prefix + "broker_url", "required: each cluster names its own broker")
        own = given_values(entry, src, prefix)
        _only_per_cluster(own, src, prefix)
        merged = {section: {**values, **own[section]} for section, values in given.items()}
        queues = {q: dict(v) for q, v in given[THRESHOLDS].get("queues", {}).items()}
        for q, over in own[THRESHOLDS].get("queues", {}).items():
            queues[q] = {**queues.get(q, {}), **over}
        merged[THRESHOLDS]["queues"] = queues
        merged[TOP]["cluster"] = name
        cfg = build(merged, src, {}, prefix)
        notes = [f"warning: TLS certificate verification of cluster {name}'s broker is weakened by the URL "
                 f"option {w}" for w in tls_weakening(str(cfg.broker_url))]
        if cfg.tls_insecure and not top.tls_insecure:
            notes.append(f"warning: TLS certificate verification of cluster {name}'s broker is disabled "
                         "(tls_insecure)")
        out.append(cfg.replace(notes=tuple(notes)))
    secrets = tuple(dict.fromkeys(s for c in (top, *out) for s in c.secret_values))
    clusters = tuple(c.replace(secret_values=secrets) for c in out)
    return top.replace(clusters=clusters, secret_values=secrets)


def _name(value: Any, src: str, prefix: str, seen: set[str]) -> str:
    key = prefix + "name"
    if value is None:
        raise BadConfig(src, key, "required: it names the cluster in every snapshot and alert")
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise BadConfig(src, key, f"must be {NAME_RULE}")
    if value in seen:
        raise BadConfig(src, key, f"{value} names two clusters: each name once")
    seen.add(value)
    return value


def _only_per_cluster(own: Mapping[str, Mapping[str, Any]], src: str, prefix: str) -> None:
    for section, values in own.items():
        for key in values:
            path = f"{section}.{key}" if section else key
            if not per_cluster(path):
                raise BadConfig(src, prefix + path, "is one per process, not per cluster: set it at the top level")
