"""The engine's promises on crafted snapshots: cooldown, reminders, severity change, one
resolution, inhibition, replay determinism, bounded state. Time is the snapshot's ts."""

from __future__ import annotations

import pytest

from doorman.analyze.engine import Engine, fingerprint
from doorman.timefmt import iso
from tests.support.scenario import T0, brief, cfg, feed, head, queue, snap, task, worker


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


def test_a_warning_back_within_the_flap_window_is_sent_again_as_flapping():
    slow, ok = {"mail": queue(1, [head("t1", 100.0)])}, {"mail": queue(0)}
    e = Engine(cfg(cooldown=300))
    out = feed(e, [snap(0, slow), snap(30, ok), snap(60, slow), snap(120, slow)])
    assert brief(out) == [("high_latency", "warning", "firing", "queue:mail"),
                          ("high_latency", "warning", "resolved", "queue:mail"),
                          ("high_latency", "warning", "firing", "queue:mail")]
    assert out[2]["details"]["flapping"] == {"occurrences": 2, "since": iso(T0)}
    assert out[2]["title"] == "High latency in mail (flapping)"


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


@pytest.mark.slow
def test_a_full_alert_table_still_admits_a_page():
    from doorman.analyze import layout as analyze

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
    from doorman.analyze.state import state_problem

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
