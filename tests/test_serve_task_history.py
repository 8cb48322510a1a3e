"""doorman-serve's task-outcome history (doorman/serve/task_history.py, the SQLite tables in
history.py) and the `tasks` parts of `/api/v1/status` and `/api/v1/history`, on crafted snapshots
(the collector's reader is tested with real workers in its own tests)."""

from __future__ import annotations

import pytest

from doorman.contract.tasks import OTHER
from doorman.serve.history import History, Reader
from doorman.serve.http import App
from doorman.serve.state import State
from doorman.serve.task_history import HISTORY_TASKS
from tests.support.serve import XSS, snapshot, task_counts, tasks_section

T0 = 1_800_000_000.0
SINCE = T0 - 3600


def snap_at(t: float, by_name: dict | None, since: float = SINCE, events: str = "on", **kw) -> dict:
    s = snapshot(t, {"celery": 1}, [("w1@h", True, 0)])
    s["tasks"] = None if by_name is None else tasks_section(by_name, since, events=events, **kw)
    return s


def feed(h: History, *snaps: tuple[float, dict]) -> None:
    for t, s in snaps:
        h.snapshot("default", t, s, 1)


def test_increments_sum_per_bucket_count_new_names_and_collector_restarts(tmp_path):
    path = str(tmp_path / "h" / "h.sqlite3")
    h = History(path, retention=86400)
    feed(h,
         (T0, snap_at(T0, {"app.flaky": task_counts(ok=500, failed=200)})),  # serve's first look: a baseline
         (T0 + 60, snap_at(T0 + 60, {"app.flaky": task_counts(ok=510, failed=203, retried=1,
                                                              runtime={0.05: 10})})),
         (T0 + 120, snap_at(T0 + 120, {"app.flaky": task_counts(ok=520, failed=205, runtime={0.05: 20}),
                                       "app.new": task_counts(ok=4, runtime={0.5: 4})})),  # born with 4 runs
         (T0 + 180, snap_at(T0 + 180, {"app.flaky": task_counts(ok=3, failed=1)}, since=T0 + 170)),  # restart
         (T0 + 240, snap_at(T0 + 240, {"app.flaky": task_counts(ok=2, failed=1)}, since=T0 + 170)))  # went down
    r = Reader(path)
    s = r.series("default", T0 - 60, T0 + 300)
    flaky, new = s["tasks"]["app.flaky"], s["tasks"]["app.new"]
    # a bucket per snapshot (360 s / 600 buckets): each holds what that snapshot added
    assert flaky["runs"] == [0, 13, 12, 4, 0]
    assert flaky["failed"] == [0, 3, 2, 1, 0]
    assert flaky["retried"] == [0, 1, 0, 0, 0]
    assert new["runs"] == [0, 0, 4, 0, 0]
    # 10 runs in (0.025, 0.05]: rank 9.5 of 10 -> 0.025 + 0.025 * 9.5 / 10, as histogram_quantile
    assert flaky["p95_runtime"][1] == pytest.approx(0.04875)
    assert new["p95_runtime"][2] == pytest.approx(0.25 + 0.25 * 3.8 / 4)
    assert flaky["p95_runtime"][3] is None  # no runtime observed there
    assert s["task_totals"]["app.flaky"] == {"runs": 29, "failed": 6, "retried": 1,
                                             "p95_runtime": pytest.approx(0.04875)}
    assert list(s["task_totals"]) == ["app.flaky", "app.new"]
    assert s["task_events"] == ["on"] * 5
    # the existing shapes are untouched
    assert s["queues"]["celery"]["pending"] == [1] * 5 and s["workers_alive"] == [1] * 5
    h.close()
    r.close()


def test_a_restart_of_serve_rereading_the_file_counts_nothing_twice_and_keeps_counting(tmp_path):
    path = str(tmp_path / "h.sqlite3")
    snaps = [(T0 + i * 60, snap_at(T0 + i * 60, {"a": task_counts(ok=10 * i, failed=i)})) for i in range(4)]
    h = History(path, retention=86400)
    feed(h, *snaps)
    h.close()
    h = History(path, retention=86400)  # serve restarted: it reads the file's end again, then a new line
    feed(h, *snaps, (T0 + 240, snap_at(T0 + 240, {"a": task_counts(ok=35, failed=4)})))
    r = Reader(path)
    s = r.series("default", T0 - 60, T0 + 300)
    assert s["tasks"]["a"]["runs"] == [0, 11, 11, 11, 6]
    assert s["tasks"]["a"]["failed"] == [0, 1, 1, 1, 1]
    assert s["task_totals"]["a"]["failed"] == 4
    # the rollups (read by the 7 d range) hold the same sums, not twice
    week = r.series("default", T0 + 300 - 7 * 86400, T0 + 300)
    assert week["task_totals"]["a"] == {"runs": 39, "failed": 4, "retried": 0, "p95_runtime": None}
    h.close()
    r.close()


