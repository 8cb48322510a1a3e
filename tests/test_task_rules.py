"""The task rules (issue 24) on crafted snapshot sequences: thresholds at the edge, windows,
counter resets, tiny volumes, inhibition, hostile names. No processes, no clock: time is the
snapshot's ts. Counts in `tasks` are cumulative since `tasks.since`, as the reader writes them."""

from __future__ import annotations

import pytest

from doorman.analyze.engine import Engine
from doorman.contract.snapshot import snapshot_problem
from doorman.contract.tasks import quantile
from doorman.rules import task_events, task_failure_rate, task_retry_storm, task_slowdown, taskwindow
from doorman.timefmt import parse_iso
from tests.support.scenario import T0, brief, cfg, feed, queue, run_rule, snap, worker
from tests.support.tasks import SINCE, counts, tasks


def at(t: float, section: dict | None, **kw) -> dict:
    return {**snap(t=t, **kw), "tasks": section}


def failing(ok: int, failed: int, **kw) -> list[dict]:
    """A baseline snapshot with nothing run, then one 60 s later with these counts."""
    return [at(0, tasks({})), at(60, tasks({"app.flaky": counts(ok, failed, **kw)}))]


# --- task_failure_rate --------------------------------------------------------------------------

@pytest.mark.parametrize("ok, failed, expected", [
    (95, 5, []),  # exactly 5 %: not above the ratio
    (94, 5, [("task_failure_rate", "warning", "firing", "task:app.flaky")]),  # 5.05 %, 5 failures
    (0, 4, []),  # every run failed, but 4 failures are under the minimum count
    (9987, 13, []),  # 0.13 % of a busy task (thaum-xyz/ankhmorpork#285): no page
    (1, 2, []),  # 2 of 3: a tiny volume never pages
])
def test_task_failure_rate_thresholds_at_the_edge(ok, failed, expected):
    assert brief(run_rule(task_failure_rate, failing(ok, failed), cfg())) == expected


def test_task_failure_rate_details_name_exceptions_and_last_tries():
    exc = {"ValueError": 6, "KeyError": 3, "TimeoutError": 1, "OSError": 1}
    got = run_rule(task_failure_rate, failing(89, 11, final=4, exceptions=exc), cfg())
    assert brief(got) == [("task_failure_rate", "warning", "firing", "task:app.flaky")]
    assert got[0]["details"] == {
        "task": "app.flaky", "failed": 11, "succeeded": 89, "ratio": 0.11, "threshold": 0.05, "min_count": 5,
        "final_failures": 4, "exceptions": {"ValueError": 6, "KeyError": 3, "OSError": 1}, "queues": [],
        "critical_queues": [], "window_seconds": 600.0}
    assert got[0]["message"] == ("11% of task app.flaky's runs failed in the last 10m (11 of 100 runs, limit 5%); "
                                 "4 after their last retry: ValueError ×6, KeyError ×3, OSError ×1.")


def test_task_failure_rate_carries_the_last_exception_only_when_the_collector_kept_it():
    seq = failing(89, 11, exceptions={"ValueError": 11})
    last = {"class": "ValueError", "message": "ValueError('card declined')", "at": "2026-12-07T10:00:00.000Z"}
    seq[1]["tasks"]["by_name"]["app.flaky"]["last_exception"] = last
    assert snapshot_problem(seq[1]) is None
    [got] = run_rule(task_failure_rate, seq, cfg())
    assert got["details"]["last_exception"] == last
    [plain] = run_rule(task_failure_rate, failing(89, 11, exceptions={"ValueError": 11}), cfg())
    assert "last_exception" not in plain["details"]


def test_task_failure_rate_is_critical_for_a_task_of_a_critical_queue():
    row = {**counts(5, 5), "name": "app.flaky", "hostname": "celery@w1", "queue": "payments"}
    seq = [at(0, tasks({})), at(60, tasks({"app.flaky": counts(5, 5)}, series=[row]))]
    got = run_rule(task_failure_rate, seq, cfg(critical_queues=["payments"]))
    assert brief(got) == [("task_failure_rate", "critical", "firing", "task:app.flaky")]
    assert got[0]["details"]["queues"] == ["payments"] and got[0]["details"]["critical_queues"] == ["payments"]
    assert brief(run_rule(task_failure_rate, seq, cfg())) == [("task_failure_rate", "warning", "firing",
                                                              "task:app.flaky")]


