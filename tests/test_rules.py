"""Each rule on crafted snapshots, then the engine's promises: cooldown, reminders, severity change,
one resolution, inhibition, replay determinism. No processes, no clock: time is the snapshot's ts."""

from __future__ import annotations

import copy

import pytest

from doorman import plugins
from doorman.analyze import Engine, fingerprint, snapshot_problem
from doorman.config import make_config
from doorman.rules import backlog, backlog_growing, latency, redis_down, worker_lost, workers, zombie
from doorman.settings import Config
from doorman.severity import SEVERITIES
from doorman.timefmt import iso, parse_iso

T0 = 1_800_000_000.0


def cfg(cooldown: float = 300.0, **th) -> Config:
    th = {k: list(v) if isinstance(v, tuple) else v for k, v in th.items()}
    return make_config(alert_cooldown_seconds=cooldown, thresholds=th)


def queue(pending: int, heads: list[dict] | None = None) -> dict:
    return {"pending": pending, "by_priority": {"0": pending}, "heads": heads or [],
            "oldest": (heads or [None])[0], "source": "config"}


def head(task_id: str | None, age: float | None = None, name: str = "demo.sleep", priority: int = 0) -> dict:
    return {"task_id": task_id, "task_name": name, "priority": priority,
            "published_at": None, "age_seconds": age}


def worker(name: str, alive: bool = True) -> dict:
    return {"name": name, "alive": alive, "responded": alive, "active": 0, "last_heartbeat": None,
            "heartbeat_freq": None}


def task(task_id: str, runtime: float, worker: str = "w1@test", name: str = "demo.sleep") -> dict:
    return {"task_id": task_id, "task_name": name, "worker": worker, "started_at": None,
            "runtime_seconds": runtime, "queue": "celery", "pid": 1}


def snap(t: float = 0.0, queues: dict | None = None, workers: list | None = None, active: list | None = None,
         connected: bool = True, cluster: str = "prod") -> dict:
    queues = {"celery": queue(0)} if queues is None else queues
    workers = [worker("w1@test")] if workers is None else workers
    if not connected:
        return {"v": 1, "kind": "snapshot", "ts": iso(T0 + t), "cluster": cluster, "broker": "redis://h:6379/0",
                "seq": 1, "trigger": "once", "redis_connected": False, "error": "ConnectionError: refused",
                "pending_tasks": None, "queues": {}, "alive_workers": None, "workers": [], "active_tasks": None,
                "active": [], "unacked": None, "workers_subscribed": None, "collect_ms": 1.0}
    return {"v": 1, "kind": "snapshot", "ts": iso(T0 + t), "cluster": cluster, "broker": "redis://h:6379/0",
            "seq": 1, "trigger": "once", "redis_connected": True, "error": None,
            "pending_tasks": sum(q["pending"] for q in queues.values()), "queues": queues,
            "alive_workers": sum(1 for w in workers if w["alive"]), "workers": workers,
            "active_tasks": len(active or []), "active": active or [], "unacked": None,
            "workers_subscribed": len(workers), "collect_ms": 1.0}


def run_rule(rule, snapshots: list[dict], config: Config, state: dict | None = None) -> list[dict]:
    """Observe every snapshot in turn (as the engine does) and evaluate the last."""
    rule = rule.RULE  # the rule's module
    if state is None:
        state = {}
    if not state:
        state.update(rule.initial_state())
    out: list = []
    for s in snapshots:
        assert snapshot_problem(s) is None
        now = parse_iso(s["ts"])
        rule.observe(s, state, config, now)
        out = rule.evaluate(s, state, config, now)
        assert rule.state_problem(state) is None
    return out


def brief(conds: list[dict]) -> list[tuple]:
    return [(c["alert_type"], c["severity"], c["status"], c["subject"]) for c in conds]


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


# --- the engine ----------------------------------------------------------------------------------

def feed(engine: Engine, snapshots: list[dict]) -> list[dict]:
    out = []
    for s in snapshots:
        out += engine.process(copy.deepcopy(s))
    return out


def test_cooldown_reminder_and_resolution_once():
    e = Engine(cfg(cooldown=300))
    down = [snap(t, workers=[], queues={"celery": queue(5)}) for t in (0, 60, 120, 299)]
    first = feed(e, down)
    assert brief(first) == [("workers_down", "emergency", "firing", "cluster")]
    a = first[0]
    assert a["fingerprint"] == fingerprint("prod", "workers_down", "cluster")
    assert len(a["fingerprint"]) == 32 and a["started_at"] == a["ts"] == iso(T0)
    assert a["message"] == "No workers responding but 5 tasks are pending!"
    reminder = feed(e, [snap(300, workers=[], queues={"celery": queue(5)})])
    assert brief(reminder) == [("workers_down", "emergency", "firing", "cluster")]
    assert reminder[0]["details"]["reminder"] is True and reminder[0]["started_at"] == iso(T0)
    healthy = [snap(t, queues={"celery": queue(5)}) for t in (330, 360, 390)]
    resolved = feed(e, healthy)
    assert brief(resolved) == [("workers_down", "emergency", "resolved", "cluster")]
    assert resolved[0]["fingerprint"] == a["fingerprint"]
    assert resolved[0]["details"]["duration_seconds"] == 330.0


