"""Delivery that can be trusted: routing, retries, Slack pacing and summaries, the spool.

For each batch of alerts (the lines that arrived together) and each destination, in order:
alerts below the destination's minimum severity are `skipped`; if the spool still holds alerts for
that destination they are replayed first and, if it is still down, new alerts queue behind them
(order is kept); otherwise each message is sent with bounded retries. What could not be sent is
`spooled`; what the destination refused for good is `failed` and written to the dead-letter file.
Every outcome is one delivery record per (alert, destination).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from doorman.redact import redact_key, redact_webhook
from doorman.sinks import Alert, Request, Result, batchable, wants
from doorman.spool import Spool, due_at, new_entry
from doorman.timefmt import iso

BATCH_WINDOW = 0.2  # seconds to gather lines that arrive together into one batch
BATCH_MAX = 500


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    max_seconds: float = 10.0  # no retry starts later than this after the first attempt
    backoff: float = 0.5  # first delay; doubles per attempt
    backoff_cap: float = 8.0
    retry_after_cap: float = 60.0  # a longer Retry-After makes the alert wait in the spool instead

    @classmethod
    def from_config(cls, cfg: Any) -> RetryPolicy:
        return cls(attempts=max(1, cfg.delivery_max_attempts), max_seconds=cfg.delivery_max_seconds,
                   backoff=cfg.delivery_backoff_seconds)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with equal jitter: half fixed, half random, so retries spread out."""
        base = min(self.backoff_cap, self.backoff * 2 ** (attempt - 1))
        return base / 2 + rng.random() * base / 2


@dataclass(frozen=True)
class Sent:
    result: Result
    attempts: int
    not_before: float | None = None  # Retry-After asked for more than our budget: wait in the spool


def send_with_retry(attempt: Callable[[], Result], policy: RetryPolicy, wait: Callable[[float], bool],
                    clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                    rng: random.Random | None = None, pace: Callable[[], None] = lambda: None) -> Sent:
    """Retry transient failures within the policy's attempts and time; `wait` returns True on stop."""
    rng = rng or random.Random()
    start = clock()
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
                return Sent(r, n, wall() + r.retry_after)
            delay = max(delay, r.retry_after)
        if n >= policy.attempts or clock() - start + delay > policy.max_seconds:
            return Sent(r, n, wall() + r.retry_after if r.retry_after else None)
        if wait(delay):
            return Sent(r, n)