def test_task_failure_rate_counts_only_the_window_and_the_first_snapshot_is_a_baseline():
    conf = cfg()
    # 50 failures before Doorman's analyze started: a baseline, not news
    assert run_rule(task_failure_rate, [at(0, tasks({"app.flaky": counts(50, 50)}))], conf) == []
    state: dict = {}
    seq = [at(0, tasks({"app.flaky": counts(50, 50)})), at(60, tasks({"app.flaky": counts(100, 56)}))]
    got = run_rule(task_failure_rate, seq, conf, state)
    assert got[0]["details"]["failed"] == 6 and got[0]["details"]["succeeded"] == 50
    # 11 minutes later only successes since: the failures left the window
    assert run_rule(task_failure_rate, [at(720, tasks({"app.flaky": counts(400, 56)}))], conf, state) == []
    assert len(state["slots"]) <= taskwindow.SLOTS + 1


def test_a_collector_restart_is_a_counter_reset_never_a_negative_delta_nor_an_alert():
    conf = cfg()
    state: dict = {}
    seq = [at(0, tasks({"app.flaky": counts(1000, 3)})), at(60, tasks({"app.flaky": counts(1100, 4)}))]
    assert run_rule(task_failure_rate, seq, conf, state) == []
    # the collector restarted: counts start again from zero at a new `since`
    restarted = at(120, tasks({"app.flaky": counts(20, 0)}, since=T0 + 100))
    assert run_rule(task_failure_rate, [restarted], conf, state) == []
    window = taskwindow.total(state["slots"], T0 + 120, 600)["app.flaky"]
    assert window == {"ok": 120.0, "fail": 1.0}  # 100 + 20 successes: the reset's counts are all new
    # after the reset, new failures count from the new zero
    later = at(180, tasks({"app.flaky": counts(25, 9)}, since=T0 + 100))
    got = run_rule(task_failure_rate, [later], conf, state)
    assert brief(got) == [("task_failure_rate", "warning", "firing", "task:app.flaky")]
    assert got[0]["details"]["failed"] == 10 and got[0]["details"]["succeeded"] == 125
    # a value that falls without a new `since` is a reset too (the new value is the increment)
    state2: dict = {}
    run_rule(task_failure_rate, [at(0, tasks({"a": counts(10, 10)})), at(30, tasks({"a": counts(2, 1)}))],
             conf, state2)
    assert taskwindow.total(state2["slots"], T0 + 30, 600)["a"]["ok"] == 2.0


def test_overflow_names_are_not_judged_and_hostile_names_are_escaped():
    evil = "app.\x1b[31mred\nline"
    seq = [at(0, tasks({})), at(60, tasks({"(other)": counts(0, 50), "(unknown)": counts(0, 50),
                                             evil: counts(0, 9)}))]
    got = run_rule(task_failure_rate, seq, cfg())
    assert brief(got) == [("task_failure_rate", "warning", "firing", f"task:{evil}")]
    assert "\x1b" not in got[0]["message"] and "\n" not in got[0]["message"] and "\\x1b" in got[0]["message"]
    assert got[0]["details"]["task"] == evil  # data stays data; outputs escape it


@pytest.mark.parametrize("junk", [
    "on", [], {"since": "yesterday", "by_name": {}}, {"since": SINCE, "by_name": []},
    {"since": SINCE, "by_name": {"a": "x", "b": {"failed": -3, "succeeded": True, "exceptions": [1],
                                                  "runtime": {"counts": "no"}}, "c": None},
     "series": "x", "lost": [], "events": 3, "silent_workers": "w1"},
    {"since": SINCE, "by_name": {"a": {"runtime": {"counts": [1] * 3}, "exceptions": {"E": "many"}}},
     "lost": {"unsubscribed_seconds": float("inf"), "gaps": -1, "total": "x"}, "series": [1, None]},
])
def test_hostile_tasks_sections_never_crash_a_rule(junk):
    """The contract check reads these sections as null before analyze's rules see them (the snapshot
    itself is kept); a rule (a plugin's engine, a replay) must still not crash on one."""
    line = at(0, junk)
    assert snapshot_problem(line) is None and line["tasks"] is None
    for module in (task_failure_rate, task_retry_storm, task_slowdown, task_events):
        rule = module.RULE
        state = rule.initial_state()
        for s in (at(0, junk), at(60, junk)):
            now = parse_iso(s["ts"])
            rule.observe(s, state, cfg(), now)
            rule.evaluate(s, state, cfg(), now)
            assert rule.state_problem(state) is None


