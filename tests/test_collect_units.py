"""The collect library without processes, broker or sleeping: the schedule under a fake clock, and
the snapshot assembled from a fake broker (what a second broker plugin has to provide)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from doorman.brokers.base import ActiveTasks, Failure, QueueState, Topology, Unacked, WorkerEventListener
from doorman.collect.heartbeats import HeartbeatTracker
from doorman.collect.schedule import MIN_GAP, run
from doorman.collect.snapshot import Collector
from doorman.config.load import make_config
from tests.support.schedule_time import EPOCH, FakeTime


def schedule(t: FakeTime, *, interval: float = 10.0, count: int | None = 4, trigger: str = "interval",
             heartbeats: HeartbeatTracker | None = None, wake: threading.Event | None = None,
             stopping: threading.Event | None = None, took: float = 0.0) -> list[tuple[float, str, int]]:
    """(time, trigger, number) of every snapshot the schedule takes; each takes `took` seconds."""
    taken: list[tuple[float, str, int]] = []
    started: list[float] = []

    def take(why: str) -> dict:
        started.append(t.now)
        t.now += took
        return {"trigger": why, "error": None}

    def emit(snap: dict, n: int) -> None:
        taken.append((started[-1], snap["trigger"], n))

    run(take, emit, interval=interval, count=count, trigger=trigger, wake=wake or threading.Event(),
        stopping=stopping or threading.Event(), heartbeats=heartbeats, clock=t.clock, wait=t.wait)
    return taken


def beat(name: str, freq: float = 2.0) -> dict:
    return {"hostname": name, "type": "worker-heartbeat", "freq": freq}


def test_snapshots_come_every_interval():
    assert schedule(FakeTime()) == [(0, "interval", 1), (10, "interval", 2), (20, "interval", 3),
                                    (30, "interval", 4)]


def test_once_is_one_snapshot_without_waiting():
    t = FakeTime()
    assert schedule(t, count=1, trigger="once") == [(0, "once", 1)]
    assert t.now == 0


def test_a_slow_snapshot_delays_the_next_tick_without_piling_up_debt():
    assert [s[0] for s in schedule(FakeTime(), took=15)] == [0, 15, 30, 45]
    assert [s[0] for s in schedule(FakeTime(), took=4)] == [0, 10, 20, 30]


def test_a_new_worker_and_an_overdue_heartbeat_each_cost_one_extra_snapshot():
    t, wake = FakeTime(), threading.Event()
    tracker = HeartbeatTracker(None, wake, clock=t.clock.wall)  # never started: no broker needed
    t.at(1.0, lambda: tracker.received(beat("w1@host")))  # then silent: overdue at 1 + 2 x 2 s
    taken = schedule(t, count=5, heartbeats=tracker, wake=wake)
    assert [(pytest.approx(when), why) for when, why, _ in taken] == [
        (0, "interval"), (1.0, "heartbeat"), (5.01, "heartbeat"), (10, "interval"), (20, "interval")]
    assert tracker.workers(t.clock.wall())["w1@host"]["alive"] is False


def test_a_burst_of_worker_changes_is_spaced_by_the_minimum_gap():
    t, wake = FakeTime(), threading.Event()
    tracker = HeartbeatTracker(None, wake, clock=t.clock.wall)
    t.at(1.0, lambda: tracker.received(beat("w1@host")))
    t.at(1.1, lambda: tracker.received(beat("w2@host")))
    taken = schedule(t, count=3, heartbeats=tracker, wake=wake)
    assert [(pytest.approx(when), why) for when, why, _ in taken] == [
        (0, "interval"), (1.0, "heartbeat"), (1.0 + MIN_GAP, "heartbeat")]


def test_a_stop_request_ends_the_wait_at_once():
    t, wake, stopping = FakeTime(), threading.Event(), threading.Event()

    def signal() -> None:  # what the SIGTERM handler does
        stopping.set()
        wake.set()

    t.at(25.0, signal)
    assert [s[0] for s in schedule(t, count=None, wake=wake, stopping=stopping)] == [0, 10, 20]
    assert t.now == 25.0


class FakeBroker:
    """A second broker, in a few lines: all `doorman.collect` needs is `doorman.brokers.base.Broker`."""

    def __init__(self, fail: Exception | None = None):
        self.fail = fail
        self.closed = False

    def topology(self) -> Topology:
        if self.fail:
            raise self.fail
        return Topology({"found": "binding", "celery": "binding"}, ["gone@host"],
                        Unacked(2, EPOCH - 30, None))

    def queues(self, names: Sequence[str], now: float) -> dict[str, QueueState]:
        return {q: {"pending": 3 if q == "found" else 0, "by_priority": {"0": 3 if q == "found" else 0},
                    "oldest": None, "heads": []} for q in names}

    def active_tasks(self, timeout: float, now: float) -> ActiveTasks:
        task = {"task_id": "t1", "task_name": "demo.sleep", "worker": "w1@host", "started_at": None,
                "runtime_seconds": None, "queue": "celery", "pid": 7}
        return ActiveTasks(1, {"w1@host": [task]})

    def follow_worker_events(self, listener: WorkerEventListener, stop: threading.Event) -> None:
        stop.wait()

    def failure(self, error: Exception) -> Failure | None:
        return {ConnectionError: "unreachable", PermissionError: "refused"}.get(type(error))

    def close(self) -> None:
        self.closed = True


def test_the_snapshot_is_assembled_from_any_broker():
    cfg = make_config(cluster="unit", monitored_queues=["celery", "mine"])
    broker = FakeBroker()
    collector = Collector(cfg, broker, clock=lambda: EPOCH)
    snap = collector.snapshot("once")
    collector.close()
    assert broker.closed
    assert snap["redis_connected"] is True and snap["error"] is None and snap["cluster"] == "unit"
    assert list(snap["queues"]) == ["celery", "mine", "found"]  # configured first, then discovered
    assert [q["source"] for q in snap["queues"].values()] == ["config", "config", "binding"]
    assert snap["pending_tasks"] == 3 and snap["workers_subscribed"] == 1
    assert [(w["name"], w["alive"], w["responded"], w["active"]) for w in snap["workers"]] == [
        ("gone@host", False, False, None), ("w1@host", True, True, 1)]
    assert snap["active_tasks"] == 1 and snap["active"][0]["task_id"] == "t1"
    assert snap["unacked"] == {"count": 2, "oldest_delivered_at": "2027-01-15T07:59:30.000Z",
                               "oldest_age_seconds": 30.0, "visibility_timeout": None,
                               "overdue": None, "oldest": []}
    # optional capabilities (HealthReading, BeatReading) this broker lacks: null, and nothing breaks
    assert snap["broker_health"] is None and snap["beat"] is None and snap["inspect_error"] is None


@pytest.mark.parametrize("error, connected, text", [
    (ConnectionError("no route"), False, "ConnectionError: no route"),
    (PermissionError("NOPERM"), True, "PermissionError: NOPERM"),
    (ValueError("odd"), True, "could not read the broker's data (ValueError: odd)"),
])
def test_broker_trouble_is_a_down_snapshot_never_an_exception(error, connected, text):
    snap = Collector(make_config(), FakeBroker(fail=error)).snapshot()
    assert snap["redis_connected"] is connected and text in snap["error"]
    assert snap["queues"] == {} and snap["pending_tasks"] is None and snap["unacked"] is None
