"""Shape checks for JSON read back from a stream or a file: exact types, no coercion.

`type(v) in (int, float)` rather than isinstance: JSON's `true` must not count as the number 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def is_num(v: Any) -> bool:
    return type(v) in (int, float)


def is_count(v: Any) -> bool:
    """A non-negative integer."""
    return type(v) is int and v >= 0


def map_of(v: Any, check: Callable[[Any], bool]) -> bool:
    """A dict of str keys whose values all pass `check`."""
    return isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def as_map(v: object) -> dict[str, Any]:
    """`v` itself when it is a JSON object, else an empty one: a part of a record whose shapes the
    reader checks field by field (hostile shapes read as "nothing")."""
    return v if isinstance(v, dict) else {}


def finite(v: Any) -> float | None:
    """A JSON number as a float, or None for anything else (bools, NaN, infinities, text)."""
    if type(v) not in (int, float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None