# --- engine: resolution, null sections, inhibition -----------------------------------------------

def test_failure_rate_fires_once_and_resolves_when_the_failures_leave_the_window():
    engine = Engine(cfg())
    first = feed(engine, failing(80, 20))
    assert [(a["alert_type"], a["status"]) for a in first] == [("task_failure_rate", "firing")]
    quiet = at(700, tasks({"app.flaky": counts(300, 20)}))
    assert [(a["alert_type"], a["status"], a["subject"]) for a in feed(engine, [quiet])] == [
        ("task_failure_rate", "resolved", "task:app.flaky")]


def test_a_null_or_missing_tasks_section_neither_fires_nor_resolves():
    engine = Engine(cfg())
    assert len(feed(engine, failing(80, 20))) == 1
    missing = snap(t=700)
    assert feed(engine, [at(700, None), missing]) == []  # --once, or the reader off: unknown, not OK
    assert any(e["alert_type"] == "task_failure_rate" for e in engine.state["clusters"]["prod"]["alerts"].values())
    assert feed(engine, [at(800, tasks({"app.flaky": counts(300, 20)}))])[0]["status"] == "resolved"
    assert run_rule(task_failure_rate, [at(0, None), at(60, None)], cfg()) == []


def test_task_rules_hold_back_while_every_worker_is_down():
    engine = Engine(cfg())
    down = dict(workers=[worker("w1@test", alive=False)], queues={"celery": queue(5)})
    seq = [at(0, tasks({}), **down), at(60, tasks({"app.flaky": counts(0, 20)}, events="off"), **down)]
    assert {a["alert_type"] for a in feed(engine, seq)} == {"workers_down"}


# --- task_retry_storm ---------------------------------------------------------------------------

@pytest.mark.parametrize("retried, started, expected", [
    (10, 20, []),  # exactly half: not above the ratio
    (10, 19, [("task_retry_storm", "warning", "firing", "task:app.flaky")]),
    (9, 9, []),  # under the minimum count
    (12, 0, [("task_retry_storm", "warning", "firing", "task:app.flaky")]),  # retries with no start seen
])
def test_task_retry_storm_thresholds_at_the_edge(retried, started, expected):
    seq = [at(0, tasks({})), at(60, tasks({"app.flaky": counts(retried=retried, started=started)}))]
    got = run_rule(task_retry_storm, seq, cfg())
    assert brief(got) == expected
    if got and started:
        assert got[0]["details"] == {"task": "app.flaky", "retried": 10, "started": 19, "ratio": 0.5263,
                                     "threshold": 0.5, "min_count": 10, "window_seconds": 600.0}
        assert got[0]["message"] == "Task app.flaky retried 10 times in the last 10m for 19 runs (53%, limit 50%)."


# --- task_slowdown ------------------------------------------------------------------------------

def slow_sequence(recent: dict[float, int], base: int = 100) -> list[dict]:
    """`base` runs of 50 ms spread over an hour, then the `recent` runtimes in the last 10 minutes."""
    seq, fast = [at(0, tasks({}))], {}
    for i in range(1, 7):
        fast = {0.05: base * i // 6}
        seq.append(at(i * 500, tasks({"app.slow": counts(runtime=fast)})))
    both = {**fast}
    for b, n in recent.items():
        both[b] = both.get(b, 0) + n
    seq.append(at(3000 + 700, tasks({"app.slow": counts(runtime=both)})))
    return seq


@pytest.mark.parametrize("recent, base, expected", [
    ({0.25: 60}, 100, [("task_slowdown", "warning", "firing", "task:app.slow")]),  # p95 0.2425 s vs 0.04875 s
    ({0.1: 60}, 100, []),  # p95 ~0.1 s: twice as slow, under 3×
    ({0.25: 49}, 100, []),  # too few runs in the window
    ({0.25: 60}, 49, []),  # too few runs in the baseline
])
def test_task_slowdown(recent, base, expected):
    got = run_rule(task_slowdown, slow_sequence(recent, base), cfg(task_baseline_seconds=3600))
    assert brief(got) == expected
    if got:
        d = got[0]["details"]
        assert d["runs"] == 60 and d["baseline_runs"] == 100 and d["factor"] > 3
        assert d["baseline_p95_seconds"] == pytest.approx(0.0488, abs=1e-3)
        assert d["p95_seconds"] == pytest.approx(0.2425, abs=1e-4)


def test_quantile_interpolates_within_a_bucket_like_prometheus():
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, [0, 10, 0, 0], bounds) == 1.5
    assert quantile(0.95, [0, 0, 0, 5], bounds) == 4.0  # the +Inf bucket: the highest bound
    assert quantile(0.5, [0, 0, 0, 0], bounds) is None


