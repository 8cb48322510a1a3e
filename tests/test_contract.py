"""The contract's checks: one version check, one alert check (notify and serve), the tasks section."""

from __future__ import annotations

import copy

from doorman.contract.alert import alert, alert_problem
from doorman.contract.snapshot import snapshot_problem
from doorman.contract.tasks import QUEUE_WAIT_BUCKETS, RUNTIME_BUCKETS, WAIT_BUCKETS, tasks_problem
from doorman.contract.version import version_problem

PLAIN = dict.fromkeys(("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked"), 1)


def hist(bounds: tuple[float, ...]) -> dict:
    return {"counts": [0] * len(bounds) + [1], "count": 1, "sum": 99.0}


def tasks() -> dict:
    return {
        "events": "on", "silent_workers": [], "since": 1764500000.0,
        "reader": {"broker": "redis", "subscribed": True, "events": 8, "messages": 8, "bad": 0},
        "buckets": {"runtime": list(RUNTIME_BUCKETS), "queue_wait": list(QUEUE_WAIT_BUCKETS), "wait": list(WAIT_BUCKETS)},
        "by_name": {"app.add": {**PLAIN, "exceptions": {"KeyError": 1}, "final_failures": 1,
                                "runtime": hist(RUNTIME_BUCKETS), "wait": hist(WAIT_BUCKETS),
                                "queue_wait": hist(QUEUE_WAIT_BUCKETS)}},
        "by_queue": {"celery": dict(PLAIN)}, "by_worker": {"celery@h": dict(PLAIN)},
        "series": [{**PLAIN, "name": "app.add", "hostname": "celery@h", "queue": "celery", "exceptions": {},
                    "runtime": hist(RUNTIME_BUCKETS), "queue_wait": hist(QUEUE_WAIT_BUCKETS)}],
        "lost": {"unsubscribed_seconds": 0.0, "gaps": 0, "by_worker": {}, "total": 0},
        "omitted": {"names": 0, "hostnames": 0, "queues": 0, "series": 0, "exceptions": 0},
    }


def test_the_tasks_section_is_checked_and_may_be_null():
    snap = {"v": 1, "kind": "snapshot", "ts": "2026-11-28T01:21:25.318Z", "redis_connected": True}
    assert snapshot_problem({**snap, "tasks": None}) is None
    assert snapshot_problem({**snap, "tasks": tasks()}) is None
    bad = tasks()
    bad["by_name"]["app.add"]["runtime"]["counts"].pop()
    assert tasks_problem(bad) == (
        f"tasks.by_name.app.add.runtime.counts must be {len(RUNTIME_BUCKETS) + 1} non-negative integers "
        "(one per bucket, +Inf last)")
    # a malformed task section never costs the snapshot (its broker and worker alerts): it reads as null
    line = {**snap, "tasks": bad}
    assert snapshot_problem(line) is None and line["tasks"] is None
    for path, value in ((("events",), "maybe"), (("series", 0, "hostname"), None), (("lost", "gaps"), -1),
                        (("by_queue", "celery", "failed"), True), (("reader", "subscribed"), "yes")):
        t = copy.deepcopy(tasks())
        node = t
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert tasks_problem(t) is not None, path
    assert tasks_problem([]) == "tasks must be an object or null"


def test_one_version_check():
    assert version_problem({"v": 1}) is None
    assert version_problem({}) == "missing v"
    assert version_problem({}, required=False) is None  # alerts and ticks written by hand
    assert "v=2" in version_problem({"v": 2}, required=False)
    assert version_problem({"v": True}) is not None  # JSON's true is not the number 1


def test_the_alert_builder_writes_what_the_check_takes():
    a = alert("2026-11-28T01:21:25.318Z", "default", "backlog_explosion", "cluster", "0" * 32, "firing",
              "critical", "2026-11-28T01:21:25.318Z", {"total_pending": 9}, "Backlog", "9 pending")
    assert alert_problem(a) is None
    assert alert_problem({**a, "v": 2}).startswith("unsupported schema version v=2")
    assert alert_problem({**a, "ts": "yesterday"}) == "ts is not an RFC 3339 time: 'yesterday'"
    assert alert_problem({**a, "severity": "apocalyptic"}).startswith("severity 'apocalyptic'")
    assert alert_problem({**a, "subject": None}) == "field 'subject' must be a string"
