"""Fake monotonic time for doorman.collect.schedule: it moves only when the schedule waits, so the
schedule's ticks are tested without sleeping."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable

from doorman.collect.schedule import Clock

EPOCH = 1_800_000_000.0


class FakeTime:
    """Monotonic time that moves only when the schedule waits; actions fire at set moments."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[tuple[float, int, Callable[[], None]]] = []

    @property
    def clock(self) -> Clock:
        return Clock(monotonic=lambda: self.now, wall=lambda: EPOCH + self.now)

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._due, (when, len(self._due), action))

    def wait(self, event: threading.Event, seconds: float) -> bool:
        end = self.now + seconds
        while not event.is_set() and self._due and self._due[0][0] <= end:
            when, _, action = heapq.heappop(self._due)
            self.now = max(self.now, when)
            action()
        if not event.is_set():
            self.now = end
        return event.is_set()
