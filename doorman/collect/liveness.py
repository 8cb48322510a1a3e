"""Liveness from the broker's own connection table, beside the heartbeats.

The kernel closes a killed process's sockets at once and the broker drops the client within
milliseconds, so a worker's death shows in the connection table long before its heartbeat is
overdue (2 × 2 s). In daemon mode the schedule calls `ConnectionWatch.poll` every
`liveness_poll_seconds`. When a consumer connection vanishes, the watch pings the workers it
believes alive (addressed to them alone, `liveness_confirm_seconds` at most): those that stay
silent are *lost*, and collect writes a snapshot with trigger `connection_lost` at once.

The table carries no worker names (kombu sets no client name), so the watch never guesses which
worker a connection was: the ping decides, and a silent worker counts as lost only when no more
workers are silent than consumer connections vanished (a solo worker busy with a task answers no
ping either, but its connections stay open). When the consumer connections are back within the
confirm window (a reconnect), nobody is lost.

The other way round, a worker whose heartbeat is overdue is still alive when no consumer
connection has vanished since its last heartbeat (`holds`): its process, whatever it does, still
holds its sockets. That is a solo-pool worker running a long task, which stops heartbeating.

A worker stopped warm (SIGTERM) says goodbye (`worker-offline`): a clean departure, not a loss.

A poll that waits for the broker and gets no answer (a stall: it failed unreachable after
`SLOW_POLL` seconds or more) calls for a snapshot at once (trigger `broker_unanswered`): the polls
run between snapshots on the same connection, so without it a stall shorter than a few timeouts
would be spent inside polls, and the snapshot after it would find the broker answering again and
never say it was down. Once until a read succeeds again, and at most once per `ANNOUNCE_GAP`
seconds whatever the broker does. A poll refused at once (a broker restarting) costs no time: the
next tick judges it.

Where the broker refuses the table (an ACL without `client|list`, a managed Redis), liveness falls
back to heartbeats alone: one warning per run on stderr, `connections: null` in the snapshot.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from doorman.brokers.base import (
    Broker,
    ConnectionReading,
    ConnectionTable,
    WorkerInfo,
    WorkerInfoReading,
    display,
)
from doorman.config.settings import Setting

SETTINGS: tuple[Setting, ...] = (
    Setting("liveness_poll_seconds", "float", 0.5, ("DOORMAN_LIVENESS_POLL_SECONDS",),
            "Daemon mode: seconds between two reads of the broker's connection table (a vanished "
            "worker connection is confirmed with a ping, then reported at once).", positive=True),
    Setting("liveness_confirm_seconds", "float", 0.5, ("DOORMAN_LIVENESS_CONFIRM_SECONDS",),
            "Seconds the confirming ping waits for the workers' answers.", positive=True),
)

MAX_LOST = 1000  # bound what the watch remembers, whatever the broker shows
MAX_VANISHES = 1000
DEPARTURE_SLACK = 2.0  # seconds between a worker's goodbye and its connections closing, either order
SLOW_POLL = 1.0  # seconds: a failed poll that waited this long was kept waiting by the broker
ANNOUNCE_GAP = 5.0  # seconds between two broker_unanswered snapshots at least


class ConnectionWatch:
    """Follows the connection table of a broker that can read it (`ConnectionReading`)."""

    def __init__(self, broker: Broker, confirm_timeout: float, believed_alive: Callable[[], Sequence[str]],
                 warn: Callable[[str], None], clock: Callable[[], float] = time.time,
                 departed: Callable[[], Iterable[str]] = lambda: (),
                 timer: Callable[[], float] = time.monotonic):
        self.broker = broker
        self.reader = broker if isinstance(broker, ConnectionReading) else None
        self.confirm_timeout = confirm_timeout
        self.believed_alive = believed_alive
        self.warn = warn
        self.clock = clock
        self.table: ConnectionTable | None = None
        self.refused = False
        self.lost: dict[str, float] = {}  # worker -> when its loss was confirmed
        self.vanishes: collections.deque[float] = collections.deque(maxlen=MAX_VANISHES)  # unexplained ones
        self.departed = departed  # workers that said goodbye (worker-offline): their connections close too
        self._departed_at: dict[str, float] = {}  # when the watch first saw each goodbye
        self._explained: set[str] = set()  # goodbyes already matched with a vanished connection
        self.timer = timer
        self.stall_error: Exception | None = None  # the last read waited and failed, unreachable: its error
        self._announced = False  # a broker_unanswered snapshot was asked for since the last good read
        self._announced_at = float("-inf")

    @property
    def available(self) -> bool:
        return self.reader is not None and not self.refused

    def _read(self) -> ConnectionTable | None:
        """The table now, None when refused (warned once) or unreadable (the snapshot says why)."""
        if not self.available or self.reader is None:
            return None
        began = self.timer()
        try:
            table = self.reader.connections()
        except Exception as e:  # noqa: BLE001 - a refusal is a fallback, anything else is the snapshot's
            failure = self.broker.failure(e)
            self.stall_error = e if failure == "unreachable" and self.timer() - began >= SLOW_POLL else None
            if failure == "refused":
                self.refused = True
                self.table = None
                self.warn("the broker refuses to list its connections (CLIENT LIST); liveness falls back "
                          "to heartbeats alone (add +client|list to Doorman's ACL user to get it back)")
            return None
        self.stall_error, self._announced = None, False
        return table

    def _note_departures(self) -> None:
        now, gone = self.clock(), set(self.departed())
        for name in [n for n in self._departed_at if n not in gone]:  # back again
            del self._departed_at[name]
            self._explained.discard(name)
        for name in gone:
            if name not in self._departed_at and len(self._departed_at) < MAX_LOST:
                self._departed_at[name] = now

    def _departures_since(self, t: float) -> list[str]:
        return [n for n, at in self._departed_at.items() if at >= t - DEPARTURE_SLACK]

    def poll(self) -> str | None:
        """Read the table; the trigger of a snapshot due now: `connection_lost` when a worker's loss
        was just confirmed, `broker_unanswered` when the broker stopped answering (once, until a read
        succeeds again, at most once per `ANNOUNCE_GAP`); None when nothing calls for one."""
        self._note_departures()
        before = self.table
        now_table = self._read()
        if now_table is None:
            if self.stall_error is None or self._announced or self.timer() - self._announced_at < ANNOUNCE_GAP:
                return None
            self._announced, self._announced_at = True, self.timer()
            return "broker_unanswered"
        self.table = now_table
        if before is None:
            return None
        gone = before.consumers - now_table.consumers
        if not gone:
            return None
        return "connection_lost" if self._confirm(len(gone), len(before.consumers)) else None

    def _confirm(self, vanished: int, had: int) -> bool:
        """Ping the workers believed alive; mark the silent ones lost if the numbers allow it."""
        assert self.reader is not None
        vanished = self._explain(vanished)
        if vanished <= 0:
            return False  # a warm stop: the worker said goodbye, then closed its connections
        asked = [n for n in self.believed_alive() if n not in self.lost]
        try:
            answered = self.reader.ping(asked, self.confirm_timeout) if asked else set()
            after = self._read()
        except Exception:  # noqa: BLE001 - the broker went away meanwhile: the next snapshot says so
            return False
        if after is not None:
            self.table = after
            if len(after.consumers) >= had:
                return False  # the connections came back: a reconnect, not a death
        now = self.clock()
        vanished = self._explain(vanished)  # a goodbye may arrive while the ping waits
        if vanished <= 0:
            return False
        self.vanishes.append(now)
        silent = [n for n in asked if n not in answered and n not in self._departed_at]
        if not silent or len(silent) > vanished:
            return False  # more silent than gone: a busy solo worker among them; heartbeats decide
        for name in silent:
            if len(self.lost) < MAX_LOST:
                self.lost[name] = now
        return True

    def _explain(self, vanished: int) -> int:
        """How many of `vanished` connections no fresh goodbye accounts for (using those goodbyes up)."""
        self._note_departures()
        goodbyes = [n for n in self._departures_since(self.clock()) if n not in self._explained][:vanished]
        self._explained.update(goodbyes)
        return vanished - len(goodbyes)

    def holds(self, last_heartbeat: float) -> bool:
        """Whether a worker silent since `last_heartbeat` still holds its connections: the table is
        read, and no consumer connection vanished (unexplained) since then."""
        if not self.available or self.table is None:
            return False
        vanished = sum(1 for t in self.vanishes if t >= last_heartbeat)
        unmatched = [n for n in self._departures_since(last_heartbeat) if n not in self._explained]
        return vanished <= len(unmatched)  # a goodbye seen late explains a vanish recorded before it

    def is_lost(self, name: str, last_heartbeat: float | None) -> bool:
        """Lost, and not heard from since (a heartbeat after the loss brings it back)."""
        at = self.lost.get(name)
        if at is None:
            return False
        if last_heartbeat is not None and last_heartbeat > at:
            del self.lost[name]
            return False
        return True

    def forgive(self, name: str) -> None:
        self.lost.pop(name, None)


class WorkerDirectory:
    """Each worker's `active_queues`, pool size and processed count, cached per worker and asked again
    when the set of workers changes or the answers are `max_age` seconds old."""

    def __init__(self, broker: Broker, timeout: float, max_age: float, clock: Callable[[], float] = time.time):
        self.reader = broker if isinstance(broker, WorkerInfoReading) else None
        self.timeout, self.max_age, self.clock = timeout, max_age, clock
        self.info: dict[str, WorkerInfo] = {}
        self._asked_for: frozenset[str] | None = None
        self._asked_at = 0.0

    def refresh(self, alive: Iterable[str]) -> None:
        if self.reader is None:
            return
        names = frozenset(alive)
        now = self.clock()
        if names == self._asked_for and now - self._asked_at < self.max_age:
            return
        self._asked_for, self._asked_at = names, now
        if not names:
            self.info = {}
            return
        answers = self.reader.worker_info(self.timeout)
        # keep what a worker said before when it is too busy to answer now (a solo worker)
        self.info = {n: answers.get(n) or self.info[n] for n in names if n in answers or n in self.info}


def annotate(data: dict[str, Any], beats: dict[str, Any], watch: ConnectionWatch | None,
             directory: WorkerDirectory | None, now: float) -> None:
    """Add the liveness findings to a snapshot's fields (`workers`, `alive_workers`, `queues`,
    `connections`) as `Collector._read` built them."""
    if watch is not None:
        watch.poll()
        if watch.stall_error is not None:
            raise watch.stall_error  # the broker stopped answering during this very snapshot: it says so
    workers: list[dict[str, Any]] = data.get("workers") or []
    raw = {display(n): n for n in beats}
    for w in workers:
        beat = beats.get(raw.get(w["name"], w["name"]))
        last = beat["last"] if beat else None
        if watch is not None:
            if w.get("responded"):
                watch.forgive(w["name"])
            elif watch.is_lost(w["name"], last):
                w["alive"] = False
            elif (beat and not w.get("alive") and not beat["offline"] and last is not None
                  and watch.holds(last)):
                w["alive"] = True  # silent but its connections are open: busy (a solo worker's task)
        if beat and beat["offline"] and not w.get("responded"):
            w["departed"] = True
        w.setdefault("processed", beat.get("processed") if beat else None)
        w.setdefault("concurrency", None)
    if data.get("alive_workers") is not None:  # null: liveness unknown (the broker refused the request)
        data["alive_workers"] = sum(1 for w in workers if w.get("alive"))
    alive = [w["name"] for w in workers if w.get("alive")]
    info: dict[str, WorkerInfo] = {}
    if directory is not None and directory.reader is not None:
        try:
            directory.refresh(alive)
        except Exception as e:  # noqa: BLE001 - a worker's odd answer must not cost the snapshot
            if watch is not None and watch.broker.failure(e) == "unreachable":
                raise
        info = directory.info
    for w in workers:
        got = info.get(w["name"])
        w.setdefault("queues", None)
        if got is not None:
            w["concurrency"] = got.concurrency
            w["queues"] = list(got.queues) if got.queues is not None else None
            if got.task_consumers is not None:
                w["task_consumers"] = got.task_consumers
            if w["processed"] is None:
                w["processed"] = got.processed
    if directory is not None and directory.reader is not None:
        _consumers(data.get("queues") or {}, alive, info)
    else:  # a broker that cannot ask the workers may know its consumers itself (RabbitMQ): keep that
        for q in (data.get("queues") or {}).values():
            q.setdefault("consumers", None)
            q.setdefault("consumed_by", None)
    data["connections"] = _table(watch.table) if watch is not None and watch.table is not None else None


def _table(t: ConnectionTable) -> dict[str, Any]:
    """The snapshot's `connections` field (schema v1)."""
    return {"clients": t.clients, "consumers": len(t.consumers), "subscribers": len(t.subscribers),
            "by_host": t.by_host, "hosts_truncated": t.hosts_truncated, "source": t.source}


def _consumers(queues: dict[str, dict[str, Any]], alive: list[str], info: dict[str, WorkerInfo]) -> None:
    """`consumers`/`consumed_by` of each queue: the live workers whose active_queues list it; null
    when some live worker has not said which queues it consumes (it might be one)."""
    unknown = any(info.get(n) is None or info[n].queues is None for n in alive)
    for name, q in queues.items():
        if isinstance(q.get("consumers"), int):  # the broker counts them itself (RabbitMQ): its figure stands
            by = sorted(n for n in alive if info.get(n) and name in (info[n].queues or ()))
            q["consumed_by"] = by if by or not unknown else None
            continue
        if unknown:
            by = [n for n in alive if info.get(n) and name in (info[n].queues or ())]
            q["consumers"] = len(by) if by else None
            q["consumed_by"] = by if by else None
        else:
            by = sorted(n for n in alive if name in (info[n].queues or ()))
            q["consumers"] = len(by)
            q["consumed_by"] = by
