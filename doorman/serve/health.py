"""`/healthz`: healthy when every cluster's newest snapshot is fresh and its broker answered.

Fresh means younger than 3 × check_interval by the wall clock, and not dated ahead of it (a
negative age is stale). The body is small JSON: per
cluster `ok`, `reason` (`stale`, `broker_down`) and the snapshot's age; with no cluster at all
the reason is `no_data`. The broker's error text is not shown here (the page has it, redacted).
"""

from __future__ import annotations

from typing import Any

from doorman.serve.state import State

FRESH_FACTOR = 3


def health(state: State, now: float, check_interval: float) -> tuple[int, dict[str, Any]]:
    limit = FRESH_FACTOR * check_interval
    clusters = []
    with state.lock:
        for cl, c in sorted(state.clusters.items()):
            age = now - c.ts
            # negative: dated ahead of this clock, never "ok" (ingest refuses lines far ahead)
            reason = "stale" if age >= limit or age < 0 else None if c.broker_up else "broker_down"
            clusters.append({"cluster": cl, "ok": reason is None, "reason": reason,
                             "snapshot_age_seconds": round(age, 3)})
    if not clusters:
        return 503, {"status": "unhealthy", "reason": "no_data", "clusters": []}
    bad = [c for c in clusters if not c["ok"]]
    if bad:
        reasons = sorted({str(c["reason"]) for c in bad})
        return 503, {"status": "unhealthy", "reason": ",".join(reasons), "fresh_seconds": limit,
                     "clusters": clusters}
    return 200, {"status": "ok", "fresh_seconds": limit, "clusters": clusters}
