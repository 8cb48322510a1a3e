"""Finding kombu binding sets (`_kombu.binding.<exchange>`) without walking the keyspace each run.

Celery gives each queue its own exchange by default, so binding sets cannot be guessed; only a
SCAN finds a set nobody told us of, and a SCAN's cost grows with every key in the database (result
keys included): 5,000,000 keys cost Redis about 2.3 s per full pass, and Redis serves no one else
meanwhile. So the walk is spread out: each snapshot runs `SCAN cursor MATCH <binding prefix>* COUNT n`
calls until its budget is spent (`discovery_budget_ms`, measured as the calls' elapsed time seen
from here, which is at least Redis's own time), a token bucket keeps the total under
`discovery_max_ms_per_minute` whatever the check interval, and the cursor carries over to the
next snapshot (and, through `doorman.brokers.redis.discovery_cache`, to the next `--once` run).
COUNT adapts to the measured speed so one call fits what is left of the budget.

The exchanges in use are the last complete pass's plus what the current pass found so far. A new
pass starts once the previous one has ended and `discovery_interval` seconds after it started,
so a small keyspace is not rescanned every snapshot. SCAN guarantees a key present from the
start to the end of a pass is returned by it: a binding set created at `t` is found by
`t + max(discovery_interval, P) + P` at the latest, P being the time a pass takes (estimated in
`pass_seconds`). Queues that are configured or consumed by a worker do not wait for any of this
(`doorman.brokers.redis.broker`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from doorman.bounds import MAX_QUEUES
from doorman.brokers.base import decode
from doorman.brokers.redis.keys import Keys
from doorman.timefmt import iso, sane_epoch

FIRST_COUNT = 1000  # keys asked of the first SCAN call, before any speed is measured (~0.5 ms)
MIN_COUNT, MAX_COUNT = 100, 200_000
MIN_STEP_MS = 0.3  # a call is not worth a round trip for less than this of the budget
MAX_DISCOVERED_NAME = 1024  # longer "exchange" names are someone's garbage, not kombu's


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass
class State:
    """What survives from one snapshot (or one `--once` run) to the next. Times are wall-clock epochs."""

    cursor: int = 0
    scanning: bool = False  # a pass is under way (cursor 0 is both its start and its end)
    found: list[str] = field(default_factory=list)  # exchanges seen by the current pass
    complete: list[str] = field(default_factory=list)  # exchanges of the last complete pass
    pass_started: float | None = None
    last_pass_at: float | None = None  # when the last complete pass ended
    scanned: int = 0  # keys visited by the current pass (the sum of the COUNT hints)
    rate: float | None = None  # keys visited per ms of measured SCAN time
    tokens: float | None = None  # ms of SCAN time the bucket still allows; None: full
    tokens_at: float | None = None
    keys: int | None = None  # DBSIZE when last read
    warned: bool = False  # the "a pass takes longer than discovery_interval" line was said

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def of(cls, obj: Any) -> State | None:
        """A state read back from a cache file, or None when it is not in the shape we write."""
        if not isinstance(obj, dict):
            return None
        s = cls()
        for name, default in cls().__dict__.items():
            value = obj.get(name, default)
            if isinstance(default, list):
                if not isinstance(value, list) or not all(isinstance(x, str) and len(x) <= MAX_DISCOVERED_NAME for x in value):
                    return None
                value = value[:MAX_QUEUES]
            elif isinstance(default, bool):
                if type(value) is not bool:
                    return None
            elif name in ("cursor", "scanned", "keys"):
                if (value is not None or name != "keys") and (type(value) is not int or not 0 <= value < 2**64):
                    return None
            elif value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
                return None
            elif name in ("pass_started", "last_pass_at", "tokens_at") and value is not None:
                if sane_epoch(value) is None:  # a cache file is data: an absurd time is not a pass
                    return None
            elif name == "rate" and value is not None and value <= 0:
                return None
            setattr(s, name, value)
        return s


class Scanner:
    """The incremental SCAN of one broker database: call `step()` once per snapshot."""

    def __init__(self, client: redis.Redis, keys: Keys, interval: float, budget_ms: float,
                 per_minute_ms: float, check_interval: float, clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.perf_counter, warn: Callable[[str], None] | None = None,
                 state: State | None = None):
        self.client, self.keys = client, keys
        self.interval, self.budget_ms, self.per_minute_ms = interval, budget_ms, per_minute_ms
        self.check_interval = check_interval
        self.clock, self.timer, self.warn = clock, timer, warn
        self.state = state or State()
        self.head = keys.binding("")
        self.match = glob_escape(self.head) + "*"
        self.spent_ms = 0.0  # in the last step
        self.refused = False  # an ACL without SCAN: configured and consumed queues only
        self.no_dbsize = False  # an ACL without DBSIZE: no pass-time estimate

    def exchanges(self) -> list[str]:
        """The last complete pass's exchanges and the current pass's so far (at most MAX_QUEUES)."""
        return list(dict.fromkeys([*self.state.complete, *self.state.found]))[:MAX_QUEUES]

    def _refill(self, now: float) -> float:
        s = self.state
        if s.tokens is None or s.tokens_at is None:
            s.tokens = self.budget_ms
        else:  # a clock set back refills nothing; a long pause refills up to one snapshot's budget
            s.tokens = min(self.budget_ms, s.tokens + max(0.0, now - s.tokens_at) * self.per_minute_ms / 60.0)
        s.tokens_at = now
        return s.tokens

    def step(self) -> None:
        """Go on with the pass within this snapshot's allowance (or start one when it is due)."""
        s, now = self.state, self.clock()
        allowance = min(self.budget_ms, self._refill(now))
        self.spent_ms = 0.0
        if not s.scanning:
            if s.pass_started is not None and 0 <= now - s.pass_started < self.interval:
                return
            s.scanning, s.cursor, s.found, s.scanned, s.pass_started = True, 0, [], 0, now
        found = dict.fromkeys(s.found)
        while s.scanning and not self.refused and allowance - self.spent_ms >= MIN_STEP_MS:
            count = self._count(allowance - self.spent_ms)
            if not self.spent_ms and not self.no_dbsize:
                try:
                    s.keys = int(self.client.dbsize())  # O(1): for the pass-time estimate
                except redis.exceptions.ResponseError:  # an ACL written before it was needed, a renamed command
                    self.no_dbsize = True
            try:
                t0 = self.timer()
                cursor, names = self.client.scan(s.cursor, match=self.match, count=count)
            except redis.exceptions.ResponseError as e:
                if "invalid cursor" in str(e).lower():  # a cursor from a restarted server: start the pass again
                    s.scanning = False
                    s.pass_started = None
                    break
                self._refuse()  # an ACL without SCAN, a renamed command, a proxy that lacks it
                break
            took = max((self.timer() - t0) * 1000, 0.001)
            self.spent_ms += took
            s.scanned += count
            s.rate = count / took if s.rate is None else 0.5 * s.rate + 0.5 * count / took
            s.cursor = int(cursor)
            for raw in names:
                name = decode(raw)[len(self.head):]
                if name and len(name) <= MAX_DISCOVERED_NAME and not self.keys.internal(name) and len(found) < MAX_QUEUES:
                    found[name] = None
            if s.cursor == 0:  # the pass is complete: what it found replaces the previous pass's
                s.scanning, s.complete, s.last_pass_at = False, sorted(found), now
                found = {}
        s.found = list(found)
        s.tokens = (s.tokens or 0.0) - self.spent_ms  # may go below 0: the next snapshots pay it back
        self._warn_slow()

    def _refuse(self) -> None:
        self.refused, self.state.scanning = True, False
        if self.warn is not None:
            self.warn("queue discovery: the broker refuses SCAN (an ACL or a renamed command); only configured exchanges "
                      "and those of queues consumed by a worker are read")

    def _count(self, ms: float) -> int:
        rate = self.state.rate
        if rate is None:
            return FIRST_COUNT
        return max(MIN_COUNT, min(MAX_COUNT, int(rate * ms * 0.8)))

    def pass_seconds(self) -> float | None:
        """Wall seconds a full pass takes at the allowed pace (a snapshot every `check_interval`),
        from DBSIZE and the measured speed; None until both are known."""
        rate, keys = self.state.rate, self.state.keys
        if rate is None or keys is None:
            return None
        redis_ms = keys / rate
        if redis_ms <= self.budget_ms:
            return 0.0  # one snapshot's budget covers it
        per_second = min(self.per_minute_ms / 60.0, self.budget_ms / max(self.check_interval, 1e-3))
        return redis_ms / per_second

    def _warn_slow(self) -> None:
        eta = self.pass_seconds()
        if self.warn is None or self.state.warned or eta is None or eta <= max(self.interval, 0.0):
            return
        self.state.warned = True
        self.warn(f"queue discovery: a full SCAN of the broker's {self.state.keys or 0:,} keys takes about {_human(eta)} "
                  f"at discovery_max_ms_per_minute={self.per_minute_ms:g}, longer than discovery_interval="
                  f"{self.interval:g} s; a queue that is neither configured nor consumed by a worker and is bound "
                  f"to an exchange not listed in `exchanges` is found only that late: list its exchange in "
                  f"`exchanges` (or raise discovery_max_ms_per_minute)")

    def report(self) -> dict[str, Any]:
        """The snapshot's `discovery` field (docs/contract.md)."""
        eta = self.pass_seconds()
        s = self.state
        return {"keys": s.keys, "scanned": s.scanned if s.scanning else None,
                "last_pass_at": iso(s.last_pass_at) if s.last_pass_at is not None else None,
                "redis_ms": round(self.spent_ms, 3),
                "pass_seconds": round(eta, 1) if eta is not None else None}


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
