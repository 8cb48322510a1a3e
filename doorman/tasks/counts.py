"""Count task events as they pass: the `tasks` section of every daemon snapshot.

The reader thread calls `feed` once per broker message (a `task.multi` batch is one call) and
`heartbeat` for each worker heartbeat; the collector calls `section(now)`, which copies under the
same short lock, so the alert path never waits on the reader for more than one message.

Counts are cumulative since `since` (the collector's start), like Prometheus counters. Every map
is capped (`max_task_names`, `max_task_hostnames`, `max_task_series`, `MAX_EXCEPTIONS` per task):
a new key past its cap is summed under `(other)` and counted in `omitted`, so a flood of random
names costs a fixed amount of memory. docs/tasks.md says what each field means.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from doorman.bounds import MAX_NAME, cap_name
from doorman.config.settings import Setting
from doorman.contract.tasks import (
    OTHER,
    PLAIN_FIELDS,
    QUEUE_WAIT_BUCKETS,
    RUNTIME_BUCKETS,
    UNKNOWN,
    WAIT_BUCKETS,
    Counts,
    Events,
    Hist,
    LastException,
    Plain,
    Series,
    Tasks,
)
from doorman.tasks import messages
from doorman.tasks import names as memory
from doorman.tasks.envelope import MAX_CLASS, exception_class
from doorman.textsafe import printable
from doorman.timefmt import iso

SETTINGS: tuple[Setting, ...] = (
    Setting("task_events", "bool", True, ("DOORMAN_TASK_EVENTS",),
            "Daemon mode: read Celery's task events (one read-only subscription, beside the heartbeats) "
            "and count them in every snapshot's `tasks` section (docs/tasks.md). false: `tasks` is null."),
    Setting("max_task_names", "int", 1000, ("DOORMAN_MAX_TASK_NAMES",),
            "Task names counted apart in `tasks.by_name` (and queues in `tasks.by_queue`); the rest are "
            "summed under `(other)`.", positive=True),
    Setting("max_task_hostnames", "int", 1000, ("DOORMAN_MAX_TASK_HOSTNAMES",),
            "Worker hostnames counted apart in `tasks.by_worker`; the rest are summed under `(other)`.",
            positive=True),
    Setting("max_task_series", "int", 5000, ("DOORMAN_MAX_TASK_SERIES",),
            "(task name, hostname, queue) rows in `tasks.series`; the rest are summed in one `(other)` row.",
            positive=True),
    *messages.SETTINGS,
    *memory.SETTINGS,
)

MAX_EXCEPTIONS = 20  # exception classes per task name (and per series row); the rest under "(other)"
MAX_SILENT = 100  # hostnames listed in `silent_workers`
MAX_OMITTED_MEMORY = 10_000  # distinct folded keys remembered per kind, so `omitted` counts each once

SENT, RECEIVED, STARTED, SUCCEEDED, FAILED, RETRIED, REJECTED, REVOKED, FINAL = range(9)
KINDS = {f"task-{field}": i for i, field in enumerate(PLAIN_FIELDS)}
_RB, _QB, _WB = RUNTIME_BUCKETS, QUEUE_WAIT_BUCKETS, WAIT_BUCKETS


def clean(value: Any) -> str | None:
    """A name from the wire as the snapshot may show it: capped, no control characters."""
    if type(value) is not str:
        return None
    if len(value) <= MAX_NAME and value.isprintable():
        return value
    return cap_name(printable(value))


def _ts(value: Any) -> float | None:
    return value if type(value) is float or type(value) is int else None


def _eta(value: Any) -> float | None:
    """An ETA (ISO 8601 in Celery's events) as epoch seconds; naive times are taken as UTC."""
    if type(value) is not str or len(value) > 64:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        from datetime import timezone

        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


class _Stat:
    """One row's counters: the eight plain counts (+ final failures), exceptions, histograms."""

    __slots__ = ("n", "exc", "rt", "rt_sum", "qw", "qw_sum", "w", "w_sum", "last")

    def __init__(self) -> None:
        self.last: LastException | None = None  # only with task_exception_messages
        self.n = [0] * 9
        self.exc: dict[str, int] = {}
        self.rt = [0] * (len(_RB) + 1)
        self.rt_sum = 0.0
        self.qw = [0] * (len(_QB) + 1)
        self.qw_sum = 0.0
        self.w = [0] * (len(_WB) + 1)
        self.w_sum = 0.0


class _Host:
    """What one worker's heartbeats and events say, to judge `events` and `lost`."""

    __slots__ = ("events", "started", "last", "acc", "acc_prev")

    def __init__(self) -> None:
        self.events = 0  # task events from it (task-sent excluded: that is the publisher's)
        self.started = 0
        self.last: int | None = None  # `processed` in its latest heartbeat
        self.acc = 0  # `processed` increments seen since its first heartbeat
        self.acc_prev = 0  # ... up to its previous heartbeat (its events have surely arrived by now)


class _Folded:
    """Distinct keys folded into `(other)` for one kind (remembered up to a bound)."""

    __slots__ = ("seen", "extra")

    def __init__(self) -> None:
        self.seen: set[Any] = set()
        self.extra = 0

    def add(self, key: Any) -> None:
        if key in self.seen:
            return
        if len(self.seen) < MAX_OMITTED_MEMORY:
            self.seen.add(key)
        else:
            self.extra += 1  # past the bound each fold counts: an upper estimate

    @property
    def count(self) -> int:
        return len(self.seen) + self.extra


def _hist(counts: list[int], total: float) -> Hist:
    return {"counts": list(counts), "count": sum(counts), "sum": round(total, 6)}


def _plain(n: list[int]) -> Plain:
    return {"sent": n[0], "received": n[1], "started": n[2], "succeeded": n[3], "failed": n[4],
            "retried": n[5], "rejected": n[6], "revoked": n[7]}


def _capped_add(exc: dict[str, int], cls: str, folded: _Folded | None) -> None:
    if cls in exc:
        exc[cls] += 1
    elif len(exc) < MAX_EXCEPTIONS:
        exc[cls] = 1
    else:
        exc[OTHER] = exc.get(OTHER, 0) + 1
        if folded is not None:
            folded.add(cls)


class TaskCounts:
    """The aggregator. Thread-safe: one writer (the reader thread), any number of `section` readers."""

    def __init__(self, broker: str, *, max_names: int = 1000, max_hostnames: int = 1000, max_series: int = 5000,
                 name_memory: int = memory.DEFAULT_MEMORY, clock: Callable[[], float] = time.time):
        self.broker = broker
        self.clock = clock
        self.since = clock()
        self.max_names, self.max_hostnames, self.max_series = max_names, max_hostnames, max_series
        self.memory = memory.TaskMemory(name_memory)
        self.sent_seen = False  # task-sent events exist (a start may then wait for its own)
        self._lock = threading.Lock()
        self.names: dict[str, _Stat] = {}
        self.queues: dict[str, list[int]] = {}
        self.workers: dict[str, list[int]] = {}
        self.series: dict[tuple[str, str, str], _Stat] = {}
        self.hosts: dict[str, _Host] = {}
        self.folded = {k: _Folded() for k in ("names", "hostnames", "queues", "series", "exceptions")}
        self.events = self.messages = self.bad = 0
        self.subscribed_now = self.subscribed_ever = False
        self._down_since: float | None = None  # the wait for the first subscription is start-up, not a loss
        self._down_total = 0.0
        self.gaps = 0
        self.denied: str | None = None  # why the broker refuses the task events (an ACL), said once
        self.say: Callable[[str], None] | None = None
        self.keep_messages: messages.Masker | None = None  # task_exception_messages (tasks/messages.py)

    @classmethod
    def of(cls, cfg: Any, broker: str, clock: Callable[[], float] = time.time) -> TaskCounts:
        counts = cls(broker, max_names=cfg.max_task_names, max_hostnames=cfg.max_task_hostnames,
                     max_series=cfg.max_task_series, name_memory=cfg.task_name_memory, clock=clock)
        counts.keep_messages = messages.masker(cfg)
        return counts

    # ------------------------------------------------------------ the reader's side

    def subscribed(self) -> None:
        now = self.clock()
        with self._lock:
            if self._down_since is not None:
                self._down_total += max(0.0, now - self._down_since)
                self._down_since = None
            self.subscribed_now = self.subscribed_ever = True

    def unsubscribed(self) -> None:
        """The subscription broke (or could not be made): every event until `subscribed` is lost."""
        now = self.clock()
        with self._lock:
            # a subscription that broke; one never made yet is start-up (on RabbitMQ the `celeryev`
            # exchange exists only once a worker has declared it: before, no event can be lost)
            if self._down_since is None and self.denied is None and self.subscribed_ever:
                self._down_since = now
                self.gaps += 1
            self.subscribed_now = False

    def deny(self, reason: str) -> None:
        """The broker refuses the task events (not a gap: nothing will come until it is allowed)."""
        with self._lock:
            self.denied = reason
            self._down_since = None
            self.subscribed_now = False
        if self.say is not None:
            self.say(reason)

    def bad_message(self) -> None:
        with self._lock:
            self.messages += 1
            self.bad += 1

    def heartbeat(self, hostname: str, processed: Any) -> None:
        """A worker's heartbeat `processed` (tasks it accepted since it started)."""
        if type(processed) is not int or processed < 0:
            return
        host = clean(hostname)
        if host is None:
            return
        with self._lock:
            h = self.hosts.get(host)
            if h is None:
                if len(self.hosts) >= 2 * self.max_hostnames:
                    return  # bounded: past it, new workers are not judged
                h = self.hosts[host] = _Host()
            h.acc_prev = h.acc
            if h.last is not None:
                h.acc += processed - h.last if processed >= h.last else processed  # lower: it restarted
            h.last = processed

    def _queue_wait(self, entry: list[Any], stat: _Stat, row: _Stat, started: float, sent: float) -> None:
        """One sent -> started wait, into its task's and its series row's histogram."""
        eta = entry[memory.ETA]
        qw = started - (sent if eta is None or eta < sent else eta)
        if qw < 0:
            qw = 0.0  # task-sent is stamped after the message is published, hosts' clocks differ
        i = bisect_left(_QB, qw)
        stat.qw[i] += 1
        stat.qw_sum += qw
        row.qw[i] += 1
        row.qw_sum += qw

    def feed(self, events: Iterable[dict[str, Any]]) -> None:
        """Count the events of one broker message."""
        with self._lock:
            self.messages += 1
            one = self._one
            for ev in events:
                one(ev)

    # ------------------------------------------------------------ one event (hot path)

    def _one(self, ev: dict[str, Any]) -> None:
        kind = KINDS.get(ev.get("type"))  # type: ignore[arg-type]
        if kind is None:
            return  # task-cancelled, custom events: not counted
        uuid = ev.get("uuid")
        if type(uuid) is not str:
            self.bad += 1
            return
        self.events += 1
        host = ev.get("hostname")
        if type(host) is not str or len(host) > MAX_NAME or not host.isprintable():
            host = clean(host) or UNKNOWN
        ts = ev.get("timestamp")
        if type(ts) is not float:
            ts = float(ts) if type(ts) is int else None
        mem = self.memory
        entry: list[Any] | None
        if kind == SENT or kind == RECEIVED:
            raw = ev.get("name")
            name = raw if type(raw) is str and len(raw) <= MAX_NAME and raw.isprintable() else (clean(raw) or UNKNOWN)
            entry = mem.remember(uuid, name)
            if kind == SENT:
                q = ev.get("queue")
                if type(q) is not str:
                    q = ev.get("routing_key")
                entry[memory.QUEUE] = q if type(q) is str and len(q) <= MAX_NAME and q.isprintable() else clean(q)
                entry[memory.SENT] = ts
                self.sent_seen = True
                late = entry[memory.STARTED]
                if late is not None and ts is not None:  # the start came first (two publishers' events
                    entry[memory.STARTED] = None       # race): its queue wait is known only now
                    self._queue_wait(entry, late[1], late[2], late[0], ts)
                    if late[3]:
                        mem.forget(uuid)  # its outcome came already
            else:
                prev = entry[memory.RECEIVED]
                if prev is not None and entry[memory.SENT] is not None and entry[memory.SENT] <= prev:
                    entry[memory.SENT] = None  # a retry not announced by task-sent: no queue_wait for it
                entry[memory.RECEIVED] = ts
                retries = ev.get("retries")
                if type(retries) is int and retries > 0:
                    entry[memory.RETRIED] = True
            eta = ev.get("eta")
            if eta is not None:
                entry[memory.ETA] = _eta(eta)
        elif kind == SUCCEEDED or kind == REJECTED or kind == REVOKED:
            entry = mem.get(uuid)
            if entry is None or entry[memory.STARTED] is None:
                entry = mem.forget(uuid)  # its outcome: the task is done (a failure may still be rejected)
            else:  # kept while its late task-sent may come, then forgotten
                entry[memory.STARTED] = (*entry[memory.STARTED][:3], True)
        else:
            entry = mem.get(uuid)
        if entry is None:
            name, queue = UNKNOWN, UNKNOWN
        else:
            name, queue = entry[0], entry[1] or UNKNOWN

        key = (name, host, queue)
        stat = self.names.get(name) or self._name(name)
        row = self.series.get(key) or self._row(key)
        qn = self.queues.get(queue) or self._key(self.queues, queue, self.max_names, "queues")
        wn = self.workers.get(host) or self._key(self.workers, host, self.max_hostnames, "hostnames")
        stat.n[kind] += 1
        row.n[kind] += 1
        qn[kind] += 1
        wn[kind] += 1
        if kind != SENT:
            h = self.hosts.get(host)
            if h is None and len(self.hosts) < 2 * self.max_hostnames:
                h = self.hosts[host] = _Host()
            if h is not None:
                h.events += 1
                if kind == STARTED:
                    h.started += 1

        if kind == STARTED:
            if entry is not None and ts is not None:
                got = entry[memory.RECEIVED]
                if got is not None:
                    wait = ts - got if ts > got else 0.0  # clocks of two processes: never negative
                    stat.w[bisect_left(_WB, wait)] += 1
                    stat.w_sum += wait
                sent = entry[memory.SENT]
                if sent is not None:
                    self._queue_wait(entry, stat, row, ts, sent)
                elif self.sent_seen:  # task-sent events exist: this one's may still be on its way
                    entry[memory.STARTED] = (ts, stat, row, False)
        elif kind == SUCCEEDED:
            rt = ev.get("runtime")
            if (type(rt) is float or type(rt) is int) and rt >= 0:
                i = bisect_left(_RB, rt)
                stat.rt[i] += 1
                stat.rt_sum += rt
                row.rt[i] += 1
                row.rt_sum += rt
        elif kind == FAILED:
            cls = exception_class(ev.get("exception"))
            if len(cls) > MAX_CLASS:
                cls = cls[:MAX_CLASS]
            _capped_add(stat.exc, cls, self.folded["exceptions"])
            _capped_add(row.exc, cls, None)
            if self.keep_messages is not None:
                stat.last = {"class": printable(cls), "message": self.keep_messages(ev.get("exception")),
                             "at": iso(ts) if ts is not None else None}
            if entry is not None and entry[memory.RETRIED]:
                stat.n[FINAL] += 1
        elif kind == RETRIED and entry is not None:
            entry[memory.RETRIED] = True

    # ------------------------------------------------------------ caps (cold path)

    def _name(self, name: str) -> _Stat:
        if len(self.names) < self.max_names or name == OTHER:
            stat = self.names[name] = _Stat()
            return stat
        self.folded["names"].add(name)
        return self.names.setdefault(OTHER, _Stat())

    def _row(self, key: tuple[str, str, str]) -> _Stat:
        if len(self.series) < self.max_series:
            row = self.series[key] = _Stat()
            return row
        self.folded["series"].add(hash(key))
        return self.series.setdefault((OTHER, OTHER, OTHER), _Stat())

    def _key(self, table: dict[str, list[int]], key: str, cap: int, kind: str) -> list[int]:
        if len(table) < cap:
            n = table[key] = [0] * 8
            return n
        self.folded[kind].add(key)
        return table.setdefault(OTHER, [0] * 8)

    # ------------------------------------------------------------ the snapshot's side

    def section(self, now: float | None = None) -> Tasks:
        """The `tasks` section now: a consistent copy (taken under the lock), then built outside it."""
        now = self.clock() if now is None else now
        with self._lock:
            names = {k: (list(s.n), dict(s.exc), list(s.rt), s.rt_sum, list(s.w), s.w_sum, list(s.qw), s.qw_sum)
                     for k, s in self.names.items()}
            last = {k: s.last for k, s in self.names.items() if s.last is not None}
            queues = {k: list(v) for k, v in self.queues.items()}
            workers = {k: list(v) for k, v in self.workers.items()}
            series = [(k, list(s.n), dict(s.exc), list(s.rt), s.rt_sum, list(s.qw), s.qw_sum)
                      for k, s in self.series.items()]
            hosts = [(k, h.events, h.started, h.acc_prev) for k, h in self.hosts.items()]
            reader = {"broker": self.broker, "subscribed": self.subscribed_now, "events": self.events,
                      "messages": self.messages, "bad": self.bad}
            down = self._down_total + (max(0.0, now - self._down_since) if self._down_since is not None else 0.0)
            gaps = self.gaps
            omitted = {k: f.count for k, f in self.folded.items()}
        by_name: dict[str, Counts] = {}
        for k, (n, exc, rt, rts, w, ws, qw, qws) in names.items():
            c: Counts = {**_plain(n), "exceptions": exc, "final_failures": n[FINAL],
                         "runtime": _hist(rt, rts), "wait": _hist(w, ws), "queue_wait": _hist(qw, qws)}
            if k in last:
                c["last_exception"] = last[k]
            by_name[k] = c
        rows: list[Series] = []
        for (name, host, queue), n, exc, rt, rts, qw, qws in series:
            row: Series = {"name": name, "hostname": host, "queue": queue, **_plain(n),
                           "exceptions": exc, "runtime": _hist(rt, rts), "queue_wait": _hist(qw, qws)}
            rows.append(row)
        silent, sending, lost = [], 0, {}
        for host, events, started, acc_prev in hosts:
            if events:
                sending += 1
            elif acc_prev > 0:
                silent.append(host)
            if events and acc_prev > started:  # a silent worker is `silent_workers`, not a loss
                lost[host] = acc_prev - started
        state: Events = ("partial" if silent and sending else "off" if silent else "on" if sending else "unknown")
        return {
            "events": state,
            "silent_workers": sorted(silent)[:MAX_SILENT],
            "since": round(self.since, 3),
            "reader": reader,  # type: ignore[typeddict-item]
            "buckets": {"runtime": list(_RB), "queue_wait": list(_QB), "wait": list(_WB)},
            "by_name": by_name,
            "by_queue": {k: _plain(v) for k, v in queues.items()},
            "by_worker": {k: _plain(v) for k, v in workers.items()},
            "series": rows,
            "lost": {"unsubscribed_seconds": round(down, 3), "gaps": gaps,
                     "by_worker": dict(sorted(lost.items())[:self.max_hostnames]), "total": sum(lost.values())},
            "omitted": omitted,  # type: ignore[typeddict-item]
        }

