"""Bounded retries and pacing, on a clock that tests can replace (nothing here reads the time).

A transient failure is retried with exponential backoff and jitter, within a number of attempts
and a time budget; a receiver's Retry-After is honoured, and one asking for longer than we will
wait makes the alert wait in the spool instead. `Pacer` spaces sends to one destination.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from doorman.config.settings import Config
from doorman.sinks.base import Result


@dataclass(frozen=True)
class Clock:
    """Time as delivery sees it. `wall` stamps records and spool entries; `monotonic` measures
    budgets and gaps; `sleep` paces (a pause of a second at most, so not interruptible)."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Any] = time.sleep


REAL_TIME = Clock()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    max_seconds: float = 10.0  # no retry starts later than this after the first attempt
    backoff: float = 0.5  # first delay; doubles per attempt
    backoff_cap: float = 8.0
    retry_after_cap: float = 60.0  # a longer Retry-After makes the alert wait in the spool instead

    @classmethod
    def from_config(cls, cfg: Config) -> RetryPolicy:
        return cls(attempts=max(1, cfg.delivery_max_attempts), max_seconds=cfg.delivery_max_seconds,
                   backoff=cfg.delivery_backoff_seconds)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with equal jitter: half fixed, half random, so retries spread out."""
        base = min(self.backoff_cap, self.backoff * 2.0 ** (attempt - 1))
        return base / 2 + rng.random() * base / 2


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class Sent:
    result: Result
    attempts: int
    not_before: float | None = None  # Retry-After asked for more than our budget: wait in the spool


def send_with_retry(attempt: Callable[[], Result], policy: RetryPolicy, wait: Callable[[float], bool],
                    clock: Clock = REAL_TIME, rng: random.Random | None = None,
                    pace: Callable[[], None] = lambda: None,
                    on_retry: Callable[[Result, int, float], None] = lambda r, n, delay: None) -> Sent:
    """Retry transient failures within the policy's attempts and time. `wait(seconds)` returns
    True when doorman-notify is stopping: the retry ends there and the alert is spooled.
    `on_retry(result, attempt, delay)` is told of each failed attempt that will be retried."""
    rng = rng or random.Random()
    start = clock.monotonic()
    n = 0
    while True:
        pace()
        n += 1
        r = attempt()
        if r.outcome != "retry":
            return Sent(r, n)
        delay = policy.delay(n, rng)
        if r.retry_after is not None:
            if r.retry_after > policy.retry_after_cap:
                return Sent(r, n, clock.wall() + r.retry_after)
            delay = max(delay, r.retry_after)
        if n >= policy.attempts or clock.monotonic() - start + delay > policy.max_seconds:
            return Sent(r, n, clock.wall() + r.retry_after if r.retry_after else None)
        on_retry(r, n, delay)
        if wait(delay):
            return Sent(r, n)


class Pacer:
    """At most one send per `interval` seconds (Slack: one message a second per webhook)."""

    def __init__(self, interval: float, clock: Clock = REAL_TIME):
        self.interval, self.clock = interval, clock
        self.last: float | None = None

    def __call__(self) -> None:
        if self.interval and self.last is not None:
            gap = self.last + self.interval - self.clock.monotonic()
            if gap > 0:
                self.clock.sleep(gap)
        self.last = self.clock.monotonic()
