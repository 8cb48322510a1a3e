"""The write-ahead path and the spool's retry timer.

A batch is journaled for every destination, in one spool write, before the first attempt to any
of them; an entry leaves the spool once its destination took it, so a kill -9 mid-retry loses
nothing. Each destination then sends its spool in order (older entries first), so new alerts
queue behind old ones. A destination that is down is retried every `retry_seconds` (or when a
receiver's Retry-After says), not at every new alert.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from doorman.notify.courier import STOPPING, Courier
from doorman.notify.journal import Spool, due_at, new_entry
from doorman.notify.records import Ledger
from doorman.sinks.base import Alert, Sink

Plan = list[tuple[Sink, list[Alert]]]


class Replayer:
    """Sends through the spool; `next_replay` holds, per destination, when to try it again."""

    def __init__(self, spool: Spool, courier: Courier, ledger: Ledger, stop: threading.Event,
                 wall: Callable[[], float], retry_seconds: float):
        self.spool, self.courier, self.ledger, self.stop = spool, courier, ledger, stop
        self.wall, self.retry_seconds = wall, retry_seconds
        self.next_replay: dict[str, float] = {}
        courier.retry_note = f"will retry in {retry_seconds:g} s, or on the next run if this one ends first"

    def deliver(self, plan: Plan) -> None:
        """Journal the whole batch, then let each destination send its spool. The lock is held
        throughout, so a concurrent run cannot send our entries."""
        now = self.wall()
        with self.spool.locked():
            waiting = self.spool.counts()
            journal = [new_entry(sink.name, a, 0, "not attempted yet", None, None, now)
                       for sink, wanted in plan for a in wanted]
            self.spool.add(journal)
            self.courier.fresh = {e["id"] for e in journal}
            try:
                for sink, wanted in plan:
                    self.turn(sink, wanted, waiting.get(sink.name, 0))
            finally:
                self.courier.fresh = set()

    def turn(self, sink: Sink, wanted: list[Alert], older: int) -> None:
        """One destination's turn with a journaled batch; `older`: its entries from before."""
        if self.stop.is_set():
            self.note_spooled(sink, wanted, STOPPING)
            return
        if not older:
            self.next_replay.pop(sink.name, None)  # nothing older waits: try now
        if not self.replay_sink(sink):
            self.note_spooled(sink, wanted, f"{sink.name} is not taking alerts: queued behind "
                              f"{older} earlier undelivered alert(s)")

    def note_spooled(self, sink: Sink, alerts: Sequence[Alert], reason: str) -> None:
        """Records for journaled alerts that stay in the spool untried."""
        for a in alerts:
            self.ledger.delivery(sink.name, a, "spooled", error=reason)

    def replay(self, sinks: Sequence[Sink]) -> None:
        """Try the spool for every configured destination whose retry time has come."""
        for sink in sinks:
            if self.stop.is_set():
                return
            if self.spool.counts().get(sink.name):
                self.replay_sink(sink)

    def next_in(self, sinks: Sequence[Sink]) -> float | None:
        """Seconds until a spooled alert is due (None: nothing spooled for these destinations)."""
        counts = self.spool.counts()
        times = [self.next_replay.get(s.name, 0.0) for s in sinks if counts.get(s.name)]
        return max(0.0, min(times) - self.wall()) if times else None

    def replay_sink(self, sink: Sink) -> bool:
        """Send what the spool holds for this destination, oldest first, holding the spool lock.
        False when it was not tried (its retry time has not come)."""
        now = self.wall()
        if now < self.next_replay.get(sink.name, 0.0):
            return False
        with self.spool.locked():
            mine = [e for e in self.spool.load() if e["destination"] == sink.name]
            if not mine:
                return True
            if due_at(mine[0]) > now:
                self.next_replay[sink.name] = due_at(mine[0])
                return False
            self.courier.deliver(sink, [e["alert"] for e in mine], mine)
        if self.spool.counts().get(sink.name):
            self.next_replay[sink.name] = self.wall() + self.retry_seconds
        return True