def test_a_page_back_after_its_resolution_is_sent_at_once():
    e = Engine(cfg(cooldown=300))
    out = feed(e, [snap(0, connected=False), snap(30), snap(60, connected=False), snap(120, connected=False)])
    assert brief(out) == [("redis_down", "emergency", "firing", "cluster"),
                          ("redis_down", "emergency", "resolved", "cluster"),
                          ("redis_down", "emergency", "firing", "cluster")]


def test_flapping_warning_within_cooldown_is_held_then_sent_if_it_persists():
    slow, ok = {"mail": queue(1, [head("t1", 100.0)])}, {"mail": queue(0)}
    e = Engine(cfg(cooldown=300))
    out = feed(e, [snap(0, slow), snap(30, ok), snap(60, slow), snap(120, slow)])
    assert brief(out) == [("high_latency", "warning", "firing", "queue:mail"),
                          ("high_latency", "warning", "resolved", "queue:mail")]
    # the second episode is sent once the cooldown since the first notification has passed
    assert brief(feed(e, [snap(300, slow)])) == [("high_latency", "warning", "firing", "queue:mail")]


def test_severity_change_is_not_held_back():
    q = {"mail": queue(1, [head("t1", 100.0)])}
    e = Engine(cfg(cooldown=300))
    assert brief(feed(e, [snap(0, q)])) == [("high_latency", "warning", "firing", "queue:mail")]
    e.config = cfg(cooldown=300, critical_queues=("mail",))  # the operator declares mail critical
    assert brief(feed(e, [snap(10, q)])) == [("high_latency", "critical", "firing", "queue:mail")]
    assert feed(e, [snap(20, q)]) == []
    done = feed(e, [snap(30, {"mail": queue(0)})])
    assert brief(done) == [("high_latency", "critical", "resolved", "queue:mail")]


def test_redis_down_inhibits_and_keeps_other_alerts_unknown():
    e = Engine(cfg(max_queue_size=10))
    big = {"celery": queue(20)}
    assert brief(feed(e, [snap(0, big)])) == [("backlog_explosion", "critical", "firing", "cluster")]
    # while the broker is unknown, the backlog neither resolves nor re-fires
    assert brief(feed(e, [snap(30, connected=False), snap(400, connected=False)])) == [
        ("redis_down", "emergency", "firing", "cluster"), ("redis_down", "emergency", "firing", "cluster")]
    out = feed(e, [snap(430, big)])
    assert brief(out) == [("backlog_explosion", "critical", "firing", "cluster"),
                          ("redis_down", "emergency", "resolved", "cluster")]


def test_workers_down_inhibits_what_it_causes():
    config = cfg(max_queue_size=10, critical_queues=("celery",))
    e = Engine(config)
    two = [worker("w1@test"), worker("w2@test")]
    assert feed(e, [snap(0, workers=two)]) == []
    dead = [worker("w1@test", alive=False), worker("w2@test", alive=False)]
    q = {"celery": queue(20, [head("t1", 120.0)])}
    out = feed(e, [snap(30, q, workers=dead)])
    assert brief(out) == [("workers_down", "emergency", "firing", "cluster")]  # no backlog, latency, worker_lost
    assert [c["alert_type"] for c in e.current] == ["workers_down"]
    # workers back, backlog still there: now it is its own incident
    out = feed(e, [snap(60, q, workers=two)])
    assert brief(out) == [("backlog_explosion", "critical", "firing", "cluster"),
                          ("high_latency", "critical", "firing", "queue:celery"),
                          ("workers_down", "emergency", "resolved", "cluster")]


def test_one_worker_lost_while_others_run_then_back():
    e = Engine(cfg())
    two = [worker("w1@test"), worker("w2@test")]
    out = feed(e, [snap(0, workers=two), snap(30, workers=[worker("w1@test"), worker("w2@test", alive=False)])])
    assert brief(out) == [("worker_lost", "warning", "firing", "worker:w2@test")]
    out = feed(e, [snap(60, workers=two)])
    assert brief(out) == [("worker_lost", "warning", "resolved", "worker:w2@test")]


def test_forgotten_worker_resolves_with_details():
    e = Engine(cfg(worker_forget_seconds=600))
    gone = [worker("w1@test"), worker("w2@test", alive=False)]
    out = feed(e, [snap(0, workers=[worker("w1@test"), worker("w2@test")])]
               + [snap(t, workers=gone) for t in (30, 300, 630, 700, 4000)])
    assert brief(out) == [("worker_lost", "warning", "firing", "worker:w2@test"),
                          ("worker_lost", "warning", "resolved", "worker:w2@test")]
    assert out[1]["details"]["forgotten"] is True and out[1]["ts"] == iso(T0 + 630)


