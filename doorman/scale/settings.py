"""The `scale:` section: pools of queues, their bounds and targets, and the policy's windows.

A pool is written `scale.pools.<name>: {queues, min, max, target_wait_seconds}`; `min`, `max` and
`target_wait_seconds` may be left out to take the section's defaults. Without `pools`, one pool
named `default` covers every queue in the snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from doorman.config.settings import Config, Setting
from doorman.contract.shapes import finite
from doorman.errors import BadConfig

SECTION = "scale"
POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # safe in argv, a k8s name, a unit name
POOL_KEYS = ("queues", "min", "max", "target_wait_seconds")


def _number(v: Any) -> bool:
    return finite(v) is not None


def _not_negative(v: float) -> str | None:
    return "must be 0 or more" if v < 0 else None


def pool_problem(name: Any, spec: Any) -> str | None:
    """What is wrong with one pool's own entry (bounds against the section defaults come later)."""
    if not isinstance(name, str) or not POOL_NAME.match(name):
        return (f"{name!r}: a pool name is 1-63 letters, digits, '_', '.' or '-' "
                "(it goes into commands and metric labels)")
    if not isinstance(spec, dict):
        return f"{name}: must be a mapping with queues, min, max, target_wait_seconds"
    unknown = sorted(str(k) for k in spec if k not in POOL_KEYS)
    if unknown:
        return f"{name}.{unknown[0]}: unknown key (a pool has {', '.join(POOL_KEYS)})"
    queues = spec.get("queues")
    if not isinstance(queues, list) or not queues or not all(isinstance(q, (str, int)) for q in queues):
        return f"{name}.queues: a pool needs a non-empty list of queue names"
    for key in ("min", "max"):
        v = spec.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            return f"{name}.{key}: must be a whole number of workers, 0 or more"
    if spec.get("max") == 0:
        return f"{name}.max: must be 1 or more"
    t = spec.get("target_wait_seconds")
    if t is not None and (not _number(t) or t <= 0):
        return f"{name}.target_wait_seconds: must be a number of seconds above 0"
    return None


def pools_problem(value: Any) -> str | None:
    if not value:
        return "give at least one pool, or leave `pools` out for one pool over every queue"
    for name, spec in value.items():
        problem = pool_problem(name, spec)
        if problem:
            return problem
    return None


def command_problem(value: Any) -> str | None:
    if "{desired}" not in value:
        return "the command template must contain {desired} (and may contain {pool})"
    import shlex

    try:
        if not shlex.split(value):
            return "the command template is empty"
    except ValueError as e:
        return f"cannot split the command template into arguments ({e})"
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting(SECTION, "map", None, (), "doorman-scale: pools of queues and how they are sized (docs/scale.md)."),
    Setting("pools", "map", None, (),
            "{name: {queues: [...], min, max, target_wait_seconds}}; default: one pool `default` over all queues.",
            section=SECTION, check=pools_problem),
    Setting("min_workers", "int", 1, ("DOORMAN_SCALE_MIN_WORKERS",),
            "Fewest workers of a pool that does not set `min` (0 allows scaling to zero when idle).",
            section=SECTION, check=_not_negative),
    Setting("max_workers", "int", 10, ("DOORMAN_SCALE_MAX_WORKERS",),
            "Most workers of a pool that does not set `max`.", section=SECTION, positive=True),
    Setting("target_wait_seconds", "float", 60.0, ("DOORMAN_SCALE_TARGET_WAIT_SECONDS",),
            "Longest a task should wait in its queue, for a pool that does not set it.", section=SECTION,
            positive=True),
    Setting("stabilization_seconds", "float", 300.0, ("DOORMAN_SCALE_STABILIZATION_SECONDS",),
            "A pool shrinks only after needing fewer workers for this long, and at most once per window.",
            section=SECTION, check=_not_negative),
    Setting("rate_window_seconds", "float", 60.0, ("DOORMAN_SCALE_RATE_WINDOW_SECONDS",),
            "Time constant of the arrival and service rate averages.", section=SECTION, positive=True),
    Setting("stale_after_seconds", "float", 120.0, ("DOORMAN_SCALE_STALE_AFTER_SECONDS",),
            "No decision when snapshots are further apart than this (the data is stale).", section=SECTION,
            positive=True),
    Setting("exec_command", "str", None, ("DOORMAN_SCALE_EXEC",),
            "Command run on each change, e.g. `kubectl scale deployment/{pool} --replicas={desired}` (no shell).",
            section=SECTION, check=command_problem),
    Setting("exec_timeout_seconds", "float", 120.0, ("DOORMAN_SCALE_EXEC_TIMEOUT_SECONDS",),
            "A command running longer is killed and reported as failed.", section=SECTION, positive=True),
)


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[str, ...] | None  # None: every queue of the snapshot
    min: int
    max: int
    target_wait: float


def pools(cfg: Config, source: str) -> list[Pool]:
    """The configured pools, each bound checked against the section's defaults. `source` names the
    file in errors."""
    s = cfg.scale
    if s.min_workers > s.max_workers:
        raise BadConfig(source, "scale.min_workers", f"min_workers ({s.min_workers}) is more than "
                                                     f"max_workers ({s.max_workers})")
    if not s.pools:
        return [Pool("default", None, s.min_workers, s.max_workers, float(s.target_wait_seconds))]
    out = []
    for name, spec in s.pools.items():
        lo = spec.get("min", s.min_workers)
        hi = spec.get("max", s.max_workers)
        if lo > hi:
            key = "min" if "min" in spec else "max"
            raise BadConfig(source, f"scale.pools.{name}.{key}", f"min ({lo}) is more than max ({hi})")
        queues = tuple(dict.fromkeys(str(q) for q in spec["queues"]))
        out.append(Pool(name, queues, lo, hi, float(spec.get("target_wait_seconds", s.target_wait_seconds))))
    return out
