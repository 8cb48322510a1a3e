"""The chaos soak's scorer and planner on synthetic logs: every rule of bench/chaos/score.py, fast."""

from __future__ import annotations

import itertools

from bench.chaos import scenario
from bench.chaos.report import timeline
from bench.chaos.score import Rules, score
from doorman.timefmt import iso

T0 = 1_800_000_000.0
RULES = Rules()
W1 = "worker:w1@chaos"
_fp = itertools.count()


def ev(t: float, action: str, **args) -> dict:
    return {"t": T0 + t, "action": action, **args}


def alert(t: float, alert_type: str, subject: str, status: str = "firing", severity: str = "warning",
          lag: float = 0.5, fp: str | None = None, **details) -> dict:
    return {"received": T0 + t + lag,
            "alert": {"ts": iso(T0 + t), "alert_type": alert_type, "subject": subject, "status": status,
                      "severity": severity, "fingerprint": fp or f"{alert_type}|{subject}", "details": details}}


def run(log, alerts, rules=RULES, end=1000.0):
    return score(log, alerts, rules, T0 + end)


def test_a_kill_alerted_and_resolved_is_clean_and_its_delay_counted():
    log = [ev(10, "kill", worker="w1@chaos"), ev(25, "start", worker="w1@chaos")]
    sc = run(log, [alert(14, "worker_lost", W1), alert(26, "worker_lost", W1, status="resolved")])
    assert sc.ok
    assert sc.summary()["covered"] == {"alerted": 1, "firing": 0, "counted": 0}
    assert sc.delays == {"worker_kill": [4.5]}


def test_a_kill_with_no_alert_is_missed_and_so_is_one_alerted_too_late():
    log = [ev(10, "kill", worker="w1@chaos"), ev(100, "start", worker="w1@chaos")]
    assert [i.label for i in run(log, []).missed] == ["kill -9 w1@chaos"]
    late = run(log, [alert(10 + RULES.detect + 1, "worker_lost", W1)])
    assert len(late.missed) == 1 and late.false_alarms == []  # late, but still explained by the death


def test_a_death_while_the_alert_still_fires_is_covered_by_it():
    # Flap: the user was told "lost" and never "resolved" before it died again.
    log = [ev(10, "kill", worker="w1@chaos"), ev(20, "start", worker="w1@chaos"),
           ev(35, "kill", worker="w1@chaos"), ev(45, "start", worker="w1@chaos")]
    sc = run(log, [alert(14, "worker_lost", W1)])
    assert sc.ok
    assert [i.covered for i in sc.incidents] == ["alerted", "firing"]


def test_silence_after_a_resolution_is_the_bug_of_issue_17():
    log = [ev(10, "kill", worker="w1@chaos"), ev(20, "start", worker="w1@chaos"),
           ev(35, "kill", worker="w1@chaos"), ev(45, "start", worker="w1@chaos")]
    sc = run(log, [alert(14, "worker_lost", W1), alert(21, "worker_lost", W1, status="resolved")])
    assert [(i.kind, i.start - T0) for i in sc.missed] == [("worker_kill_repeat", 35)]


def test_occurrences_counted_by_a_flapping_alert_are_covered_but_only_as_many_as_it_counts():
    kills = [10, 30, 50, 70]
    log = [e for k in kills for e in (ev(k, "kill", worker="w1@chaos"), ev(k + 8, "start", worker="w1@chaos"))]
    since = iso(T0 + 14)  # when the first occurrence was noticed, 4 s after the kill
    first = [alert(14, "worker_lost", W1), alert(19, "worker_lost", W1, status="resolved")]
    sc = run(log, first + [alert(200, "worker_lost", W1, status="resolved", flapping={"occurrences": 4, "since": since})])
    assert sc.ok, [i.label for i in sc.missed]
    assert [i.covered for i in sc.incidents] == ["alerted", "counted", "counted", "counted"]
    short = run(log, first + [alert(200, "worker_lost", W1, status="resolved", flapping={"occurrences": 3, "since": since})])
    assert [i.start - T0 for i in short.missed] == [70]


