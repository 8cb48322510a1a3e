"""The tick record (`kind: tick`, docs/contract.md#tick): one analyze cycle went through.

doorman-analyze writes one after each snapshot's alerts when `heartbeat_url` is set;
doorman-notify consumes it for the dead-man's switch (`doorman.notify.heartbeat`) and never
forwards it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypedDict

from doorman.contract.compat import NotRequired
from doorman.contract.snapshot import Snapshot, broker_readable
from doorman.contract.version import SCHEMA_VERSION, version_problem


class Tick(TypedDict):
    v: NotRequired[int]
    kind: Literal["tick"]
    ts: str
    cluster: str
    broker_ok: bool
    alerts: int


FIELDS: dict[str, type] = {"ts": str, "cluster": str, "broker_ok": bool, "alerts": int}


def tick(snap: Snapshot, alerts: int) -> Tick:
    """The record doorman-analyze writes after one snapshot's `alerts` alerts: a cycle went through."""
    return {"v": SCHEMA_VERSION, "kind": "tick", "ts": snap["ts"], "cluster": snap.get("cluster") or "default",
            "broker_ok": broker_readable(snap), "alerts": alerts}


def tick_problem(obj: Mapping[str, object]) -> str | None:
    """Why this `kind: tick` line is not one doorman-analyze wrote (None: it is)."""
    problem = version_problem(obj, required=False)
    if problem:
        return problem
    for name, kind in FIELDS.items():
        value = obj.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"invalid tick: field {name!r} missing or not a {kind.__name__}"
    return None
