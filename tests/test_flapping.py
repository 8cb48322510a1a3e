"""What a user receives when a problem flaps, when the broker restarts, and when one incident
covers another: the engine on crafted snapshots, time from their `ts` (docs/analyze.md)."""

from __future__ import annotations

from tests.support.scenario import T0, brief, cfg, feed, queue, snap, worker

W1, W2, W3 = "w1@test", "w2@test", "w3@test"
UP = [worker(W1), worker(W2), worker(W3)]
W1_DOWN = [worker(W1, alive=False), worker(W2), worker(W3)]


def deaths(n: int, every: float = 60.0, down_for: float = 20.0) -> list[dict]:
    """w1 dies n times, once a minute, and comes back 20 s later each time; then 10 quiet minutes."""
    out = [snap(0, workers=UP)]
    for i in range(n):
        t = 10 + i * every
        out += [snap(t, workers=W1_DOWN), snap(t + down_for, workers=UP)]
    end = 10 + n * every
    out += [snap(end + s, workers=UP) for s in range(0, 601, 30)]
    return out


def test_a_worker_that_dies_once_fires_and_resolves():
    out = feed(Engine300(), deaths(1))
    assert brief(out) == [("worker_lost", "warning", "firing", f"worker:{W1}"),
                          ("worker_lost", "warning", "resolved", f"worker:{W1}")]


def test_a_worker_that_dies_twice_is_told_again_as_flapping_then_resolved_once_with_the_total():
    out = feed(Engine300(), deaths(2))
    assert [(a["status"], a["title"]) for a in out] == [
        ("firing", f"Worker {W1} lost"), ("resolved", f"Resolved: Worker {W1} lost"),
        ("firing", f"Worker {W1} lost (flapping)"), ("resolved", f"Resolved: Worker {W1} lost")]
    assert out[2]["details"]["flapping"] == {"occurrences": 2, "since": "2027-01-15T08:00:10.000Z"}
    assert out[3]["details"]["flapping"]["occurrences"] == 2
    assert out[3]["ts"] == "2027-01-15T08:06:40.000Z"  # back at 01:30: the first check 300 s later


def test_three_and_ten_deaths_are_counted_not_sent_and_the_last_word_is_never_a_stale_resolved():
    for n, sent_firings in ((3, 2), (10, 3)):
        out = feed(Engine300(), deaths(n))
        firings = [a for a in out if a["status"] == "firing"]
        assert len(firings) == sent_firings  # 1st, 2nd (flapping), then one per 300 s window
        assert [a["status"] for a in out].count("resolved") == 2  # the first, and the final total
        assert out[-1]["status"] == "resolved" and out[-1]["details"]["flapping"]["occurrences"] == n
        # between the flapping firing and the final resolution, no resolution was sent
        assert all(a["status"] == "firing" for a in out[2:-1])


def test_a_page_that_flaps_fires_at_once_every_time():
    big, ok = {"celery": queue(20)}, {"celery": queue(0)}
    e = Engine300(max_queue_size=10)
    out = feed(e, [snap(0, big), snap(10, ok), snap(20, big), snap(30, ok), snap(40, big)])
    assert [a["status"] for a in out] == ["firing", "resolved", "firing", "firing"]
    assert out[3]["details"]["flapping"]["occurrences"] == 3


def test_workers_back_within_the_grace_after_a_broker_restart_raise_nothing():
    e = Engine300()
    feed(e, [snap(0, workers=UP)])
    down = feed(e, [snap(10, connected=False)])
    assert brief(down) == [("redis_down", "emergency", "firing", "cluster")]
    # the broker is back; the workers reconnect one by one within 20 s
    out = feed(e, [snap(20, workers=[worker(W1, False), worker(W2, False), worker(W3, False)]),
                   snap(30, workers=W1_DOWN), snap(38, workers=UP), snap(70, workers=UP)])
    assert brief(out) == [("redis_down", "emergency", "resolved", "cluster")]


def test_a_worker_that_does_not_come_back_is_told_at_the_end_of_the_grace():
    e = Engine300()
    feed(e, [snap(0, workers=UP), snap(10, connected=False)])
    out = feed(e, [snap(20, workers=W1_DOWN), snap(30, workers=W1_DOWN), snap(41, workers=W1_DOWN)])
    assert brief(out) == [("redis_down", "emergency", "resolved", "cluster"),
                          ("worker_lost", "warning", "firing", f"worker:{W1}")]
    assert out[1]["ts"] == "2027-01-15T08:00:41.000Z" and "after the broker restarted" in out[1]["message"]
    assert out[1]["details"]["after_broker_restart"] is True


def test_a_daemon_starting_while_known_workers_connect_waits_the_grace_but_cron_does_not():
    connecting = [worker(W1, alive=False)]
    daemon = [dict(snap(t, workers=connecting if t < 15 else [worker(W1)]), trigger="interval")
              for t in (0, 5, 10, 15)]
    assert feed(Engine300(), daemon) == []
    once = [dict(snap(0, {"celery": queue(3)}, workers=connecting), trigger="once")]
    assert brief(feed(Engine300(), once)) == [("workers_down", "emergency", "firing", "cluster")]


def test_one_incident_one_page_a_worker_covered_by_workers_down_is_not_paged_afterwards():
    pending = {"celery": queue(5)}
    e = Engine300()
    feed(e, [snap(0, pending, workers=[worker(W1)])])
    out = feed(e, [snap(10, pending, workers=[worker(W1, False)]),  # the only worker dies
                   snap(28, pending, workers=[worker(W1, False), worker(W2)]),  # a replacement comes up
                   snap(60, pending, workers=[worker(W1, False), worker(W2)])])
    assert brief(out) == [("workers_down", "emergency", "firing", "cluster"),
                          ("workers_down", "emergency", "resolved", "cluster")]
    assert out[1]["details"]["still_firing"] == [
        {"alert_type": "worker_lost", "subject": f"worker:{W1}", "title": f"Worker {W1} lost"}]


def test_a_lost_worker_age_is_counted_from_its_last_heartbeat():
    hb = dict(worker(W1), responded=False, last_heartbeat="2027-01-15T07:59:58.000Z")  # alive by heartbeat
    e = Engine300()
    feed(e, [snap(0, workers=[hb, worker(W2)])])
    [lost] = feed(e, [snap(30, workers=[dict(hb, alive=False), worker(W2)])])
    assert lost["details"]["last_seen_alive_seconds_ago"] == 32.0 and "32s ago" in lost["message"]


def Engine300(**th):  # noqa: N802 - reads like the class it builds
    from doorman.analyze.engine import Engine

    return Engine(cfg(cooldown=300, **th))


assert T0  # the scenarios' epoch, shared with tests/test_rules.py


def test_a_standing_setting_is_told_once_and_again_only_when_it_changes():
    def health(policy: str) -> dict:
        return {"server": "redis", "max_memory_bytes": 2_000_000, "used_memory_bytes": 1000,
                "eviction_policy": policy}

    e = Engine300()
    day = [dict(snap(t), broker_health=health("allkeys-lru")) for t in range(0, 86400, 3600)]
    out = [a for a in feed(e, day) if a["alert_type"] == "broker_eviction_policy"]
    assert [(a["status"], a["subject"]) for a in out] == [("firing", "policy:allkeys-lru")]  # no reminders
    changed = [a for a in feed(e, [dict(snap(90000), broker_health=health("volatile-lru"))])
               if a["alert_type"] == "broker_eviction_policy"]
    assert sorted((a["status"], a["subject"]) for a in changed) == [
        ("firing", "policy:volatile-lru"), ("resolved", "policy:allkeys-lru")]