def test_events_off_and_no_section_are_told_apart_and_arrays_stay_null_where_nothing_was_read(tmp_path):
    path = str(tmp_path / "h.sqlite3")
    h = History(path, retention=86400)
    feed(h, (T0, snap_at(T0, {}, events="off")), (T0 + 60, snap_at(T0 + 60, None)),
         (T0 + 120, snap_at(T0 + 120, {"a": task_counts(ok=1)}, events="partial")),
         (T0 + 180, snap_at(T0 + 180, {"a": task_counts(ok=2)}, events="partial")))
    s = Reader(path).series("default", T0 - 60, T0 + 300)
    assert s["task_events"] == ["off", None, "partial", "partial"]
    assert s["tasks"]["a"]["runs"] == [0, None, 1, 1]  # a name new within one since counts whole
    h.close()


def test_history_keeps_the_busiest_names_and_sums_the_rest_under_other(tmp_path):
    path = str(tmp_path / "h.sqlite3")
    h = History(path, retention=86400)
    names = [f"t{i:03d}" for i in range(300)]
    feed(h, (T0, snap_at(T0, {})),
         (T0 + 60, snap_at(T0 + 60, {n: task_counts(ok=1000 - i, failed=1) for i, n in enumerate(names)})))
    rows = h.db.execute("SELECT name, runs, failed FROM task_samples").fetchall()
    assert len(rows) == HISTORY_TASKS + 1
    by = {n: (runs, failed) for n, runs, failed in rows}
    assert set(by) == {*names[:HISTORY_TASKS], OTHER}
    assert by[OTHER] == (sum(1001 - i for i in range(HISTORY_TASKS, 300)), 300 - HISTORY_TASKS)
    s = Reader(path).series("default", T0 - 60, T0 + 120)
    assert len(s["tasks"]) <= 2 * HISTORY_TASKS
    h.prune(T0 + 60 + 86400 + 1)  # the retention takes the task rows too
    assert h.db.execute("SELECT count(*) FROM task_samples").fetchone()[0] == 0
    assert h.db.execute("SELECT count(*) FROM task_status").fetchone()[0] == 0
    h.close()


def test_status_gives_the_newest_task_table_and_says_when_events_are_not_read():
    state = State()
    app = App(state, lambda: b"", None, 30, None, clock=lambda: T0 + 10)
    state.snapshot(snapshot(T0 - 30))  # no tasks section at all (an older collector, or --once)
    assert app.status()["clusters"][0]["tasks"] is None
    exc = {"ValueError": 20, "KeyError": 10}
    state.snapshot(snap_at(T0, {"app.healthy": task_counts(ok=200, runtime={0.05: 200}),
                                XSS: task_counts(ok=70, failed=30, retried=4, exceptions=exc, runtime={0.1: 70})},
                           events="partial", silent=["celery@quiet"]))
    t = app.status()["clusters"][0]["tasks"]
    assert (t["events"], t["silent_workers"], t["since"], t["names"]) == ("partial", ["celery@quiet"], SINCE, 2)
    assert [r["name"] for r in t["rows"]] == ["app.healthy", XSS]  # most runs first
    bad = t["rows"][1]
    assert (bad["runs"], bad["failed"], bad["retried"], bad["top_exception"], bad["top_exception_count"]) == (
        100, 30, 4, "ValueError", 20)
    assert t["rows"][0]["p95_runtime"] == pytest.approx(0.04875)
    state.snapshot(snap_at(T0 + 5, None))  # the newest says nothing is read: so does the status
    assert app.status()["clusters"][0]["tasks"] is None


def test_hostile_task_sections_never_crash_the_history(tmp_path):
    path = str(tmp_path / "h.sqlite3")
    h = History(path, retention=86400)
    junk = tasks_section({"a": {"failed": "many", "runtime": {"counts": [True] * 15}}, "b" * 5000: task_counts(ok=1),
                          "c": "not counts"}, SINCE)
    junk["buckets"]["runtime"] = [1, 2, 3]  # other bounds than the contract's: the histograms are not used
    feed(h, (T0, {**snap_at(T0, {}), "tasks": junk}), (T0 + 60, {**snap_at(T0, {}), "tasks": {**junk, "since": "x"}}),
         (T0 + 120, {**snap_at(T0, {}), "tasks": [1, 2]}))
    junk["by_name"]["b" * 5000] = task_counts(ok=3, runtime={0.05: 3})
    feed(h, (T0 + 180, {**snap_at(T0, {}), "tasks": junk}))
    s = Reader(path).series("default", T0 - 60, T0 + 300)
    assert s["task_totals"] == {"b" * 200: {"runs": 2, "failed": 0, "retried": 0, "p95_runtime": None}}
    assert all(v is None for t in s["tasks"].values() for v in t["p95_runtime"])
    h.close()
