"""Task sections for the task rules' and --human's tests: counts, histograms, a whole `tasks`."""

from __future__ import annotations

from doorman.contract.tasks import QUEUE_WAIT_BUCKETS, RUNTIME_BUCKETS, WAIT_BUCKETS
from tests.support.scenario import T0

SINCE = T0 - 5.0


def hist(runtimes: dict[float, int] | None = None) -> dict:
    """A runtime histogram with `n` runs at each bucket upper bound given."""
    counts = [0] * (len(RUNTIME_BUCKETS) + 1)
    for bound, n in (runtimes or {}).items():
        counts[RUNTIME_BUCKETS.index(bound)] += n
    return {"counts": counts, "count": sum(counts), "sum": sum(b * n for b, n in (runtimes or {}).items())}


def counts(ok: int = 0, failed: int = 0, final: int = 0, retried: int = 0, started: int | None = None,
           exceptions: dict | None = None, runtime: dict | None = None) -> dict:
    started = ok + failed if started is None else started
    return {"sent": 0, "received": started, "started": started, "succeeded": ok, "failed": failed,
            "retried": retried, "rejected": 0, "revoked": 0, "exceptions": exceptions or {},
            "final_failures": final, "runtime": hist(runtime), "wait": hist(), "queue_wait": hist()}


def tasks(by_name: dict, since: float = SINCE, events: str = "on", silent: list | None = None,
          series: list | None = None, lost: dict | None = None) -> dict:
    return {"events": events, "silent_workers": silent or [], "since": since,
            "reader": {"broker": "redis", "subscribed": True, "events": 0, "messages": 0, "bad": 0},
            "buckets": {"runtime": list(RUNTIME_BUCKETS), "queue_wait": list(QUEUE_WAIT_BUCKETS),
                        "wait": list(WAIT_BUCKETS)},
            "by_name": by_name, "by_queue": {}, "by_worker": {}, "series": series or [],
            "lost": lost or {"unsubscribed_seconds": 0.0, "gaps": 0, "by_worker": {}, "total": 0},
            "omitted": {"names": 0, "hostnames": 0, "queues": 0, "series": 0, "exceptions": 0}}