def test_an_alert_no_event_explains_is_a_false_alarm_and_tolerance_applies():
    log = [ev(10, "broker_kill"), ev(18, "broker_start")]
    sc = run(log, [alert(12, "redis_down", "cluster", severity="emergency"),
                   alert(19, "redis_down", "cluster", status="resolved", severity="emergency"),
                   alert(21, "celery_disconnected", "cluster")])
    assert [d.key for d in sc.false_alarms] == [("celery_disconnected", "cluster")]
    assert sc.missed == [] and sc.duplicate_pages == []
    # a worker_lost within `after` seconds of the worker's restart is explained; later it is not
    log2 = [ev(10, "kill", worker="w1@chaos"), ev(20, "start", worker="w1@chaos")]
    assert run(log2, [alert(14, "worker_lost", W1), alert(20 + RULES.after - 1, "worker_lost", W1, fp="x")]).false_alarms == []
    far = run(log2, [alert(14, "worker_lost", W1), alert(20 + RULES.after + 5, "worker_lost", W1, fp="y")])
    assert len(far.false_alarms) == 1


def test_a_resolution_of_nothing_sent_is_false_and_an_early_all_clear_is_reported():
    log = [ev(10, "kill", worker="w1@chaos"), ev(60, "start", worker="w1@chaos")]
    sc = run(log, [alert(5, "worker_lost", W1, status="resolved")])
    assert [d.verdict for d in sc.false_alarms] == ["FALSE (resolution of nothing sent)"]
    early = run(log, [alert(14, "worker_lost", W1), alert(40, "worker_lost", W1, status="resolved")])
    assert [d.ts - T0 for d in early.false_all_clears] == [40]
    assert not early.ok
    # a check that began during the problem but was answered (and sent) after it ended is no early all-clear
    late_answer = run(log, [alert(14, "worker_lost", W1), alert(58, "worker_lost", W1, status="resolved", lag=3)])
    assert late_answer.ok


def test_two_pages_for_one_incident_are_a_duplicate_whatever_their_types():
    log = [ev(10, "broker_kill"), ev(18, "broker_start")]
    sc = run(log, [alert(12, "redis_down", "cluster", severity="emergency"),
                   alert(15, "redis_down", "cluster", severity="emergency")])
    assert len(sc.duplicate_pages) == 1
    # a reminder is not a duplicate; a page for a second, later incident is not either
    log2 = log + [ev(100, "broker_kill"), ev(108, "broker_start")]
    ok = run(log2, [alert(12, "redis_down", "cluster", severity="emergency"),
                    alert(16, "redis_down", "cluster", severity="emergency", reminder=True),
                    alert(19, "redis_down", "cluster", status="resolved", severity="emergency"),
                    alert(102, "redis_down", "cluster", severity="emergency")])
    assert ok.ok


def test_a_backlog_resolving_once_under_the_threshold_is_no_early_all_clear_and_lags_are_reported():
    log = [ev(10, "burst", n=80, seconds=1.0), ev(10.2, "over", pending=68), ev(25, "under", pending=20),
           ev(32, "drained"), ev(50, "kill", worker="w1@chaos"), ev(60, "start", worker="w1@chaos")]
    sc = run(log, [alert(14, "backlog_explosion", "cluster", severity="critical"),
                   alert(29, "backlog_explosion", "cluster", status="resolved", severity="critical"),
                   alert(53, "worker_lost", W1, flapping={"occurrences": 2, "since": iso(T0 + 50)})], end=400)
    assert sc.ok
    assert [round(x, 1) for x in sc.resolution_lags["backlog_explosion"]] == [4.5]  # arrival - back under
    assert [(d.key, s) for d, s in sc.still_firing] == [(("worker_lost", W1), 340.0)]


def test_pauses_short_must_stay_silent_long_ones_must_page():
    log = [ev(10, "pause", seconds=1.5), ev(100, "pause", seconds=13.0)]
    sc = run(log, [alert(11, "redis_down", "cluster", severity="emergency"),
                   alert(12, "redis_down", "cluster", status="resolved", severity="emergency")])
    assert [i.kind for i in sc.missed] == ["pause_long"]
    assert len(sc.false_alarms) == 1  # nothing explains a page for a 1.5 s pause


