"""Which workers' connections are open, between snapshots, on RabbitMQ (`ConnectionReading`).

Celery's worker holds a pidbox queue (`<node>.celery.pidbox`) that RabbitMQ deletes the moment the
worker's connection closes, so the queue answers for its worker by name: a passive declare of
each known worker's pidbox (two round trips a worker: exclusive since Celery 5.5, so 405 closes
the channel), or past `DECLARE_MAX` workers one management-API listing of queue names, or, when the
`rabbitmq_event_exchange` plugin is enabled, its `queue.deleted` events (nothing per poll).
`connections.source` says which (docs/rabbitmq.md).

The broker's calls come in as arguments (`probe`, `listing`, `subscribe`), so this module holds
only what to ask and what the answers mean.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from doorman.brokers.base import ConnectionTable
from doorman.brokers.rabbitmq import probe as pidbox_probe

PIDBOX_SUFFIX = ".celery.pidbox"
MAX_PROBED = 1000  # workers whose pidbox queue is probed between snapshots
HEARD_FOR = 60.0  # seconds a worker named by an event is probed without being listed or seen alive
PIDBOX_PROBE = "pidbox_probe"  # the connection table from passive declares of the pidbox queues
PIDBOX_LISTING = "pidbox_listing"  # from the management API's list of queue names
EVENT_EXCHANGE = "event_exchange"  # from the rabbitmq_event_exchange plugin's queue.created / queue.deleted
RETRY_EVENTS = 60.0  # seconds between attempts to subscribe to the plugin's events (off by default)
DECLARE_MAX = 8  # more workers than this: one listing call per poll beats a round trip or two per worker


class Events(Protocol):
    """The plugin's subscription (`doorman.brokers.rabbitmq.events.PidboxEvents`)."""

    overflowed: bool

    def drain(self) -> list[tuple[str, str]]: ...

    def close(self) -> None: ...


