"""One doorman-notify dispatcher run in-process, and a clock that moves only when delivery waits: shared
by the delivery tests."""

from __future__ import annotations

import threading

import requests

from doorman.notify import Clock, Dispatcher, RetryPolicy, Spool
from doorman.notify import run as drive
from doorman.sinks.webhook import WebhookSink

FAST = RetryPolicy(attempts=3, max_seconds=3.0, backoff=0.05)


class FakeTime:
    """A clock that moves only when delivery waits or sleeps: retry and pacing logic, tested
    without sleeping for real. `waits` and `sleeps` record what delivery asked for."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now
        self.waits: list[float] = []
        self.sleeps: list[float] = []
        self.clock = Clock(wall=lambda: self.now, monotonic=lambda: self.now, sleep=self.sleep)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


class Run:
    """One doorman-notify run in-process: sinks, a spool on disk, the records it wrote."""

    def __init__(self, tmp_path, *sinks, policy=FAST, fake: FakeTime | None = None, **kw):
        self.records: list[dict] = []
        self.warnings: list[str] = []
        self.spool = Spool(str(tmp_path / "spool.ndjson"), on_error=self.warnings.append)
        self.stop = threading.Event()
        if fake is not None:
            kw.update(clock=fake.clock, wait=fake.wait)
        self.d = Dispatcher(list(sinks), self.records.append, self.warnings.append, self.spool, policy,
                            self.stop, **kw)

    def results(self, destination=None):
        return [(r["fingerprint"], r["destination"], r["result"]) for r in self.records
                if destination in (None, r["destination"])]


def hook(url, session=None, **kw):
    return WebhookSink(session or requests.Session(), url, timeout=(0.5, 0.5), **kw)


def run_dispatcher(lines, run):
    """Feed `lines` to the run's dispatcher until they end or it is stopped."""
    drive(lines, run.d, run.stop)
