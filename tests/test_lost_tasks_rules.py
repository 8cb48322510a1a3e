"""The lost-task rules (issue 13) on crafted snapshots: thresholds, state, inhibition, hostile data.
The same rules against real servers: tests/test_lost_tasks.py."""

from __future__ import annotations

import pytest

from doorman.analyze.engine import Engine
from doorman.config.load import make_config
from doorman.rules import beat, broker_errors, broker_memory, redelivery, results_growing, stranded
from tests.support.scenario import brief, cfg, feed, queue, run_rule, snap, worker


def unacked(age: float | None, vt: float = 100.0, count: int = 1, overdue: int | None = None, oldest=None) -> dict:
    return {"count": count, "oldest_delivered_at": None, "oldest_age_seconds": age, "visibility_timeout": vt,
            "overdue": overdue, "oldest": oldest if oldest is not None else
            [{"task_id": "t1", "task_name": "app.long", "delivered_at": None, "age_seconds": age}]}


def with_(s: dict, **fields) -> dict:
    return {**s, **fields}


def health(used=1000, limit=2000, policy="noeviction", evicted=0, oom=0, keyspace=None) -> dict:
    return {"server": "redis", "version": "7.0.15", "used_memory_bytes": used, "max_memory_bytes": limit,
            "eviction_policy": policy, "evicted_keys": evicted, "oom_errors": oom, "connected_clients": 3,
            "keyspace": keyspace, "alarms": None}


@pytest.mark.parametrize("age, expected", [
    (79.0, []),
    (80.0, [("redelivery_risk", "warning", "firing", "cluster")]),
    (100.0, [("redelivery_risk", "critical", "firing", "cluster")]),
    (None, []),
])
def test_redelivery_risk_at_80_percent_and_past_the_timeout(age, expected):
    got = run_rule(redelivery, [with_(snap(), unacked=unacked(age, overdue=1))], cfg())
    assert brief(got) == expected
    if got:
        assert got[0]["details"]["tasks"] == [{"task_id": "t1", "task_name": "app.long", "age_seconds": age}]
        assert "app.long[t1]" in got[0]["message"]


def test_stranded_needs_no_live_worker_and_an_overdue_message():
    dead = [worker("w1@test", alive=False)]
    overdue = unacked(150.0, overdue=3)
    assert run_rule(stranded, [with_(snap(), unacked=overdue)], cfg()) == []  # a worker will restore them
    assert run_rule(stranded, [with_(snap(workers=dead), unacked=unacked(50.0))], cfg()) == []  # not overdue
    got = run_rule(stranded, [with_(snap(workers=dead), unacked=overdue)], cfg())
    assert brief(got) == [("unacked_stranded", "critical", "firing", "cluster")]
    assert got[0]["details"]["count"] == 3 and got[0]["details"]["oldest_age_seconds"] == 150.0
    unknown = with_(snap(workers=[{**worker("w1@test"), "alive": None}]), alive_workers=None, unacked=overdue)
    assert run_rule(stranded, [unknown], cfg()) == []  # liveness unknown (full broker): no guess


def test_stranded_pages_through_workers_down_and_holds_redelivery_risk():
    engine = Engine(cfg())
    dead = with_(snap(queues={"celery": queue(4)}, workers=[worker("w1@test", alive=False)]),
                 unacked=unacked(150.0, overdue=1))
    types = {a["alert_type"] for a in feed(engine, [dead])}
    assert types == {"workers_down", "unacked_stranded"}  # redelivery_risk is held back


def test_memory_rules_read_info_figures_only():
    conf = cfg()
    assert run_rule(broker_memory, [with_(snap(), broker_health=health(limit=0, policy="allkeys-lru"))], conf) == []
    got = run_rule(broker_memory, [with_(snap(), broker_health=health(used=1900, policy="allkeys-lru"))], conf)
    assert brief(got) == [("broker_eviction_policy", "warning", "firing", "policy:allkeys-lru"),
                          ("broker_memory_high", "critical", "firing", "cluster")]
    assert "noeviction" in got[0]["message"] and got[1]["details"]["ratio"] == 0.95
    assert run_rule(broker_memory, [with_(snap(), broker_health=health(used=1700))], conf) == []


def test_eviction_and_oom_fire_on_a_rise_hold_then_resolve_and_a_restart_is_a_baseline():
    conf = cfg()
    state: dict = {}
    h = [health(evicted=5, oom=0), health(evicted=9, oom=2), health(evicted=9, oom=2)]
    got = run_rule(broker_errors, [with_(snap(t=i * 10), broker_health=x) for i, x in enumerate(h)], conf, state)
    assert brief(got) == [("broker_evicting", "critical", "firing", "cluster"),
                          ("broker_oom", "emergency", "firing", "cluster")]
    assert got[0]["details"]["new"] == 4 and got[1]["details"]["new"] == 2
    later = with_(snap(t=400), broker_health=health(evicted=9, oom=2))
    assert run_rule(broker_errors, [later], conf, state) == []  # held 300 s, then clear
    restarted = with_(snap(t=410), broker_health=health(evicted=0, oom=0))
    assert run_rule(broker_errors, [restarted], conf, state) == []
    first = run_rule(broker_errors, [with_(snap(), broker_health=health(evicted=100, oom=100))], conf, {})
    assert first == []  # a counter since the server started is a baseline, not news


