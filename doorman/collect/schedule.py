"""When to take a snapshot: every `interval` seconds, and at once when the heartbeats change.

A worker that appears, says goodbye or goes overdue (see `heartbeats`) sets `wake` or shows in
`pop_overdue`; that costs one extra snapshot (`trigger: heartbeat`) at most every `MIN_GAP`
seconds, and does not move the interval's ticks. Time and waiting are injected (`Clock`, `wait`),
so the schedule is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from doorman.contract.snapshot import Snapshot

MIN_GAP = 0.25  # seconds between event-triggered snapshots
EXPIRY_SLACK = 0.01  # wake just after a heartbeat's deadline, not just before


@dataclass(frozen=True)
class Clock:
    monotonic: Callable[[], float] = time.monotonic  # for intervals
    wall: Callable[[], float] = time.time  # for heartbeat deadlines (epoch seconds)


SYSTEM_CLOCK = Clock()
Wait = Callable[[threading.Event, float], bool]  # wait(event, seconds) -> whether the event is set


def wait_event(event: threading.Event, seconds: float) -> bool:
    return event.wait(seconds)


class Expiries(Protocol):
    """The part of the heartbeat tracker the schedule needs."""

    def next_expiry(self) -> float | None: ...

    def pop_overdue(self, now: float) -> list[str]: ...


class Poller(Protocol):
    """The connection-table watch (`doorman.collect.liveness.ConnectionWatch`): the trigger of a
    snapshot due now (`connection_lost`, `broker_unanswered`), or None."""

    def poll(self) -> str | None: ...


EXTRA = ("heartbeat", "connection_lost", "broker_unanswered")  # event-driven snapshots: they do not move the interval's ticks


def run(take: Callable[[str], Snapshot], emit: Callable[[Snapshot, int], None], *, interval: float,
        count: int | None, trigger: str, wake: threading.Event, stopping: threading.Event,
        heartbeats: Expiries | None = None, clock: Clock = SYSTEM_CLOCK, wait: Wait = wait_event,
        liveness: Poller | None = None, poll_every: float = 0.5) -> int:
    """Take a snapshot (`take(trigger)`) and hand it to `emit(snapshot, number)` on schedule, until
    `stopping` is set or `count` snapshots were taken; the first has trigger `trigger`. Between
    snapshots `liveness.poll()` runs every `poll_every` seconds; when it names a trigger a snapshot
    with that trigger is taken at once. Returns how many were taken."""
    n = 0
    next_at = last = clock.monotonic()
    while not stopping.is_set():
        if trigger == "heartbeat":  # a burst of worker changes costs one snapshot, not one each
            wait(stopping, max(0.0, last + MIN_GAP - clock.monotonic()))
        last = clock.monotonic()
        snap = take(trigger)
        n += 1
        emit(snap, n)
        if count and n >= count:
            break
        if trigger not in EXTRA:  # an extra, event-driven snapshot does not move the schedule
            next_at = max(next_at + interval, clock.monotonic())
        trigger = _sleep(next_at, wake, stopping, heartbeats, clock, wait, liveness, poll_every)
    return n


def _sleep(next_at: float, wake: threading.Event, stopping: threading.Event, heartbeats: Expiries | None,
           clock: Clock, wait: Wait, liveness: Poller | None = None, poll_every: float = 0.5) -> str:
    """Until the next tick ("interval"), a heartbeat change ("heartbeat"), what a liveness poll calls
    for ("connection_lost", "broker_unanswered") or `stopping`."""
    poll_at = clock.monotonic() + poll_every
    while not stopping.is_set():
        wake_at = next_at if liveness is None else min(next_at, poll_at)
        expiry = heartbeats.next_expiry() if heartbeats else None
        if expiry is not None:
            wake_at = min(wake_at, clock.monotonic() + max(0.0, expiry - clock.wall()) + EXPIRY_SLACK)
        delay = wake_at - clock.monotonic()
        if delay > 0 and wait(wake, delay):
            wake.clear()
            if not stopping.is_set():
                return "heartbeat"
        if heartbeats and heartbeats.pop_overdue(clock.wall()):
            return "heartbeat"
        if liveness is not None and clock.monotonic() >= poll_at:
            poll_at = clock.monotonic() + poll_every
            due = liveness.poll()
            if due:
                return due
        if clock.monotonic() >= next_at:
            break
    return "interval"