def test_a_burst_over_the_threshold_for_longer_than_a_check_requires_a_backlog_alert():
    log = [ev(10, "burst", n=60, seconds=1.0), ev(10.3, "over", pending=60), ev(30, "under", pending=20),
           ev(40, "drained"), ev(100, "burst", n=60, seconds=1.0), ev(100.2, "over", pending=60),
           ev(103, "under", pending=20), ev(110, "drained"), ev(200, "burst", n=8, seconds=0.5), ev(203, "drained")]
    sc = run(log, [alert(35, "high_latency", "queue:celery")])
    assert [(i.kind, round(i.start - T0, 1)) for i in sc.missed] == [("burst_above", 10.3)]  # 3 s over: not required
    assert [i.kind for i in sc.incidents] == ["burst_above", "burst_above", "burst_below"]
    assert sc.false_alarms == []
    sc2 = run(log, [alert(12, "backlog_explosion", "cluster", severity="critical"),
                    alert(31, "backlog_explosion", "cluster", status="resolved", severity="critical"),
                    alert(205, "backlog_explosion", "cluster", severity="critical", fp="z")])
    assert sc2.missed == [] and [d.ts - T0 for d in sc2.false_alarms] == [205]


def test_an_unconsumed_queue_requires_its_own_alert_when_the_rule_exists_else_latency():
    log = [ev(10, "orphan", queue="orphan", n=3), ev(100, "purge", queue="orphan")]
    lat = alert(45, "high_latency", "queue:orphan")
    assert run(log, [lat]).ok
    with_rule = Rules(alert_types=frozenset({"queue_unconsumed"}))
    assert [i.required for i in run(log, [lat], with_rule).missed] == [("queue_unconsumed", "queue:orphan")]
    assert run(log, [lat, alert(75, "queue_unconsumed", "queue:orphan")], with_rule).ok
    shorter = [ev(10, "orphan", queue="orphan", n=3), ev(70, "purge", queue="orphan")]
    assert run(shorter, [lat], with_rule).ok  # 60 s is not over unconsumed_after (60 s) plus a check
    short = [ev(10, "orphan", queue="orphan", n=3), ev(40, "purge", queue="orphan")]
    assert run(short, []).ok  # 30 s is not over the 30 s latency limit plus a check: nothing owed


def test_a_broker_restart_ends_the_queues_incidents():
    log = [ev(10, "orphan", queue="orphan", n=3), ev(50, "broker_kill"), ev(58, "broker_start")]
    sc = run(log, [alert(12, "redis_down", "cluster", severity="emergency"),  # before the kill: false
                   alert(52, "redis_down", "cluster", severity="emergency"),
                   alert(90, "high_latency", "queue:orphan")])  # 40 s after the queue was wiped: false
    assert [d.ts - T0 for d in sc.false_alarms] == [12, 90]


def test_the_timeline_names_every_event_alert_and_verdict():
    log = [ev(0, "soak_start"), ev(10, "kill", worker="w1@chaos"), ev(25, "start", worker="w1@chaos"),
           ev(40, "kill", worker="w2@chaos"), ev(55, "start", worker="w2@chaos")]
    sc = run(log, [alert(14, "worker_lost", W1), alert(70, "celery_disconnected", "cluster")])
    lines = timeline(sc, log, T0)
    assert lines[0].strip().startswith("+0.0s  EVENT  soak_start")
    assert any("ALERT  firing worker_lost worker:w1@chaos (warning) [explained] ← kill -9 w1@chaos (+4.5s)" in s
               for s in lines)
    assert any("MISSED kill -9 w2@chaos" in s for s in lines)
    assert any("celery_disconnected cluster (warning) [FALSE]" in s for s in lines)


def test_plans_are_seeded_fit_their_duration_and_a_short_one_mixes_every_kind():
    a, b = scenario.plan(7, 300), scenario.plan(7, 300)
    assert a == b and a != scenario.plan(8, 300)
    assert a[0].at >= scenario.WARMUP and a[-1].at <= 300 - scenario.TAIL
    hour = scenario.plan(1, 3600)
    acts = scenario.kinds(hour)
    assert {"kill", "start", "broker_kill", "broker_start", "pause", "burst", "orphan", "purge", "idle"} <= set(acts)
    assert acts["kill"] == acts["start"] and acts["broker_kill"] == acts["broker_start"]
    # every worker is started again before it is killed again, and two never die at once
    dead: set[str] = set()
    for s in hour:
        if s.action == "kill":
            assert s.args["worker"] not in dead and not dead
            dead.add(s.args["worker"])
        elif s.action == "start":
            dead.discard(s.args["worker"])
    assert [s.at for s in hour] == sorted(s.at for s in hour)