@pytest.mark.parametrize("junk", [
    {"used_memory_bytes": True, "max_memory_bytes": "2000", "evicted_keys": -1, "oom_errors": None},
    {"keyspace": {"db0": {"keys": "many"}}, "max_memory_bytes": 1e300},
    "not an object", None, [],
])
def test_hostile_broker_health_never_crashes_a_rule(junk):
    bad = with_(snap(), broker_health={**health(), **junk} if isinstance(junk, dict) else junk,
                unacked={"count": "x", "oldest_age_seconds": "old", "visibility_timeout": 0, "oldest": "no"},
                beat={"canary": {"present": "yes", "age_seconds": [], "key": {"x": 1}}, "redbeat": {"late": "x"}})
    for rule in (broker_memory, broker_errors, results_growing, redelivery, stranded, beat):
        run_rule(rule, [bad, bad], cfg())


def test_results_growing_uses_the_backlog_trend_test():
    conf = make_config(thresholds={"results_growth_window_seconds": 100, "results_growth_min_keys": 50,
                                   "backlog_growth_min_samples": 5})
    steady = [with_(snap(t=i * 10), broker_health=health(keyspace={"db0": {"keys": 100 + 20 * i, "expires": 10},
                                                                    "db1": {"keys": 7, "expires": 7}}))
              for i in range(8)]
    got = run_rule(results_growing, steady, conf)
    assert brief(got) == [("results_growing", "warning", "firing", "cluster")]
    assert got[0]["details"]["per_db"] == {"db0": 230, "db1": 0} and got[0]["details"]["rate_per_hour"] == 7200.0
    noisy = [with_(s, broker_health=health(keyspace={"db0": {"keys": 100 + (i % 2) * 80, "expires": 0}}))
             for i, s in enumerate(steady)]
    assert run_rule(results_growing, noisy, conf) == []
    expiring = [with_(s, broker_health=health(keyspace={"db0": {"keys": 100 + 20 * i, "expires": 20 * i}}))
                for i, s in enumerate(steady)]
    assert run_rule(results_growing, expiring, conf) == []


def beat_conf():
    return make_config(beat={"canary_key": "c", "canary_max_age_seconds": 120, "grace_seconds": 60})


def test_beat_down_from_the_canary_and_from_redbeats_lock():
    canary = {"key": "c", "present": True, "readable": True, "value_at": 1.0, "age_seconds": 30.0}
    redbeat = {"prefix": "redbeat:", "lock_present": True, "lock_ttl_seconds": 20.0, "entries": 2,
               "late_count": 0, "late": []}
    ok = with_(snap(), beat={"canary": canary, "redbeat": redbeat})
    assert run_rule(beat, [ok], beat_conf()) == []
    stale = with_(ok, beat={"canary": {**canary, "age_seconds": 500.0}, "redbeat": redbeat})
    got = run_rule(beat, [stale], beat_conf())
    assert brief(got) == [("beat_down", "critical", "firing", "cluster")] and "8m old" in got[0]["message"]
    missing = with_(ok, beat={"canary": {**canary, "present": False, "age_seconds": None}, "redbeat": None})
    assert "missing" in run_rule(beat, [missing], beat_conf())[0]["message"]
    no_lock = with_(ok, beat={"canary": None, "redbeat": {**redbeat, "lock_present": False}})
    assert "RedBeat's lock is gone while 2 schedule entries exist" in run_rule(beat, [no_lock], beat_conf())[0]["message"]
    no_schedule = with_(ok, beat={"canary": None, "redbeat": {**redbeat, "lock_present": False, "entries": 0}})
    assert run_rule(beat, [no_schedule], beat_conf()) == []  # no RedBeat here at all


def test_beat_missed_names_the_late_entries_and_is_held_by_beat_down():
    late = {"prefix": "redbeat:", "lock_present": True, "lock_ttl_seconds": 20.0, "entries": 3, "late_count": 1,
            "late": [{"name": "nightly-report", "due_at": 1.0, "late_seconds": 600.0}]}
    got = run_rule(beat, [with_(snap(), beat={"canary": None, "redbeat": late})], beat_conf())
    assert brief(got) == [("beat_missed", "warning", "firing", "cluster")]
    assert got[0]["details"]["entries"] == [{"name": "nightly-report", "late_seconds": 600.0}]
    engine = Engine(beat_conf())
    dead = with_(snap(), beat={"canary": None, "redbeat": {**late, "lock_present": False}})
    assert [a["alert_type"] for a in feed(engine, [dead])] == ["beat_down"]


def test_the_new_rules_are_inhibited_by_redis_down():
    from doorman import plugins
    for rule in plugins.builtins("doorman.rules"):
        for t in rule.alert_types:
            if t.name in {"redelivery_risk", "unacked_stranded", "broker_eviction_policy", "broker_memory_high",
                          "broker_evicting", "broker_oom", "results_growing", "beat_down", "beat_missed"}:
                assert "redis_down" in t.inhibited_by and rule.needs_broker
                assert t.name != "unacked_stranded" or t.inhibited_by == {"redis_down"}
