"""Five minutes of seeded chaos against the real daemon line, scored against what really happened.

A real redis-server (killed and restarted on its port, paused), three real prefork workers (one
killed four times in a row, others once), bursts over and under the backlog threshold, and
`doorman-collect --interval 5 | doorman-analyze | doorman-notify` to a webhook on 127.0.0.1. Every
delivered alert is scored by bench/chaos/score.py (its rules are unit-tested in
tests/test_chaos_score.py): nothing missed, no false alarm, no duplicate page, no early all-clear.
The recorded snapshots, replayed through `doorman-analyze`, give the same alerts. Timings are the
benchmark's business (bench/bench_chaos.py), not asserted here.

The soak is mostly waiting, so in a whole-suite run it goes on beside the other tests: conftest.py
starts it in a thread once the tests are collected and places this test last, to collect the
outcome. Its processes are its own (a redis-server on a free port, its own workers and line).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time

import pytest

from bench.chaos.run import Outcome, run_soak

pytestmark = pytest.mark.soak

SEED = 7
SECONDS = 300.0
FIRST = ("flap", "broker_restart", "burst_above", "pause_long", "kill")


LIMIT = SECONDS + 240  # the soak itself, plus starting three workers and the replay


class Background:
    """The soak on a thread of its own, started once per session."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self.started = 0.0
        self.dir = ""
        self.cancel = threading.Event()
        self.done = threading.Event()  # not Thread.is_alive(): a join interrupted by Ctrl-C can falsify it (3.11)

    def start(self) -> None:
        if self.thread is None:
            self.dir = tempfile.mkdtemp(prefix="doorman-chaos-")
            self.started = time.monotonic()
            self.thread = threading.Thread(target=self._run, name="chaos soak", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome = run_soak(SEED, SECONDS, self.dir, first=FIRST, cancel=self.cancel)
        except BaseException as e:  # noqa: BLE001 - handed to the test, which fails with it
            self.error = e
        finally:
            self.done.set()

    def result(self) -> Outcome:
        self.start()
        assert self.thread is not None
        if not self.done.wait(max(0.0, self.started + LIMIT - time.monotonic())):
            raise AssertionError(f"the chaos soak did not finish within {LIMIT:g} s (recording in {self.dir})")
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.outcome

    def call_off(self) -> None:
        """The session ends without the test (`-x`, a deselection after start, Ctrl-C): tear it down."""
        if self.thread is not None and not self.done.is_set():
            self.cancel.set()
            self.done.wait(90)
            shutil.rmtree(self.dir, ignore_errors=True)


BACKGROUND = Background()


@pytest.mark.timeout(LIMIT + 60)
def test_five_minutes_of_chaos_score_clean_and_replay_the_same():
    outcome = BACKGROUND.result()
    report = "\n".join(outcome.lines())
    sc = outcome.score
    kinds = [i.kind for i in sc.incidents if i.required]
    # the plan really broke what it says (the test cannot pass on a quiet run)
    assert kinds.count("worker_kill") + kinds.count("worker_kill_repeat") >= 4, report
    assert "worker_kill_repeat" in kinds and "broker_restart" in kinds and "burst_above" in kinds, report
    assert outcome.result.errors == [], report
    assert (len(sc.missed), len(sc.false_alarms), len(sc.duplicate_pages), len(sc.false_all_clears)) == (0, 0, 0, 0), report
    assert outcome.result.analyzed, report
    assert outcome.replay_same, report
    assert outcome.delivered_as_analyzed, report
