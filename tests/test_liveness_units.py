"""Liveness without processes: the CLIENT LIST parser on hostile input, the connection watch deciding
who is lost (the broker comes in as a plain object per `ConnectionReading`), the schedule's
`connection_lost` snapshots under a fake clock, and the two new rules on dict snapshots."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from doorman.brokers.base import ConnectionTable, Failure
from doorman.brokers.redis.clients import MAX_HOSTS, parse_client_list
from doorman.collect.liveness import ConnectionWatch, annotate
from doorman.collect.schedule import run
from doorman.config.load import make_config
from doorman.rules.ghost_worker import RULE as GHOST
from doorman.rules.queue_unconsumed import RULE as UNCONSUMED
from tests.support.schedule_time import FakeTime


def line(cid: int, cmd: str = "brpop", psub: int = 0, name: str = "", host: str = "127.0.0.1") -> bytes:
    return (f"id={cid} addr={host}:{40000 + cid} laddr=127.0.0.1:6379 fd=8 name={name} age=3 idle=0 "
            f"flags=N db=0 sub=0 psub={psub} ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 "
            f"rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1800 events=r cmd={cmd} user=default "
            f"redir=-1 resp=3\n").encode()


def test_client_list_counts_consumers_and_subscribers_by_host_never_doorman_itself():
    raw = b"".join([line(5, "brpop"), line(6, "psubscribe", psub=1), line(7, "evalsha"),
                    line(8, "brpop", host="10.0.0.2"), line(9, "psubscribe", psub=1, name="celery-doorman"),
                    line(10, "client|list", name="celery-doorman")])
    t = parse_client_list(raw)
    assert (t.clients, t.consumers, t.subscribers) == (6, frozenset({5, 8}), frozenset({6}))
    assert t.by_host == {"127.0.0.1": {"consumers": 1, "subscribers": 1}, "10.0.0.2": {"consumers": 1, "subscribers": 0}}


def test_client_list_of_redis_5_where_cmd_is_the_last_field():
    raw = (b"id=5 addr=127.0.0.1:40005 fd=8 name= age=3 idle=0 flags=b db=0 sub=0 psub=0 multi=-1 qbuf=0 "
           b"qbuf-free=0 obl=0 oll=0 omem=0 events=r cmd=brpop\n"
           b"id=6 addr=127.0.0.1:40006 fd=9 name= age=3 idle=0 flags=N db=0 sub=0 psub=1 multi=-1 qbuf=0 "
           b"qbuf-free=0 obl=0 oll=0 omem=0 events=r cmd=psubscribe\n")
    t = parse_client_list(raw)
    assert (t.clients, t.consumers, t.subscribers) == (2, frozenset({5}), frozenset({6}))


def test_client_list_survives_garbage_and_bounds_the_hosts():
    junk = b"\x00\xff garbage\nid=x addr=\nid=12 addr=[::1]:5 name=a b flags=N\n" + b"=" * 10_000 + b"\n"
    many = b"".join(line(i, host=f"10.0.{i // 256}.{i % 256}") for i in range(MAX_HOSTS + 50))
    t = parse_client_list(junk + many)
    assert len(t.consumers) == MAX_HOSTS + 50
    assert len(t.by_host) == MAX_HOSTS and t.hosts_truncated
    assert parse_client_list(b"").consumers == frozenset()


class TableBroker:
    """A broker reduced to its connection table and its pidbox ping, scripted by the test."""

    def __init__(self, consumers: set[int], answering: set[str]):
        self.consumers, self.answering = consumers, answering
        self.refuse = False
        self.stalled = False
        self.down = False
        self.now = [0.0]
        self.stall_for = 5.0
        self.pinged: list[list[str]] = []

    def connections(self) -> ConnectionTable:
        if self.refuse:
            raise PermissionError("NOPERM this user has no permissions to run the 'client|list' command")
        if self.stalled:
            self.now[0] += self.stall_for  # waited out a timeout
            raise TimeoutError("timed out")
        if self.down:
            raise ConnectionRefusedError("refused at once")
        return ConnectionTable(9, frozenset(self.consumers), frozenset(), {})

    def ping(self, names: Sequence[str], timeout: float) -> set[str]:
        self.pinged.append(list(names))
        return set(names) & self.answering

    def failure(self, error: Exception) -> Failure | None:
        if isinstance(error, PermissionError):
            return "refused"
        return "unreachable" if isinstance(error, OSError) else None


def watch_of(broker: TableBroker, alive: list[str], warnings: list[str]) -> ConnectionWatch:
    return ConnectionWatch(broker, 0.5, lambda: alive, warnings.append, clock=lambda: 100.0)  # type: ignore[arg-type]


def test_a_vanished_consumer_and_a_silent_worker_is_a_confirmed_loss():
    broker, warnings = TableBroker({1, 2, 3}, {"a@h", "b@h", "c@h"}), []
    watch = watch_of(broker, ["a@h", "b@h", "c@h"], warnings)
    assert watch.poll() is None  # first reading: nothing to compare with
    broker.consumers, broker.answering = {1, 3}, {"a@h", "c@h"}
    assert watch.poll() == "connection_lost"
    assert broker.pinged == [["a@h", "b@h", "c@h"]]
    assert watch.is_lost("b@h", 99.0) and not watch.is_lost("a@h", 99.0)
    assert not watch.is_lost("b@h", 101.0), "a heartbeat after the loss brings it back"


def test_a_reconnect_and_a_busy_solo_worker_are_not_losses():
    broker, warnings = TableBroker({1, 2}, {"a@h", "b@h"}), []
    watch = watch_of(broker, ["a@h", "b@h"], warnings)
    watch.poll()
    broker.consumers = {1, 7}  # b reconnected: a new connection replaces the old one
    assert watch.poll() is None and not watch.lost
    # a solo worker busy with a task answers no ping, but nothing vanished: no ping at all
    broker.answering = {"a@h"}
    assert watch.poll() is None and len(broker.pinged) == 1
    assert watch.holds(50.0), "silent since 50, yet no consumer connection went away since"
    # one connection gone but two silent (the dead one and the busy solo one): heartbeats decide
    broker.consumers, broker.answering = {1}, set()
    assert watch.poll() is None and not watch.lost
    assert not watch.holds(50.0)


def test_a_refused_table_falls_back_to_heartbeats_with_one_warning():
    broker, warnings = TableBroker({1}, set()), []
    broker.refuse = True
    watch = watch_of(broker, [], warnings)
    assert [watch.poll(), watch.poll(), watch.poll()] == [None, None, None]
    assert len(warnings) == 1 and "CLIENT LIST" in warnings[0]
    assert watch.table is None and not watch.holds(0.0)


def test_a_broker_that_stops_answering_calls_for_one_snapshot_until_it_answers_again():
    """A stall spent inside polls must still reach a snapshot (the RabbitMQ soak's 12 s pause); a
    refusal that costs no time leaves it to the next tick."""
    broker, warnings = TableBroker({1}, {"a@h"}), []
    watch = ConnectionWatch(broker, 0.5, lambda: ["a@h"], warnings.append, clock=lambda: 100.0,  # type: ignore[arg-type]
                            timer=lambda: broker.now[0])
    assert watch.poll() is None
    broker.down = True
    assert [watch.poll(), watch.poll()] == [None, None], "refused at once: no time was spent, the tick decides"
    broker.down = False
    broker.stalled = True
    assert [watch.poll(), watch.poll(), watch.poll()] == ["broker_unanswered", None, None]
    broker.stalled = False
    assert watch.poll() is None
    broker.stalled = True
    assert watch.poll() == "broker_unanswered", "a second outage is a second snapshot"
    broker.stalled, broker.down = False, True
    assert watch.poll() is None
    broker.stalled, broker.down = True, False
    assert watch.poll() is None, "stalled, refused, stalled: one outage until a read succeeds"
    assert warnings == [] and watch.available, "not answering is not refusing: the table stays in use"
    # a stall met by the poll inside a snapshot fails that snapshot, with the poll's own error
    with pytest.raises(TimeoutError):
        annotate({"workers": []}, {}, watch, None, 100.0)


def test_at_most_one_broker_unanswered_snapshot_per_gap_however_the_broker_flaps():
    broker, warnings = TableBroker({1}, {"a@h"}), []
    watch = ConnectionWatch(broker, 0.5, lambda: ["a@h"], warnings.append, clock=lambda: 100.0,  # type: ignore[arg-type]
                            timer=lambda: broker.now[0])
    broker.stall_for = 1.0  # each slow failure waits 1 s
    got = []
    for _ in range(6):  # an answer, then a slow failure, again and again: 12 s of flapping
        broker.stalled = False
        broker.now[0] += 1.0
        got.append(watch.poll())
        broker.stalled = True
        got.append(watch.poll())
    assert got.count("broker_unanswered") == 2, got  # 12 s of flapping: one per ANNOUNCE_GAP (5 s)


def test_a_redis_loading_its_data_is_unreadable_for_now_not_a_refused_table(redis_server, monkeypatch):
    """LOADING (or BUSY) answers every command while it lasts: the table must not be turned off for
    the run, with a warning about an ACL that is not the cause."""
    import redis

    from doorman import brokers
    from doorman.brokers.redis import liveness as redis_liveness

    broker = brokers.connect(make_config(broker_url=redis_server.url))
    warnings: list[str] = []
    watch = ConnectionWatch(broker, 0.5, lambda: [], warnings.append)
    try:
        assert watch.poll() is None and watch.table is not None  # the real CLIENT LIST

        def loading(_client: object) -> None:
            raise redis.ResponseError("LOADING Redis is loading the dataset in memory")

        monkeypatch.setattr(redis_liveness, "read_connections", loading)
        assert watch.poll() is None
        assert watch.available and warnings == []
        monkeypatch.undo()
        assert watch.poll() is None and watch.table is not None
    finally:
        broker.close()


class Loser:
    def __init__(self, at: set[int]):
        self.at, self.calls = at, 0

    def poll(self) -> str | None:
        self.calls += 1
        return "connection_lost" if self.calls in self.at else None


def test_a_confirmed_loss_is_one_snapshot_at_once_and_the_ticks_stay_put():
    t = FakeTime()
    taken: list[tuple[float, str]] = []
    loser = Loser({3})  # the third poll, at 1.5 s, confirms a loss

    def take(why: str) -> dict:
        taken.append((round(t.now, 3), why))
        return {"trigger": why, "error": None}

    run(take, lambda s, n: None, interval=10.0, count=3, trigger="interval", wake=threading.Event(),
        stopping=threading.Event(), clock=t.clock, wait=t.wait, liveness=loser, poll_every=0.5)
    assert taken == [(0.0, "interval"), (1.5, "connection_lost"), (10.0, "interval")]


CFG = make_config(thresholds={"ghost_after_seconds": 60, "unconsumed_after_seconds": 60,
                              "critical_queues": ["payments"]})


def snap(queues: dict, workers: list[dict], consumers: int | None = 1) -> dict:
    return {"queues": queues, "workers": workers, "alive_workers": sum(1 for w in workers if w["alive"]),
            "pending_tasks": sum(q["pending"] for q in queues.values()),
            "connections": None if consumers is None else {"consumers": consumers}}


def run_rule(rule, snaps: list[tuple[float, dict]]) -> list[list[tuple[str, str, str]]]:
    state = rule.initial_state()
    out = []
    for now, s in snaps:
        rule.observe(s, state, CFG, now)
        out.append([(c["alert_type"], c["severity"], c["subject"]) for c in rule.evaluate(s, state, CFG, now)])
    return out


W = {"name": "w1@h", "alive": True, "active": 0, "concurrency": 2, "processed": 10, "queues": ["celery"]}


def test_queue_unconsumed_fires_after_the_threshold_critical_in_critical_queues():
    queues = {"celery": {"pending": 0, "consumers": 1}, "reports": {"pending": 4, "consumers": 0},
              "payments": {"pending": 1, "consumers": 0}, "unknown": {"pending": 9, "consumers": None}}
    s = snap(queues, [W])
    assert run_rule(UNCONSUMED, [(0, s), (59, s), (60, s)]) == [[], [], [
        ("queue_unconsumed", "critical", "queue:payments"), ("queue_unconsumed", "warning", "queue:reports")]]


def test_queue_unconsumed_waits_for_workers_down_when_no_worker_is_alive_and_restarts_its_clock():
    queues = {"reports": {"pending": 4, "consumers": 0}}
    dead = snap(queues, [{**W, "alive": False}])
    alive = snap(queues, [W])
    assert run_rule(UNCONSUMED, [(0, alive), (30, dead), (61, alive), (121, alive)]) == [
        [], [], [], [("queue_unconsumed", "warning", "queue:reports")]]


def test_ghost_b_tasks_wait_in_its_queue_free_slots_and_a_flat_processed_count():
    waiting = {"celery": {"pending": 5, "consumers": 1, "consumed_by": ["w1@h"]}}
    s = snap(waiting, [W])
    moving = snap(waiting, [{**W, "processed": 11}])
    full = snap(waiting, [{**W, "active": 2}])
    assert run_rule(GHOST, [(0, s), (60, s)]) == [[], [("ghost_worker", "critical", "worker:w1@h")]]
    assert run_rule(GHOST, [(0, s), (30, moving), (60, moving)]) == [[], [], []]
    assert run_rule(GHOST, [(0, full), (90, full)]) == [[], []], "a worker with no free slot is busy"


def test_ghost_a_a_live_worker_without_a_consumer_connection_is_named_only_when_unambiguous():
    idle = {"celery": {"pending": 0, "consumers": 2, "consumed_by": ["w1@h", "w2@h"]}}
    w2 = {**W, "name": "w2@h"}
    one_missing = snap(idle, [W, {**w2, "processed": 99}], consumers=1)
    moving = snap(idle, [W, {**w2, "processed": 100}], consumers=1)
    assert run_rule(GHOST, [(0, one_missing), (60, moving)]) == [[], [("ghost_worker", "critical", "worker:w1@h")]]
    both_still = snap(idle, [W, w2], consumers=1)
    assert run_rule(GHOST, [(0, both_still), (60, both_still)]) == [[], []], "two suspects, one missing: unnamed"
    unknown = snap(idle, [W, w2], consumers=None)
    assert run_rule(GHOST, [(0, unknown), (60, unknown)]) == [[], []]


def test_a_warm_stop_is_a_goodbye_not_a_loss_and_does_not_blind_the_watch():
    broker, warnings, gone = TableBroker({1, 2, 3}, {"a@h", "b@h"}), [], []
    watch = ConnectionWatch(broker, 0.5, lambda: ["a@h", "b@h"], warnings.append,  # type: ignore[arg-type]
                            clock=lambda: 100.0, departed=lambda: gone)
    watch.poll()
    gone.append("c@h")  # c said goodbye (worker-offline), then closed its connections
    broker.consumers = {1, 2}
    assert watch.poll() is None and not watch.lost and broker.pinged == []
    assert watch.holds(90.0), "a silent solo worker is still held: the vanished connection was c's"
    broker.consumers, broker.answering = {1}, {"a@h"}  # now b dies: one vanish, one silent
    assert watch.poll() == "connection_lost" and set(watch.lost) == {"b@h"}
    assert not watch.holds(90.0)
