"""The dashboard's view of task outcomes: per-snapshot increments for the history, and the newest
snapshot's task table for `/api/v1/status`.

A snapshot's task counts are cumulative since `tasks.since` (the collector's start). The history
stores what each snapshot added (runs, failures, retries, runtime histogram buckets), so a chart
bucket is a plain sum. `Increments` remembers the previous totals per cluster to take the
difference: a new `since` (the collector restarted) counts the new totals from 0; a name new
within one `since` counts its whole total (it was born after the previous snapshot); a value that
goes down within one `since` adds nothing. The very first snapshot serve sees of a cluster is only
a baseline, as Prometheus' `increase()` treats a first sample: its totals may span days.

Bounds: totals are remembered for at most `MAX_TRACKED` names per cluster (the busiest), the
history keeps `HISTORY_TASKS` names per snapshot (the most runs since `since`) and sums the rest
under "(other)", the status table shows `STATUS_ROWS` names. Names are broker data: cut to
`MAX_NAME` characters here, and put into the page as text only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from doorman.contract.shapes import is_count
from doorman.contract.tasks import OTHER, RUNTIME_BUCKETS, quantile

HISTORY_TASKS = 20  # task names kept per snapshot in the history (most runs first), the rest as "(other)"
MAX_TRACKED = 2000  # names whose previous totals are remembered per cluster
STATUS_ROWS = 20  # rows of the status table
MAX_SILENT = 20  # silent workers named in the status
HIST_SIZE = len(RUNTIME_BUCKETS) + 1
# (runs, failed, retried, runtime bucket 0..n): runs = succeeded + failed, as `--human` counts them
Vec = tuple[int, ...]
EVENTS_CODE = {"unknown": 1, "off": 2, "partial": 3, "on": 4}  # 0: no `tasks` section (not read)
CODE_EVENTS = {v: k for k, v in EVENTS_CODE.items()}
MAX_NAME = 200  # characters of a name kept (as doorman.serve.state cuts them)


def name(value: Any) -> str:
    return (value if isinstance(value, str) else str(value))[:MAX_NAME]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _n(c: dict[str, Any], key: str) -> int:
    v = c.get(key)
    return v if type(v) is int and v >= 0 else 0


def _hist(h: Any) -> list[int] | None:
    counts = as_dict(h).get("counts")
    if isinstance(counts, list) and len(counts) == HIST_SIZE and all(is_count(c) for c in counts):
        return counts
    return None


def vec(c: Any) -> Vec:
    """One task name's totals as a flat tuple (zeros for anything malformed)."""
    c = as_dict(c)
    failed = _n(c, "failed")
    hist = _hist(c.get("runtime")) or [0] * HIST_SIZE
    return (_n(c, "succeeded") + failed, failed, _n(c, "retried"), *hist)


def p95(hist: list[int] | list[float] | tuple[int, ...]) -> float | None:
    """The p95 runtime (seconds) of runtime bucket counts, interpolated as histogram_quantile does
    (a rank in the +Inf bucket reads as the last finite bound, 10 s)."""
    return quantile(0.95, [float(x) for x in hist], RUNTIME_BUCKETS)


def _runtime_bounds_ok(tasks: dict[str, Any]) -> bool:
    bounds = as_dict(tasks.get("buckets")).get("runtime")
    return bounds is None or bounds == list(RUNTIME_BUCKETS)


@dataclass
class _Seen:
    since: float
    totals: dict[str, Vec] = field(default_factory=dict)