class Pacer:
    """At most one post per `interval` seconds (Slack: one message a second per webhook)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = time.sleep):
        self.interval, self.clock, self.sleep = interval, clock, sleep
        self.last: float | None = None

    def __call__(self) -> None:
        if self.interval and self.last is not None:
            gap = self.last + self.interval - self.clock()
            if gap > 0:
                self.sleep(gap)
        self.last = self.clock()


def redacted_request(sink: Any, req: Request, placeholder: bool) -> dict[str, Any]:
    body = req.body
    if "routing_key" in body:
        body = {**body, "routing_key": redact_key(body["routing_key"])}
    return {"url": redact_webhook(req.url), "headers": req.headers, "payload": body, "placeholder": placeholder}


STOPPING = "not sent: doorman-notify was stopping (SIGTERM or stdout closed)"


class Dispatcher:
    """Routes each batch to every destination and writes one record per (alert, destination)."""

    def __init__(self, sinks: Sequence[Any], emit: Callable[[dict], None], warn: Callable[[str], None],
                 spool: Spool | None, policy: RetryPolicy = RetryPolicy(), stop: threading.Event | None = None,
                 dry_run: bool = False, placeholders: Sequence[str] = (), spool_retry_seconds: float = 30.0,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None):
        self.sinks = list(sinks)
        self.emit, self.warn, self.spool, self.policy = emit, warn, spool, policy
        self.stop = stop or threading.Event()
        self.dry_run, self.placeholders = dry_run, set(placeholders)
        self.spool_retry_seconds = spool_retry_seconds
        self.clock, self.rng = clock, rng or random.Random()
        self.pacers = {s.name: Pacer(getattr(s, "min_interval", 0.0)) for s in self.sinks}
        self.next_replay: dict[str, float] = {}
        self.undelivered = 0  # records this run that were not `delivered` (spooled, failed)
        self.fresh: set[str] = set()  # spool ids journaled by the batch in hand (not "from_spool")

    # -- public ------------------------------------------------------------------------------------

    def handle(self, alerts: Sequence[Alert]) -> None:
        plan = []
        for sink in self.sinks:
            wanted = []
            for a in alerts:
                if wants(sink, a):
                    wanted.append(a)
                else:
                    self.record(sink, a, "skipped", error=f"severity {a['severity']} is below "
                                f"{sink.name}'s minimum ({sink.min_severity})")
            if wanted:
                plan.append((sink, wanted))
        if not plan:
            return
        if self.dry_run:
            for sink, wanted in plan:
                self.show(sink, wanted)
            return
        if self.spool is None:
            for sink, wanted in plan:
                if self.stop.is_set():
                    self.queue_behind(sink, wanted, STOPPING)
                else:
                    self.deliver(sink, wanted)
            return
        self.deliver_journaled(plan)

    def deliver_journaled(self, plan: list[tuple[Any, list[Alert]]]) -> None:
        """Write-ahead: the batch is journaled for every destination, in one spool write, before the
        first attempt to any of them; an entry leaves the spool once its destination took it. So a
        kill -9 mid-retry loses nothing. Each destination then sends its spool in order (older
        entries first). The lock is held throughout, so a concurrent run cannot send our entries."""
        assert self.spool is not None
        now = self.clock()
        with self.spool.locked():
            waiting = self.spool.counts()
            journal = [new_entry(sink.name, a, 0, "not attempted yet", None, None, now)
                       for sink, wanted in plan for a in wanted]
            self.spool.add(journal)
            self.fresh = {e["id"] for e in journal}
            try:
                for sink, wanted in plan:
                    older = waiting.get(sink.name, 0)
                    if self.stop.is_set():
                        self.note_spooled(sink, wanted, STOPPING)
                        continue
                    if not older:
                        self.next_replay.pop(sink.name, None)  # nothing older waits: try now
                    if not self.replay_sink(sink):
                        self.note_spooled(sink, wanted, f"{sink.name} is not taking alerts: queued behind "
                                          f"{older} earlier undelivered alert(s)")
            finally:
                self.fresh = set()

    def replay(self) -> None:
        """Try the spool for every configured destination whose retry time has come."""
        if self.spool is None or self.dry_run:
            return
        for sink in self.sinks:
            if self.stop.is_set():
                return
            if self.spool.counts().get(sink.name):
                self.replay_sink(sink)

    def next_replay_in(self) -> float | None:
        """Seconds until a spooled alert is due (None: nothing spooled for our destinations)."""
        if self.spool is None or self.dry_run:
            return None
        counts = self.spool.counts()
        times = [self.next_replay.get(s.name, 0.0) for s in self.sinks if counts.get(s.name)]
        return max(0.0, min(times) - self.clock()) if times else None

    # -- delivery ----------------------------------------------------------------------------------

    def messages(self, sink: Any, alerts: Sequence[Alert]) -> list[list[Alert]]:
        """One message per alert, except a burst to a summarising sink (Slack): summaries."""
        if batchable(sink) and len(alerts) > sink.summary_over:
            step = sink.summary_max
            return [list(alerts[i:i + step]) for i in range(0, len(alerts), step)]
        return [[a] for a in alerts]

    def attempt(self, sink: Any, group: list[Alert]) -> Callable[[], Result]:
        if len(group) > 1:
            return lambda: sink.send_summary(group)
        return lambda: sink.send(group[0])

    def deliver(self, sink: Any, alerts: Sequence[Alert], entries: list[dict] | None = None) -> None:
        """Send in order; after a transient failure the rest is spooled untried, keeping the order.

        `entries` (replay) are the spool entries behind `alerts`, updated in the spool as they go.
        """
        blocked: str | None = None
        index = 0
        for group in self.messages(sink, alerts):
            if blocked is not None or self.stop.is_set():
                # the rest waits behind, in one spool update (a long spool is not rewritten per alert)
                reason = blocked or STOPPING
                rest = entries[index:] if entries is not None else None
                self.finish(sink, list(alerts[index:]), rest, Sent(Result("retry", error=reason), 0),
                            summary=False)
                return
            mine = entries[index:index + len(group)] if entries is not None else None
            index += len(group)
            sent = send_with_retry(self.attempt(sink, group), self.policy, self.stop.wait,
                                   rng=self.rng, pace=self.pacers[sink.name])
            self.finish(sink, group, mine, sent)
            if sent.result.outcome == "retry":
                blocked = f"queued behind an alert {sink.name} did not take ({sent.result.error})"

    def finish(self, sink: Any, group: list[Alert], entries: list[dict] | None, sent: Sent,
               summary: bool = True) -> None:
        """Make the spool true first, then write the records (a closed stdout cannot lose an alert)."""
        r = sent.result
        summary_of = len(group) if summary and len(group) > 1 else None
        now = self.clock()
        if self.spool is not None:
            if r.outcome == "permanent":
                self.spool.dead([{"v": 1, "kind": "dead_letter", "destination": sink.name, "failed_at": iso(now),
                                  "http_status": r.http_status, "error": r.error, "alert": a} for a in group])
            if entries is None and r.outcome == "retry":
                self.spool.add([new_entry(sink.name, a, sent.attempts, r.error, r.http_status,
                                          sent.not_before, now) for a in group])
            elif entries is not None:
                self.update_spool(sink.name, entries, r, sent, now)
        for i, a in enumerate(group):
            entry = entries[i] if entries else None
            earlier = entry.get("attempts", 0) if entry else 0
            result = {"delivered": "delivered", "permanent": "failed", "retry": "spooled"}[r.outcome]
            self.record(sink, a, result, http_status=r.http_status, attempts=earlier + sent.attempts,
                        error=r.error, from_spool=entry is not None and entry.get("id") not in self.fresh,
                        summary_of=summary_of)
        fp = ", ".join(a["fingerprint"][:8] for a in group[:5]) + (", …" if len(group) > 5 else "")
        if r.outcome == "permanent":
            self.warn(f"{sink.name}: refused {len(group)} alert(s) [{fp}] for good: {r.error}; "
                      f"not retried, kept in {self.spool.dead_path if self.spool else 'nowhere (no spool)'}")
        elif r.outcome == "retry" and sent.attempts:
            where = self.spool.path if self.spool else "nowhere (no spool)"
            self.warn(f"{sink.name}: could not deliver {len(group)} alert(s) [{fp}] after {sent.attempts} "
                      f"attempt(s): {r.error}; spooled in {where}, retried later")

    def update_spool(self, name: str, entries: list[dict], r: Result, sent: Sent, now: float) -> None:
        assert self.spool is not None
        ids = {e["id"] for e in entries}
        with self.spool.locked():
            current = self.spool.load()
            if r.outcome == "retry":
                for e in current:
                    if e.get("id") in ids:
                        e["attempts"] = e.get("attempts", 0) + sent.attempts
                        e["error"], e["http_status"] = r.error, r.http_status
                        e["next_attempt_at"] = iso(sent.not_before) if sent.not_before else None
            else:
                current = [e for e in current if not (e.get("id") in ids and e.get("destination") == name)]
            self.spool.save(current)

    def replay_sink(self, sink: Any) -> bool:
        """Send what the spool holds for this destination, oldest first, holding the spool lock.
        False when it was not tried (its retry time has not come)."""
        assert self.spool is not None
        now = self.clock()
        if now < self.next_replay.get(sink.name, 0.0):
            return False
        with self.spool.locked():
            mine = [e for e in self.spool.load() if e["destination"] == sink.name]
            if not mine:
                return True
            if due_at(mine[0]) > now:
                self.next_replay[sink.name] = due_at(mine[0])
                return False
            self.deliver(sink, [e["alert"] for e in mine], mine)
        if self.spool.counts().get(sink.name):
            self.next_replay[sink.name] = self.clock() + self.spool_retry_seconds
        return True

    def note_spooled(self, sink: Any, alerts: Sequence[Alert], reason: str) -> None:
        """Records for journaled alerts that stay in the spool untried."""
        for a in alerts:
            self.record(sink, a, "spooled", error=reason)

    def queue_behind(self, sink: Any, alerts: Sequence[Alert], reason: str) -> None:
        """Spool untried, behind what is already waiting (so the destination sees them in order)."""
        if self.spool is None:
            for a in alerts:
                self.record(sink, a, "failed", error=f"{reason}; no spool to keep it")
            return
        now = self.clock()
        self.spool.add([new_entry(sink.name, a, 0, reason, None, None, now) for a in alerts])
        for a in alerts:
            self.record(sink, a, "spooled", error=reason)

    # -- output ------------------------------------------------------------------------------------

    def show(self, sink: Any, alerts: Sequence[Alert]) -> None:
        """--dry-run: the exact request each destination would get, secrets redacted."""
        for group in self.messages(sink, alerts):
            req = sink.summary_request(group) if len(group) > 1 else sink.request(group[0])
            one = group[0] if len(group) == 1 else {}
            rec = {"v": 1, "kind": "delivery", "ts": iso(self.clock()), "fingerprint": one.get("fingerprint"),
                   "alert_type": one.get("alert_type"), "status": one.get("status"),
                   "severity": one.get("severity"), "destination": sink.name, "result": "dry_run",
                   "summary_of": len(group) if len(group) > 1 else None,
                   "fingerprints": [a["fingerprint"] for a in group],
                   **redacted_request(sink, req, sink.name in self.placeholders)}
            self.emit(rec)

    def record(self, sink: Any, alert: Alert, result: str, http_status: int | None = None, attempts: int = 0,
               error: str | None = None, from_spool: bool = False, summary_of: int | None = None) -> None:
        if result in ("spooled", "failed"):
            self.undelivered += 1
        self.emit({
            "v": 1, "kind": "delivery", "ts": iso(self.clock()),
            "fingerprint": alert.get("fingerprint"), "alert_type": alert.get("alert_type"),
            "status": alert.get("status"), "severity": alert.get("severity"), "cluster": alert.get("cluster"),
            "subject": alert.get("subject"), "destination": sink.name, "result": result,
            "http_status": http_status, "attempts": attempts, "error": error,
            "from_spool": from_spool, "summary_of": summary_of,
        })


# -- reading the stream ----------------------------------------------------------------------------

INTAKE_MAX = 1000


class Intake:
    """Reads lines on a thread so the dispatcher can wait with a timeout and gather bursts."""

    EOF = object()

    def __init__(self, items: Any):
        # bounded: a flood waits in the pipe (back-pressure) rather than in this process's memory
        self.q: queue.Queue = queue.Queue(maxsize=INTAKE_MAX)
        self.thread = threading.Thread(target=self._pump, args=(items,), daemon=True)
        self.thread.start()

    def _pump(self, items: Any) -> None:
        try:
            for item in items:
                self.q.put(item)
        finally:
            self.q.put(self.EOF)

    def wake(self) -> None:
        try:
            self.q.put_nowait(None)  # called from a signal handler: never block
        except queue.Full:
            pass

    def batch(self, timeout: float | None, window: float = BATCH_WINDOW,
              limit: int = BATCH_MAX) -> tuple[list[Any], bool]:
        """(items, eof): wait up to `timeout` for one item, then take what arrives within `window`."""
        out: list[Any] = []
        try:
            first = self.q.get(timeout=timeout)
        except queue.Empty:
            return out, False
        if first is self.EOF:
            return out, True
        if first is not None:
            out.append(first)
        else:
            return out, False
        deadline = time.monotonic() + window
        while len(out) < limit:
            left = deadline - time.monotonic()
            try:
                item = self.q.get(timeout=left) if left > 0 else self.q.get_nowait()
            except queue.Empty:
                break
            if item is self.EOF:
                return out, True
            if item is not None:
                out.append(item)
        return out, False

    def drain(self) -> list[Any]:
        out = []
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                return out
            if item is not None and item is not self.EOF:
                out.append(item)


def run(alerts: Any, dispatcher: Dispatcher, stop: threading.Event, window: float = BATCH_WINDOW,
        on_intake: Callable[[Intake], None] = lambda i: None) -> None:
    """Drive the dispatcher from an iterator of alerts until EOF or stop; spool what is left on stop."""
    dispatcher.replay()
    intake = Intake(alerts)
    on_intake(intake)
    while not stop.is_set():
        due = dispatcher.next_replay_in()
        batch, eof = intake.batch(due, window)
        if batch:
            dispatcher.handle(batch)
        elif not eof and not stop.is_set():
            dispatcher.replay()
        if eof:
            break
    if stop.is_set():
        left = intake.drain()
        if left:
            dispatcher.handle(left)


def stream_alerts(stream: IO[bytes], report: Callable[[str], None], name: str = "<stdin>") -> Any:
    """Good alerts from an NDJSON stream; each bad line is reported with its number and skipped."""
    from doorman.ndjson import read_records

    for lineno, obj in read_records(stream, name, report):
        problem = alert_problem(obj)
        if problem:
            report(f"{name}:{lineno}: {problem}; skipped")
            continue
        yield obj


STATUSES = ("firing", "resolved")
REQUIRED = ("fingerprint", "alert_type", "severity", "status", "ts", "title")


def alert_problem(obj: Any) -> str | None:
    """Why this line is not an alert we can deliver (None: it is)."""
    from doorman.config import SEVERITIES

    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    if obj.get("kind") != "alert":
        return f"not an alert (kind is {obj.get('kind')!r})"
    if obj.get("v", 1) != 1:
        return f"unsupported schema version v={obj.get('v')!r} (this doorman-notify reads v=1)"
    for k in REQUIRED:
        if not isinstance(obj.get(k), str) or not obj[k]:
            return f"invalid alert: field {k!r} missing or not a string"
    if obj["severity"] not in SEVERITIES:
        return f"invalid alert: severity {obj['severity']!r} is not one of {', '.join(SEVERITIES)}"
    if obj["status"] not in STATUSES:
        return f"invalid alert: status {obj['status']!r} is not firing or resolved"
    if "details" in obj and not isinstance(obj["details"], dict):
        return "invalid alert: details must be an object"
    for k in ("message", "cluster", "subject"):
        if k in obj and not isinstance(obj[k], str):
            return f"invalid alert: field {k!r} must be a string"
    return None
