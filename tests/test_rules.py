"""Each rule on crafted snapshots (tests/scenario.py builds them). No processes, no clock: time is
the snapshot's ts."""

from __future__ import annotations

import pytest

from doorman import plugins
from doorman.contract.severity import SEVERITIES
from doorman.rules import backlog, backlog_growing, latency, redis_down, worker_lost, workers, zombie
from tests.support.scenario import T0, brief, cfg, feed, head, queue, run_rule, snap, task, worker

__all__ = ["T0", "brief", "cfg", "feed", "head", "queue", "snap", "task", "worker"]  # for older imports


# --- rules, table-driven -------------------------------------------------------------------------

@pytest.mark.parametrize("snapshot, expected", [
    (snap(connected=False), [("redis_down", "emergency", "firing", "cluster")]),
    (snap(), []),
])
def test_redis_down(snapshot, expected):
    got = run_rule(redis_down, [snapshot], cfg())
    assert brief(got) == expected
    if got:
        assert got[0]["details"] == {"broker": "redis://h:6379/0", "error": "ConnectionError: refused",
                                     "connected": False}
        assert "ConnectionError: refused" in got[0]["message"]


def test_a_broker_that_refuses_the_check_is_redis_down():
    refused = {**snap(connected=False), "redis_connected": True, "error": "NoPermissionError: NOPERM"}
    got = run_rule(redis_down, [refused], cfg())
    assert brief(got) == [("redis_down", "emergency", "firing", "cluster")]
    assert got[0]["title"] == "Redis broker refuses the check" and got[0]["details"]["connected"] is True


@pytest.mark.parametrize("snapshot, expected, message", [
    (snap(workers=[]), [("celery_disconnected", "warning", "firing", "cluster")],
     "No Celery workers responding; the queues are empty, so nothing is waiting yet."),
    (snap(workers=[worker("w1@test", alive=False)]), [("celery_disconnected", "warning", "firing", "cluster")],
     None),
    (snap(workers=[], queues={"celery": queue(5)}), [("workers_down", "emergency", "firing", "cluster")],
     "No workers responding but 5 tasks are pending!"),
    (snap(workers=[], queues={"celery": queue(1)}), [("workers_down", "emergency", "firing", "cluster")],
     "No workers responding but 1 task is pending!"),
    (snap(queues={"celery": queue(5)}), [], None),
])
def test_no_workers(snapshot, expected, message):
    got = run_rule(workers, [snapshot], cfg())
    assert brief(got) == expected
    if message:
        assert got[0]["message"] == message
    if got and got[0]["alert_type"] == "workers_down":
        assert got[0]["details"]["pending_tasks"] == snapshot["pending_tasks"]
        assert got[0]["details"]["queues"] == {"celery": snapshot["pending_tasks"]}


@pytest.mark.parametrize("queues, overrides, expected", [
    ({"celery": queue(1000)}, {}, []),
    ({"celery": queue(1001)}, {}, [("backlog_explosion", "critical", "firing", "cluster")]),
    ({"a": queue(600), "b": queue(401)}, {}, [("backlog_explosion", "critical", "firing", "cluster")]),
    ({"a": queue(60), "b": queue(1)}, {"a": {"max_queue_size": 50}},
     [("backlog_explosion", "critical", "firing", "queue:a")]),
    ({"a": queue(50)}, {"a": {"max_queue_size": 50}}, []),
    ({"a": queue(1200)}, {"a": {"max_queue_size": 2000}}, [("backlog_explosion", "critical", "firing", "cluster")]),
    ({"a": queue(60)}, {"a": {"max_wait_time_seconds": 5}}, []),
])
def test_backlog_explosion(queues, overrides, expected):
    got = run_rule(backlog, [snap(queues=queues)], cfg(queues=overrides))
    assert brief(got) == expected
    for c in got:
        if c["subject"] == "cluster":
            assert c["details"] == {"total_pending": sum(q["pending"] for q in queues.values()),
                                    "threshold": 1000, "queues": {n: q["pending"] for n, q in queues.items()}}
        else:
            assert c["details"]["queue"] == "a" and c["details"]["pending"] == 60
            assert c["details"]["threshold"] == 50


@pytest.mark.parametrize("active, expected_ids", [
    ([task("t1", 1799.0)], []),
    ([task("t1", 1801.0)], ["t1"]),
    ([task("t1", 5.0), task("t2", 4000.0, worker="w2@test"), task("t3", 2000.0)], ["t2", "t3"]),
    ([{**task("t4", 0), "runtime_seconds": None}], []),
])
def test_zombie_tasks(active, expected_ids):
    got = run_rule(zombie, [snap(active=active)], cfg())
    if not expected_ids:
        assert got == []
        return
    assert brief(got) == [("zombie_tasks", "warning", "firing", "cluster")]
    d = got[0]["details"]
    assert [t["task_id"] for t in d["tasks"]] == expected_ids
    assert d["count"] == len(expected_ids) and d["threshold"] == 1800.0
    assert all(t["task_name"] == "demo.sleep" and t["worker"] for t in d["tasks"])
    assert expected_ids[0] in got[0]["message"]


@pytest.mark.parametrize("name, age, critical, expected", [
    ("celery", 61.0, (), [("high_latency", "warning", "firing", "queue:celery")]),
    ("celery", 61.0, ("celery",), [("high_latency", "critical", "firing", "queue:celery")]),
    ("celery", 59.0, ("celery",), []),
    ("mail", 20.0, ("mail",), [("high_latency", "critical", "firing", "queue:mail")]),  # override 10 s
])
def test_high_latency_stamped(name, age, critical, expected):
    s = snap(queues={name: queue(3, [head("t1", age)])})
    got = run_rule(latency, [s], cfg(critical_queues=critical, queues={"mail": {"max_wait_time_seconds": 10}}))
    assert brief(got) == expected
    if got:
        d = got[0]["details"]
        assert d["age_seconds"] == age and d["age_source"] == "published_header" and d["estimated"] is False
        assert d["task_id"] == "t1" and d["queue"] == name