class Increments:
    """Per cluster, the previous snapshot's totals; `add` answers what a snapshot added per name."""

    def __init__(self) -> None:
        self.seen: dict[str, _Seen] = {}

    def add(self, cluster: str, tasks: Any) -> dict[str, Vec] | None:
        """The increments of the `HISTORY_TASKS` busiest names and "(other)" (rows of zeros left
        out); None when there is nothing to record (no section, or serve's first look)."""
        if not isinstance(tasks, dict) or not isinstance(tasks.get("since"), (int, float)):
            return None
        since = float(tasks["since"])
        keep_hist = _runtime_bounds_ok(tasks)
        totals: dict[str, Vec] = {}
        for raw, c in as_dict(tasks.get("by_name")).items():
            v = vec(c)
            if not keep_hist:
                v = v[:3] + (0,) * HIST_SIZE
            key = name(raw)
            old = totals.get(key)  # two names cut to the same 200 characters: summed
            totals[key] = v if old is None else tuple(a + b for a, b in zip(old, v, strict=True))
        if len(totals) > MAX_TRACKED:
            busiest = sorted(totals, key=lambda k: (-totals[k][0], k))[:MAX_TRACKED]
            totals = {k: totals[k] for k in busiest}
        prev = self.seen.get(cluster)
        if len(self.seen) >= 1000 and prev is None:
            return None
        self.seen[cluster] = _Seen(since, totals)
        if prev is None:
            return None
        same = prev.since == since
        out: dict[str, Vec] = {}
        for key, v in totals.items():
            before = prev.totals.get(key) if same else None
            if before is None:
                d = v
            else:
                d = tuple(max(0, a - b) for a, b in zip(v, before, strict=True))
            if any(d):
                out[key] = d
        ranked = sorted(totals, key=lambda k: (-totals[k][0], k))[:HISTORY_TASKS]
        kept = {k: out[k] for k in ranked if k in out}
        rest = [d for k, d in out.items() if k not in kept]
        if rest:
            other = kept.get(OTHER, (0,) * (3 + HIST_SIZE))
            for d in rest:
                other = tuple(a + b for a, b in zip(other, d, strict=True))
            kept[OTHER] = other
        return kept


class TaskRow(TypedDict):
    name: str
    runs: int
    failed: int
    retried: int
    final_failures: int
    p95_runtime: float | None
    top_exception: str | None
    top_exception_count: int


class TaskSummary(TypedDict):
    events: str
    silent_workers: list[str]
    since: float | None
    names: int  # task names in the snapshot
    rows: list[TaskRow]


def summary(tasks: Any) -> TaskSummary | None:
    """The newest snapshot's task table for the status (None: the snapshot has no `tasks`)."""
    if not isinstance(tasks, dict):
        return None
    events = tasks.get("events")
    silent = tasks.get("silent_workers")
    since = tasks.get("since")
    by_name = as_dict(tasks.get("by_name"))
    keep_hist = _runtime_bounds_ok(tasks)
    ranked = sorted(((k, as_dict(c)) for k, c in by_name.items()),
                    key=lambda kc: (-(_n(kc[1], "succeeded") + _n(kc[1], "failed")), str(kc[0])))[:STATUS_ROWS]
    rows: list[TaskRow] = []
    for key, c in ranked:
        exc = sorted(((name(k), v) for k, v in as_dict(c.get("exceptions")).items() if is_count(v) and v),
                     key=lambda kv: (-kv[1], kv[0]))
        hist = _hist(c.get("runtime")) if keep_hist else None
        q = p95(hist) if hist else None
        rows.append({"name": name(key), "runs": _n(c, "succeeded") + _n(c, "failed"), "failed": _n(c, "failed"),
                     "retried": _n(c, "retried"), "final_failures": _n(c, "final_failures"),
                     "p95_runtime": round(q, 6) if q is not None else None,
                     "top_exception": exc[0][0] if exc else None, "top_exception_count": exc[0][1] if exc else 0})
    return {"events": events if events in EVENTS_CODE else "unknown",
            "silent_workers": [name(w) for w in silent[:MAX_SILENT] if isinstance(w, str)]
            if isinstance(silent, list) else [],
            "since": float(since) if isinstance(since, (int, float)) and not isinstance(since, bool) else None,
            "names": len(by_name), "rows": rows}
