"""doorman-notify as a library call: read alerts from a stream, deliver them, say how it went.

`run_notify` is all the command does after parsing its options; `run` is the streaming loop,
which acts on each line as it arrives (a daemon's pipe never closes) and retries the spool while
waiting. A stop (SIGTERM, or stdout closed under `| head`) finishes the delivery in hand and
spools the rest.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from doorman.config.settings import Config
from doorman.contract.alert import Alert
from doorman.contract.delivery import Delivery
from doorman.contract.tick import Tick
from doorman.ndjson import write_record
from doorman.notify.dispatch import Dispatcher
from doorman.notify.heartbeat import Pinger
from doorman.notify.intake import BATCH_WINDOW, Intake, stream_alerts
from doorman.notify.journal import Spool, default_path
from doorman.notify.retry import RetryPolicy
from doorman.redact import Scrubber
from doorman.sinks import Sink, SinkContext, build_sinks, no_destination


def run(alerts: Iterable[Any], dispatcher: Dispatcher, stop: threading.Event, window: float = BATCH_WINDOW,
        on_intake: Callable[[Intake], None] = lambda i: None,
        on_ticks: Callable[[list[Tick]], None] = lambda ticks: None) -> None:
    """Drive the dispatcher from an iterator of alerts until EOF or stop; spool what is left on stop.
    The `tick` records of a batch go to `on_ticks` once its alerts are handed over (the heartbeat)."""
    dispatcher.replay()
    intake = Intake(alerts)
    on_intake(intake)
    while not stop.is_set():
        due = dispatcher.next_replay_in()
        batch, eof = intake.batch(due, window)
        ticks = [a for a in batch if a.get("kind") == "tick"]
        batch = [a for a in batch if a.get("kind") != "tick"] if ticks else batch
        if batch:
            dispatcher.handle(batch)
        elif not eof and not stop.is_set():
            dispatcher.replay()
        if ticks:
            on_ticks(ticks)
        if eof:
            break
    if stop.is_set():
        left = [a for a in intake.drain() if a.get("kind") != "tick"]
        if left:
            dispatcher.handle(left)


class Shutdown:
    """The stop request. Call it from any thread but never from a signal handler (see
    `doorman.process`): it sets the event and wakes the intake out of its wait."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.intakes: list[Intake] = []

    def __call__(self, signum: int = 0) -> None:  # noqa: ARG002 - any stop signal means the same
        self.event.set()
        for intake in self.intakes:
            intake.wake()


class Output:
    """Records to a stream; when the reader goes away (`| head`) stop quietly, spooling what is left."""

    def __init__(self, stream: IO[bytes], stop: threading.Event):
        self.stream, self.stop, self.closed = stream, stop, False

    def __call__(self, record: Delivery) -> None:
        if self.closed:
            return
        try:
            write_record(record, self.stream)
        except BrokenPipeError:
            self.closed = True
            self.stop.set()
            try:  # the final flush at exit must not fail either
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            except (OSError, ValueError):
                pass


class Reader:
    """The good alerts of a stream, counting those read and the lines refused (for the exit status)."""

    def __init__(self, stream: IO[bytes], say: Callable[[str], None],
                 on_first: Callable[[], None] = lambda: None):
        self.stream, self.say, self.on_first = stream, say, on_first
        self.received = self.bad = 0

    def report(self, message: str) -> None:
        self.bad += 1
        self.say(message)

    def __iter__(self) -> Iterator[Alert | Tick]:
        for a in stream_alerts(self.stream, self.report, ticks=True):
            if a.get("kind") == "tick":
                yield a
                continue
            self.received += 1
            if self.received == 1:
                self.on_first()
            yield a


def open_sinks(cfg: Config, scrub: Callable[[str], str], dry_run: bool, say: Callable[[str], None]) -> list[Sink]:
    """The configured destinations; for `--dry-run` with none, every one at a placeholder address."""
    from doorman import httpcall

    ctx = SinkContext(httpcall.session(trust_env=True), (cfg.http_connect_timeout, cfg.http_read_timeout), scrub)
    sinks = build_sinks(cfg, ctx)
    if sinks:
        return sinks
    if not dry_run:  # said once, when the first alert arrives (`nowhere`): nothing to say before
        return sinks
    say(f"{no_destination()}: showing what each destination would get, with placeholder addresses")
    return build_sinks(cfg, dataclasses.replace(ctx, placeholder=True))


def nowhere(say: Callable[[str], None]) -> None:
    """Why the alerts of this run go nowhere, and why it will exit 1: said once, at the first alert."""
    say(f"{no_destination()}: alerts are read but delivered nowhere (exit status 1)")


def open_spool(cfg: Config, sinks: list[Sink], say: Callable[[str], None]) -> Spool:
    spool = Spool(cfg.spool_path or default_path(), on_error=say)
    spool.check()
    names = {s.name for s in sinks}
    for dest, n in sorted(spool.counts().items()):
        if dest not in names:
            say(f"the spool {spool.path} holds {n} alert(s) for {dest}, which is not configured; kept")
    return spool


def heartbeat(cfg: Config, say: Callable[[str], None]) -> Pinger | None:
    """The dead-man's switch, when `heartbeat_url` is set (`doorman.notify.heartbeat`)."""
    if not cfg.heartbeat_url:
        return None
    return Pinger(cfg.heartbeat_url, cfg.heartbeat_fail_suffix, cfg.heartbeat_timeout_seconds, say)


def run_notify(cfg: Config, stdin: IO[bytes], stdout: IO[bytes], warn: Callable[[str], None],
               dry_run: bool = False, shutdown: Shutdown | None = None) -> int:
    """Deliver every alert of `stdin`, records to `stdout`, diagnostics (scrubbed) to `warn`.
    Returns the exit status: 0 all delivered, 1 anything spooled, failed, refused or undeliverable."""
    shutdown = shutdown or Shutdown()
    scrub = Scrubber(cfg.secrets())

    def say(message: str) -> None:
        warn(scrub(message))

    sinks = open_sinks(cfg, scrub, dry_run, say)
    spool = None if dry_run else open_spool(cfg, sinks, say)
    reader = Reader(stdin, say, lambda: nowhere(say) if not sinks and not dry_run else None)
    dispatcher = Dispatcher(sinks, Output(stdout, shutdown.event), say, spool, RetryPolicy.from_config(cfg),
                            shutdown.event, dry_run=dry_run, spool_retry_seconds=cfg.spool_retry_seconds)
    pinger = heartbeat(cfg, say) if not dry_run else None
    run(reader, dispatcher, shutdown.event, on_intake=shutdown.intakes.append,
        on_ticks=pinger.ticks if pinger is not None else lambda ticks: None)
    if pinger is not None:
        pinger.close(cfg.heartbeat_timeout_seconds)  # a cron run's only ping must not die with the process
    left = sum(spool.counts().values()) if spool is not None else 0
    if spool is not None and left:
        say(f"{left} alert(s) still waiting in {spool.path}; they are retried on the next run")
    failed = dispatcher.undelivered or reader.bad or left or (not sinks and reader.received)
    return 1 if failed else 0