def test_high_latency_estimated_from_head_first_seen():
    config = cfg(critical_queues=("celery",))
    q = {"celery": queue(2, [head("t1"), head("t9", priority=9)])}
    state: dict = {}
    assert run_rule(latency, [snap(0, q)], config, state) == []
    assert run_rule(latency, [snap(60, q)], config, state) == []  # 60 s is not above 60 s
    got = run_rule(latency, [snap(61, q)], config, state)
    assert brief(got) == [("high_latency", "critical", "firing", "queue:celery")]
    d = got[0]["details"]
    assert d["age_source"] == "head_first_seen" and d["estimated"] is True and d["age_seconds"] == 61.0
    assert "at least" in got[0]["message"]
    # the head moved on: a new task id starts from zero
    moved = {"celery": queue(1, [head("t2")])}
    assert run_rule(latency, [snap(62, moved)], config, state) == []
    assert state["heads"] == {"celery": {"t2": T0 + 62}}


def test_worker_lost_lifecycle():
    config = cfg(worker_forget_seconds=3600)
    state: dict = {}
    both = [worker("w1@test"), worker("w2@test")]
    assert run_rule(worker_lost, [snap(0, workers=both)], config, state) == []
    gone = [worker("w1@test"), worker("w2@test", alive=False)]
    got = run_rule(worker_lost, [snap(30, workers=gone)], config, state)
    assert brief(got) == [("worker_lost", "warning", "firing", "worker:w2@test")]
    assert got[0]["details"]["binding_present"] is True
    assert got[0]["details"]["last_seen_alive_seconds_ago"] == 30.0
    # a clean shutdown removes the binding: still lost
    got = run_rule(worker_lost, [snap(60, workers=[worker("w1@test")])], config, state)
    assert brief(got) == [("worker_lost", "warning", "firing", "worker:w2@test")]
    assert got[0]["details"]["binding_present"] is False
    # forgotten after an hour: an explicit resolution saying so, then nothing
    got = run_rule(worker_lost, [snap(3600, workers=gone)], config, state)
    assert brief(got) == [("worker_lost", "warning", "resolved", "worker:w2@test")]
    assert got[0]["details"]["forgotten"] is True
    assert run_rule(worker_lost, [snap(3700, workers=gone)], config, state) == []


def test_stale_binding_of_a_worker_never_seen_alive_does_not_fire():
    s = snap(workers=[worker("w1@test"), worker("ghost@old", alive=False)])
    assert run_rule(worker_lost, [s, s], cfg()) == []


def growth(rates: list[int], step: float = 30.0, overrides: dict | None = None, **th) -> list[dict]:
    state: dict = {}
    out: list[dict] = []
    for i, p in enumerate(rates):
        out = run_rule(backlog_growing, [snap(i * step, {"celery": queue(p)})], cfg(queues=overrides or {}, **th),
                       state)
    return out


@pytest.mark.parametrize("series, expected", [
    ([100, 200, 300, 400, 500, 600], [("backlog_growing", "warning", "firing", "cluster")]),  # 3.3/s, 2 min left
    ([100, 110, 120, 130, 140, 150], []),  # 0.33/s: 42 min to go, beyond the 10 min horizon
    ([500, 600], []),  # too few samples
    ([600, 400, 650, 420, 640, 430], []),  # noise: no trend
    ([900, 900, 900, 900, 900, 900], []),  # flat
    ([500, 400, 300, 200, 100, 50], []),  # draining
    ([600, 700, 800, 900, 1000, 1100], []),  # already over: backlog_explosion's business
])
def test_backlog_growing(series, expected):
    got = growth(series)
    assert brief(got) == expected
    if got:
        d = got[0]["details"]
        assert d["rate_per_second"] == pytest.approx(100 / 30, rel=1e-3)
        assert d["seconds_to_threshold"] == pytest.approx(400 / (100 / 30), rel=1e-3)
        assert d["pending"] == 600 and d["threshold"] == 1000 and d["samples"] == 6
        assert d["queues"] == {"celery": 600}


def test_backlog_growing_per_queue_override_and_min_window():
    got = growth([10, 20, 30, 40, 50, 60], overrides={"celery": {"max_queue_size": 100}})
    assert brief(got) == [("backlog_growing", "warning", "firing", "queue:celery")]
    assert got[0]["details"]["queue"] == "celery"
    # six samples within 25 s: too short a window to trust (needs half of 300 s)
    assert growth([10, 20, 30, 40, 50, 60], step=5, overrides={"celery": {"max_queue_size": 100}}) == []


def test_backlog_growing_samples_are_bounded():
    state: dict = {}
    for i in range(5000):
        run_rule(backlog_growing, [snap(i * 0.5, {"celery": queue(i)})], cfg(), state)
    assert len(state["samples"]["*"]) <= 2 * backlog_growing.SLOTS


def test_every_rule_declares_its_alert_types_settings_and_state():
    seen: set[str] = set()
    for rule in plugins.rules():
        assert rule.name and rule.alert_types
        for t in rule.alert_types:
            assert t.name not in seen and t.summary and t.subject
            assert t.severities and set(t.severities) <= set(SEVERITIES)
            seen.add(t.name)
        assert rule.state_problem(rule.initial_state()) is None
        assert rule.state_problem({"junk": 1} if rule.initial_state() else None) is not None