class PidboxLiveness:
    """The workers whose connection is open, followed between snapshots.

    `probe(names)`: passive declares of those queues; `listing()`: the vhost's queue names from the
    management API, None when it did not answer this snapshot; `subscribe()`: the plugin's events
    (raises when the plugin is off; an OSError when the broker does not answer)."""

    def __init__(self, clock: Callable[[], float], probe: Callable[[list[str]], dict[str, pidbox_probe.Probe]],
                 listing: Callable[[], set[str] | None], subscribe: Callable[[], Events]):
        self.clock, self.probe, self.listing, self.subscribe = clock, probe, listing, subscribe
        self.listed: list[str] = []  # workers whose pidbox queue the last listing showed (set by topology)
        self._heard: dict[str, float] = {}  # workers named by their events -> when last heard
        self._there: list[str] = []  # workers whose pidbox queue the last probe found
        self._ids: dict[str, int] = {}  # a stable id per worker name, for the connection table
        self._lock = threading.Lock()  # `_heard` is written by the heartbeat thread
        self._table_source = PIDBOX_PROBE
        self._evx: Events | None = None  # the event-exchange subscription, when the plugin is there
        self._evx_synced = False  # a probe has run since it subscribed: the events now carry the state
        self._evx_next_try = 0.0
        self._polls = 0
        self._gone: set[str] = set()  # workers whose pidbox queue the events say was deleted

    def close(self) -> None:
        if self._evx is not None:
            self._evx.close()
            self._evx = None

    def heard_of(self, name: str) -> None:
        with self._lock:
            if name in self._heard or len(self._heard) < MAX_PROBED:
                self._heard[name] = self.clock()

    def watched(self) -> list[str]:
        """Workers worth probing: listed by the last snapshot, found by the last probe, or heard of lately."""
        since = self.clock() - HEARD_FOR
        with self._lock:
            for n in [n for n, t in self._heard.items() if t < since]:
                del self._heard[n]
            heard = list(self._heard)
        return list(dict.fromkeys([*self.listed, *self._there, *heard]))[:MAX_PROBED]

    def _pidboxes(self, names: Sequence[str]) -> set[str]:
        """Which of `names` hold their pidbox queue now (their connection is open). A live worker's
        pidbox is exclusive (Celery 5.5+), so its passive declare fails (405) and the channel must
        be reopened: two round trips a worker. Past `DECLARE_MAX` workers one call to the
        management API's list of queue names answers for all of them (a deleted queue leaves
        the list at once), when the API answers; else the declares."""
        if len(names) > DECLARE_MAX:
            listed = self.listing()
            if listed is not None:
                self._table_source = PIDBOX_LISTING
                return {n for n in names if n + PIDBOX_SUFFIX in listed}
        self._table_source = PIDBOX_PROBE
        found = self.probe([n + PIDBOX_SUFFIX for n in names])
        return {n for n in names if pidbox_probe.worker_there(found.get(n + PIDBOX_SUFFIX))}

    def _subscription(self) -> Events | None:
        """The plugin's events, subscribed from the second poll on (a one-shot check polls once),
        retried every `RETRY_EVENTS` seconds when the plugin is off or vhost `/` is not ours."""
        if self._evx is None and self._polls >= 2 and self.clock() >= self._evx_next_try:
            self._evx_next_try = self.clock() + RETRY_EVENTS
            self._evx_synced = False
            try:
                self._evx = self.subscribe()
            except (OSError, EOFError):  # no answer at all: that is the broker's state, not the plugin's,
                self._evx = None  # and this poll must say so rather than spend a timeout on it in silence
                raise
            except Exception:  # noqa: BLE001 - the plugin is optional: the probes do the job without it
                self._evx = None
        return self._evx

    def _follow_events(self) -> bool:
        """Apply the events that arrived; False when there is no usable subscription."""
        evx = self._subscription()
        if evx is None or not self._evx_synced:
            return False
        try:
            events = evx.drain()
        except Exception:  # noqa: BLE001 - the subscription broke: probe, and subscribe again later
            evx.close()
            self._evx = None
            return False
        if evx.overflowed:  # some were dropped: probe once more, then follow the events again
            evx.overflowed, self._evx_synced = False, False
            return False
        self._gone &= set(self.watched())  # a worker no longer watched needs no tombstone
        for key, name in events:
            if key == "queue.deleted":
                if len(self._gone) < 10 * MAX_PROBED:
                    self._gone.add(name)
            else:
                self._gone.discard(name)
                self.heard_of(name)
        return True

    def connections(self) -> ConnectionTable:
        """The workers whose connection is open, from their pidbox queues: the plugin's events when
        it is enabled, else one passive declare each (or one management API listing past
        `DECLARE_MAX`), so a worker's death shows within a poll (its queue goes with its connection)."""
        self._polls += 1
        names = self.watched()
        if self._follow_events():
            self._table_source = EVENT_EXCHANGE
            self._there = [n for n in names if n not in self._gone]
        else:
            there = self._pidboxes(names)
            self._there = [n for n in names if n in there]
            if self._evx is not None:  # subscribed before this probe: from now on the events tell
                self._gone, self._evx_synced = {n for n in names if n not in there}, True
        for n in self._there:
            if n not in self._ids and len(self._ids) < 10 * MAX_PROBED:
                self._ids[n] = len(self._ids)
        ids = frozenset(self._ids[n] for n in self._there if n in self._ids)
        return ConnectionTable(clients=len(ids), consumers=ids, subscribers=ids, by_host={}, source=self._table_source)

    def ping(self, names: Sequence[str]) -> set[str]:
        """The workers of `names` still there. On RabbitMQ the pidbox queue answers for its worker
        by name (it lives exactly as long as the worker's connection), so no broadcast is sent and
        nothing is waited for; a solo worker busy with a task is found as well as an idle one."""
        if not names:
            return set()
        if self._follow_events():
            known = set(self._there)
            return {n for n in names if n in known and n not in self._gone}
        return self._pidboxes(list(names))
