"""Routing: which destination gets which alert, and which path the batch takes.

For each batch (the lines that arrived together) and each destination, in order: alerts below
the destination's minimum severity are `skipped`; the rest go to the dry-run preview, through the
spool (`Replayer`, the normal path) or, without a spool, straight to the `Courier`. Every outcome
is one delivery record per (alert, destination).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence

from doorman.contract.delivery import Delivery
from doorman.notify.courier import STOPPING, Courier, messages
from doorman.notify.journal import Spool
from doorman.notify.records import Ledger
from doorman.notify.replay import Plan, Replayer
from doorman.notify.retry import DEFAULT_POLICY, REAL_TIME, Clock, RetryPolicy
from doorman.sinks.base import Alert, Sink, preview, wants


class Dispatcher:
    """Routes each batch to every destination; knows nothing of any destination's fields."""

    def __init__(self, sinks: Sequence[Sink], emit: Callable[[Delivery], None],
                 warn: Callable[[str], None], spool: Spool | None, policy: RetryPolicy = DEFAULT_POLICY,
                 stop: threading.Event | None = None, dry_run: bool = False, spool_retry_seconds: float = 30.0,
                 clock: Clock = REAL_TIME, rng: random.Random | None = None,
                 wait: Callable[[float], bool] | None = None):
        """`wait(seconds)` is the backoff between retries; it returns True when stopping
        (default: `stop.wait`, so SIGTERM ends a backoff at once)."""
        self.sinks = list(sinks)
        self.stop = stop or threading.Event()
        self.dry_run = dry_run
        self.ledger = Ledger(emit, clock.wall)
        self.courier = Courier(self.ledger, warn, spool, policy, self.stop, clock, rng or random.Random(),
                               wait or self.stop.wait)
        self.replayer = None if spool is None or dry_run else \
            Replayer(spool, self.courier, self.ledger, self.stop, clock.wall, spool_retry_seconds)

    @property
    def undelivered(self) -> int:
        """Records this run that were not `delivered` (spooled, failed)."""
        return self.ledger.undelivered

    def handle(self, alerts: Sequence[Alert]) -> None:
        plan = self.route(alerts)
        if not plan:
            return
        if self.dry_run:
            for sink, wanted in plan:
                self.preview(sink, wanted)
        elif self.replayer is not None:
            self.replayer.deliver(plan)
        else:
            for sink, wanted in plan:
                if self.stop.is_set():
                    self.courier.give_up(sink, wanted, STOPPING)
                else:
                    self.courier.deliver(sink, wanted)

    def route(self, alerts: Sequence[Alert]) -> Plan:
        """(destination, its alerts) in delivery order; a record for each alert it does not take."""
        plan = []
        for sink in self.sinks:
            wanted = []
            for a in alerts:
                if wants(sink, a):
                    wanted.append(a)
                else:
                    self.ledger.delivery(sink.name, a, "skipped", error=f"severity {a['severity']} is below "
                                         f"{sink.name}'s minimum ({sink.min_severity})")
            if wanted:
                plan.append((sink, wanted))
        return plan

    def preview(self, sink: Sink, alerts: Sequence[Alert]) -> None:
        """--dry-run: the exact request each destination would get, redacted by the sink itself."""
        for group in messages(sink, alerts):
            self.ledger.dry_run(sink.name, group, preview(sink, group))

    def replay(self) -> None:
        """Try the spool for every configured destination whose retry time has come."""
        if self.replayer is not None:
            self.replayer.replay(self.sinks)

    def next_replay_in(self) -> float | None:
        """Seconds until a spooled alert is due (None: nothing spooled for our destinations)."""
        return self.replayer.next_in(self.sinks) if self.replayer is not None else None