# --- task_events_off / task_events_lost ---------------------------------------------------------

def test_events_off_is_told_once_and_says_how_to_turn_them_on():
    engine = Engine(cfg(cooldown=60))
    off = [at(i * 100, tasks({}, events="off")) for i in range(8)]
    got = feed(engine, off)
    assert [(a["alert_type"], a["status"]) for a in got] == [("task_events_off", "firing")]  # no reminders
    assert "-E" in got[0]["message"] and "worker_send_task_events = True" in got[0]["message"]
    assert "task_send_sent_event = True" in got[0]["message"]
    assert [(a["alert_type"], a["status"]) for a in feed(engine, [at(900, tasks({}, events="on"))])] == [
        ("task_events_off", "resolved")]


def test_partial_events_name_the_silent_workers_escaped():
    silent = ["celery@quiet", "celery@\x1b]0;evil\x07"]
    got = run_rule(task_events, [at(0, tasks({}, events="partial", silent=silent))], cfg())
    assert brief(got) == [("task_events_off", "warning", "firing", "cluster")]
    assert "celery@quiet" in got[0]["message"] and "\x1b" not in got[0]["message"]
    assert got[0]["details"] == {"events": "partial", "silent_workers": silent}
    assert run_rule(task_events, [at(0, tasks({}, events="unknown"))], cfg()) == []


def lost(unsub: float = 0.0, gaps: int = 0, total: int = 0) -> dict:
    return {"unsubscribed_seconds": unsub, "gaps": gaps, "by_worker": {}, "total": total}


@pytest.mark.parametrize("before, after, expected", [
    (lost(total=100), lost(total=110), []),  # 10 unseen runs: within the margin (in-flight events)
    (lost(total=100), lost(total=111), [("task_events_lost", "warning", "firing", "cluster")]),
    (lost(), lost(unsub=3.5, gaps=1), [("task_events_lost", "warning", "firing", "cluster")]),
    (lost(unsub=30, gaps=2), lost(unsub=30, gaps=2), []),  # an old gap, before Doorman's analyze started
])
def test_task_events_lost(before, after, expected):
    got = run_rule(task_events, [at(0, tasks({}, lost=before)), at(60, tasks({}, lost=after))], cfg())
    assert brief(got) == expected


def test_events_lost_clears_after_the_window_and_a_broker_outage_is_left_to_redis_down():
    conf = cfg()
    state: dict = {}
    seq = [at(0, tasks({}, lost=lost())), at(60, tasks({}, lost=lost(unsub=5, gaps=1)))]
    assert len(run_rule(task_events, seq, conf, state)) == 1
    assert run_rule(task_events, [at(700, tasks({}, lost=lost(unsub=5, gaps=1)))], conf, state) == []
    # the broker went down: the reader's gap is the outage's, which redis_down tells
    down = {**at(800, tasks({}, lost=lost(unsub=5, gaps=1))), **{k: v for k, v in snap(t=800, connected=False).items()
                                                                 if k != "tasks"}}
    back = at(900, tasks({}, lost=lost(unsub=95, gaps=2, total=40)))
    assert run_rule(task_events, [down, back], conf, state) == []
    engine = Engine(conf)
    got = feed(engine, [at(0, tasks({}, lost=lost())), down, back])
    assert [(a["alert_type"], a["status"]) for a in got] == [("redis_down", "firing"), ("redis_down", "resolved")]
