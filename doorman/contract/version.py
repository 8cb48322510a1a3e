"""The schema version every stream record carries, and the one check every reader makes of it."""

from __future__ import annotations

from collections.abc import Mapping

SCHEMA_VERSION = 1


def version_problem(obj: Mapping[str, object], required: bool = True) -> str | None:
    """Why `obj`'s `v` is not the one this Doorman reads (None: it is). `required=False`: a record
    without `v` is taken as v1 (alerts and ticks written by hand or by older tools)."""
    v = obj.get("v") if required or "v" in obj else SCHEMA_VERSION
    if type(v) is int and v == SCHEMA_VERSION:
        return None
    if v is None:
        return "missing v"
    return f"unsupported schema version v={v!r} (this Doorman reads v={SCHEMA_VERSION})"
