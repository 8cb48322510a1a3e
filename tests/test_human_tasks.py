"""`--human`'s task table and its plain lines about task events, on crafted snapshots (the reader
that fills `tasks` is tested with real workers in its own tests)."""

from __future__ import annotations

from doorman.collect.human import Memory, render
from tests.support.scenario import T0, snap
from tests.support.tasks import counts, tasks


def test_the_task_table_shows_runs_failures_retries_p95_and_the_top_exception():
    by_name = {"app.healthy": counts(ok=200, runtime={0.05: 200}),
               "app.flaky": counts(ok=70, failed=30, retried=4, exceptions={"ValueError": 20, "KeyError": 10},
                                   runtime={0.1: 70})}
    text = render({**snap(), "tasks": tasks(by_name, since=T0 - 3600)})
    lines = text.splitlines()
    i = lines.index("   Tasks since 07:00:00 UTC:")  # T0 is 08:00:00 UTC
    assert lines[i + 1].split() == ["task", "runs", "failed", "retried", "p95", "top", "exception"]
    assert lines[i + 2].split() == ["app.flaky", "100", "30", "4", "99", "ms", "ValueError", "×20"]  # failing first
    assert lines[i + 3].split() == ["app.healthy", "200", "0", "0", "49", "ms", "-"]
    assert "None" not in text and "Task events" not in text


def test_events_off_partial_and_unknown_are_said_plainly():
    off = render({**snap(), "tasks": tasks({}, events="off")})
    assert "Task events: OFF: workers run tasks but send no task events; start workers with -E" in off
    partial = render({**snap(), "tasks": tasks({"a": counts(ok=1)}, events="partial",
                                               silent=["celery@quiet", "celery@\x1b[2Jevil"])})
    assert "Task events: PARTIAL: no task events from celery@quiet, celery@\\x1b[2Jevil;" in partial
    assert "\x1b" not in partial
    assert "Task events: unknown yet" in render({**snap(), "tasks": tasks({}, events="unknown")})


def test_a_view_without_task_events_says_how_to_get_them_once():
    memory = Memory()
    first = render({**snap(), "tasks": None}, memory=memory)
    assert "Task outcomes: not read here" in first and "run the daemon" in first
    assert "Task outcomes" not in render(snap(t=5), memory=memory)  # a missing section: the same, said once


def test_hostile_names_are_escaped_cut_and_bounded_in_rows():
    by_name = {f"t{i:03d}\n": counts(ok=i) for i in range(40)}
    by_name["x" * 500] = counts(failed=1, exceptions={"\x07Bell" * 50: 1}, runtime={10.0: 1})
    text = render({**snap(), "tasks": tasks(by_name)})
    assert "\x07" not in text and "\n\n" not in text
    assert max(len(line) for line in text.splitlines()) < 160
    assert "(+26 more task names: " in text
    junk = {"since": "x", "by_name": {"a": "b", "c": {"failed": "many", "runtime": {"counts": [True] * 15}}},
            "events": None, "silent_workers": "w"}
    assert "None" not in render({**snap(), "tasks": junk})
