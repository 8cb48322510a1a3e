"""Sending one destination's alerts: in order, retried, paced, and each outcome made durable.

After a transient failure the rest waits behind it, untried, so the destination sees alerts in
the order they happened. The spool is made true before the records are written, so a closed
stdout (`| head`) or a kill between the two cannot lose an alert.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable, Sequence

from doorman.contract.delivery import Result as DeliveryResult
from doorman.notify.journal import Entry, Spool, new_entry
from doorman.notify.records import Ledger
from doorman.notify.retry import Clock, Pacer, RetryPolicy, Sent, send_with_retry
from doorman.sinks.base import Alert, Result, Sink, Summarizing
from doorman.timefmt import iso

STOPPING = "not sent: doorman-notify was stopping (SIGTERM or stdout closed)"
RESULT: dict[str, DeliveryResult] = {"delivered": "delivered", "permanent": "failed", "retry": "spooled"}


def messages(sink: Sink, alerts: Sequence[Alert]) -> list[list[Alert]]:
    """One message per alert, except a burst to a summarising sink (Slack): summaries."""
    if isinstance(sink, Summarizing) and len(alerts) > sink.summary_over:
        step = sink.summary_max
        return [list(alerts[i:i + step]) for i in range(0, len(alerts), step)]
    return [[a] for a in alerts]


def attempt(sink: Sink, group: list[Alert]) -> Callable[[], Result]:
    """One try at one message: a summary for a group, else the single alert."""
    if len(group) > 1 and isinstance(sink, Summarizing):
        return functools.partial(sink.summarize, group)
    return functools.partial(sink.send, group[0])


def seconds(value: float) -> str:
    """`0.5 s`, `30 s`: a delay as a person reads it."""
    return f"{max(0.0, value):.1f} s" if value < 10 else f"{value:.0f} s"


def fingerprints(group: Sequence[Alert]) -> str:
    return ", ".join(a["fingerprint"][:8] for a in group[:5]) + (", …" if len(group) > 5 else "")


class Courier:
    """Delivers to one destination at a time; shared by the direct and the journaled paths."""

    def __init__(self, ledger: Ledger, warn: Callable[[str], None], spool: Spool | None,
                 policy: RetryPolicy, stop: threading.Event, clock: Clock, rng: random.Random,
                 wait: Callable[[float], bool]):
        self.ledger, self.warn, self.spool, self.policy = ledger, warn, spool, policy
        self.stop, self.clock, self.rng, self.wait = stop, clock, rng, wait
        self.pacers: dict[str, Pacer] = {}
        self.fresh: set[str] = set()  # spool ids journaled by the batch in hand (not "from_spool")
        self.retry_note = "will retry on the next run"  # the Replayer says when a streaming run retries

    def pacer(self, sink: Sink) -> Pacer:
        if sink.name not in self.pacers:
            self.pacers[sink.name] = Pacer(sink.min_interval, self.clock)
        return self.pacers[sink.name]

    def deliver(self, sink: Sink, alerts: Sequence[Alert], entries: list[Entry] | None = None) -> None:
        """Send in order; after a transient failure the rest is spooled untried, keeping the order.

        `entries` (replay) are the spool entries behind `alerts`, updated in the spool as they go."""
        index = 0
        for group in messages(sink, alerts):
            if self.stop.is_set():
                self.hold(sink, alerts, entries, index, STOPPING)
                return
            mine = entries[index:index + len(group)] if entries is not None else None
            index += len(group)
            earlier = max((e.get("attempts", 0) for e in mine), default=0) if mine else 0
            sent = send_with_retry(attempt(sink, group), self.policy, self.wait, self.clock, self.rng,
                                   self.pacer(sink), self.retrying(sink.name, earlier))
            self.finish(sink, group, mine, sent)
            if sent.result.outcome == "retry":
                if index < len(alerts):
                    self.hold(sink, alerts, entries, index,
                              f"queued behind an alert {sink.name} did not take ({sent.result.error})")
                return

    def retrying(self, name: str, earlier: int) -> Callable[[Result, int, float], None]:
        """One line per failed attempt that is retried now, counting attempts as the record does
        (earlier runs' included): `webhook: cannot connect to …; will retry in 0.5 s (attempt 1 of 3)`."""
        last = earlier + self.policy.attempts

        def say(r: Result, n: int, delay: float) -> None:
            self.warn(f"{name}: {r.error}; will retry in {seconds(delay)} (attempt {earlier + n} of {last})")

        return say

    def hold(self, sink: Sink, alerts: Sequence[Alert], entries: list[Entry] | None, index: int,
             reason: str) -> None:
        """The rest waits behind, untried, in one spool update (a long spool is not rewritten per alert)."""
        rest = entries[index:] if entries is not None else None
        self.finish(sink, list(alerts[index:]), rest, Sent(Result("retry", error=reason), 0), summary=False)

    def finish(self, sink: Sink, group: list[Alert], entries: list[Entry] | None, sent: Sent,
               summary: bool = True) -> None:
        """Make the spool true first, then write the records (a closed stdout cannot lose an alert)."""
        r = sent.result
        if self.spool is not None:
            self.journal(self.spool, sink.name, group, entries, sent)
        summary_of = len(group) if summary and len(group) > 1 else None
        total = 0
        for i, a in enumerate(group):
            entry = entries[i] if entries else None
            earlier = entry.get("attempts", 0) if entry else 0
            total = max(total, earlier + sent.attempts)
            self.ledger.delivery(sink.name, a, RESULT[r.outcome], http_status=r.http_status,
                                 attempts=earlier + sent.attempts, error=r.error,
                                 from_spool=entry is not None and entry.get("id") not in self.fresh,
                                 summary_of=summary_of)
        self.report(sink.name, group, sent, total)

    def journal(self, spool: Spool, name: str, group: list[Alert], entries: list[Entry] | None,
                sent: Sent) -> None:
        r, now = sent.result, self.clock.wall()
        if r.outcome == "permanent":
            spool.dead([{"v": 1, "kind": "dead_letter", "destination": name, "failed_at": iso(now),
                         "http_status": r.http_status, "error": r.error, "alert": a} for a in group])
        if entries is None and r.outcome == "retry":
            spool.add([new_entry(name, a, sent.attempts, r.error, r.http_status, sent.not_before, now)
                       for a in group])
        elif entries is not None:
            self.update(spool, name, entries, sent)

    def update(self, spool: Spool, name: str, entries: list[Entry], sent: Sent) -> None:
        """Replayed entries: gone once taken or refused for good, else their attempts and error."""
        r, ids = sent.result, {e["id"] for e in entries}
        with spool.locked():
            current = spool.load()
            if r.outcome == "retry":
                for e in current:
                    if e.get("id") in ids:
                        e["attempts"] = e.get("attempts", 0) + sent.attempts
                        e["error"], e["http_status"] = r.error, r.http_status
                        e["next_attempt_at"] = iso(sent.not_before) if sent.not_before else None
            else:
                current = [e for e in current if not (e.get("id") in ids and e.get("destination") == name)]
            spool.save(current)

    def report(self, name: str, group: list[Alert], sent: Sent, total: int) -> None:
        """One warning per failed message, naming where the alerts are kept. `total` counts the
        attempts as the delivery record does (earlier runs' included), so the two agree."""
        r, fp = sent.result, fingerprints(group)
        if r.outcome == "permanent":
            where = self.spool.dead_path if self.spool else "nowhere (no spool)"
            self.warn(f"{name}: refused {len(group)} alert(s) [{fp}] for good: {r.error}; not retried, kept in {where}")
        elif r.outcome == "retry" and sent.attempts:
            if self.spool is None:
                later = "not kept (no spool)"
            elif sent.not_before:
                later = (f"kept in {self.spool.path}; will retry in "
                         f"{seconds(sent.not_before - self.clock.wall())} (the receiver's Retry-After)")
            else:
                later = f"kept in {self.spool.path}; {self.retry_note}"
            self.warn(f"{name}: {r.error}; {len(group)} alert(s) [{fp}] not delivered after {total} "
                      f"attempt(s), {later}")

    def give_up(self, sink: Sink, alerts: Sequence[Alert], reason: str) -> None:
        """Without a spool, alerts not sent because we are stopping are lost: say so in the records."""
        for a in alerts:
            self.ledger.delivery(sink.name, a, "failed", error=f"{reason}; no spool to keep it")
