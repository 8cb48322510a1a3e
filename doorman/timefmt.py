"""RFC 3339 UTC timestamps, the only time format on Doorman's streams."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache


def iso(ts: float) -> str:
    """Epoch seconds to `2026-11-28T01:02:03.456Z`."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(text: str) -> float:
    """RFC 3339 to epoch seconds; a value without a zone is taken as UTC. Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError("timestamp must be a string")
    return _parse(text)


@lru_cache(maxsize=64)  # one snapshot's ts is parsed by validation, then by the engine
def _parse(text: str) -> float:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


EPOCH_MIN, EPOCH_MAX = 946684800.0, 4102444800.0  # 2000-01-01 .. 2100-01-01


def sane_epoch(value: object) -> float | None:
    """A plausible epoch-seconds timestamp, or None: a stamp in milliseconds, NaN or 1e300 from
    some producer must not crash anyone downstream."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if EPOCH_MIN <= v <= EPOCH_MAX else None