def test_clusters_are_kept_apart():
    e = Engine(cfg())
    out = feed(e, [snap(0, connected=False, cluster="a"), snap(0, cluster="b"), snap(10, cluster="a")])
    assert [(a["cluster"], a["status"]) for a in out] == [("a", "firing"), ("a", "resolved")]


def stream() -> list[dict]:
    """A day in the life: healthy, backlog builds, workers die, broker blips, recovery."""
    out = []
    two = [worker("w1@test"), worker("w2@test")]
    for i in range(200):
        t = i * 30.0
        pending = 50 + (i * 40 if 40 <= i < 70 else 0)
        ws = two if not 100 <= i < 120 else []
        hs = [head(f"id{i // 3}")]
        s = snap(t, {"celery": queue(pending, hs)}, workers=ws,
                 active=[task("z", 2000.0)] if 150 <= i < 160 else [])
        out.append(snap(t, connected=False) if 170 <= i < 175 else s)
    return out


def test_replay_is_deterministic():
    first = feed(Engine(cfg()), stream())
    second = feed(Engine(cfg()), stream())
    assert first == second
    types = {(a["alert_type"], a["status"]) for a in first}
    assert {("backlog_explosion", "firing"), ("backlog_explosion", "resolved"), ("workers_down", "firing"),
            ("zombie_tasks", "firing"), ("redis_down", "firing"), ("redis_down", "resolved")} <= types
    # every resolution follows exactly one earlier firing of the same fingerprint
    open_fps: set[str] = set()
    for a in first:
        if a["status"] == "firing":
            open_fps.add(a["fingerprint"])
        else:
            assert a["fingerprint"] in open_fps
            open_fps.remove(a["fingerprint"])


def test_a_resolution_goes_out_at_the_highest_severity_that_was_sent():
    """Paged as critical, later a warning: the resolve must still reach PagerDuty (min critical)."""
    q = {"mail": queue(1, [head("t1", 100.0)])}
    e = Engine(cfg(cooldown=300, critical_queues=("mail",)))
    assert brief(feed(e, [snap(0, q)])) == [("high_latency", "critical", "firing", "queue:mail")]
    e.config = cfg(cooldown=300)
    assert brief(feed(e, [snap(10, q)])) == [("high_latency", "warning", "firing", "queue:mail")]
    assert brief(feed(e, [snap(20, {"mail": queue(0)})])) == [("high_latency", "critical", "resolved", "queue:mail")]


def test_a_full_alert_table_still_admits_a_page():
    from doorman import analyze

    e = Engine(cfg(cooldown=300))
    cs = e._cluster("prod")
    for i in range(analyze.MAX_ALERTS):
        cs["alerts"][f"fp{i}"] = {"alert_type": "high_latency", "subject": f"queue:q{i}", "title": "t",
                                  "started_at": iso(T0), "emitted": True, "last_sent": T0 + i,
                                  "sent_severity": "warning", "sent": 1}
    out = feed(e, [snap(1, workers=[], queues={"celery": queue(5)})])
    assert ("workers_down", "emergency", "firing", "cluster") in brief(out)
    # the stalest warning made room (evicted silently); the other stale ones resolve as usual
    assert sum(1 for a in out if a["status"] == "resolved") == analyze.MAX_ALERTS - 1


def test_a_state_file_of_the_earlier_layout_is_moved_into_the_rules_slices():
    from doorman.state import state_problem

    old = {"v": 1, "kind": "doorman-analyze-state", "clusters": {"prod": {
        "now": T0, "workers": {"w1@test": T0}, "forgotten": {}, "heads": {"celery": {"t1": T0 - 5}},
        "samples": {"*": [[T0, 3]]}, "trends": {"*": [0.0, 0.0]}, "alerts": {}, "cooldown": {}}}}
    assert state_problem(old) is None
    rules = old["clusters"]["prod"]["rules"]
    assert rules["latency"] == {"heads": {"celery": {"t1": T0 - 5}}}
    assert rules["worker_lost"] == {"workers": {"w1@test": T0}, "forgotten": {}}
    assert rules["backlog_growing"] == {"samples": {"*": [[T0, 3]]}, "trends": {"*": [0.0, 0.0]}}
    assert "heads" not in old["clusters"]["prod"]
    e = Engine(cfg(), old)  # and the engine goes on from it: t1 has waited 65 s at T0 + 60
    got = e.process(snap(60, {"celery": queue(1, [head("t1")])}))
    assert [(a["alert_type"], a["details"]["age_seconds"]) for a in got] == [("high_latency", 65.0)]
