"""The five-minute chaos soaks' shared setup: the plan's seed and length, and the thread that runs a
soak beside the rest of the suite (tests/conftest.py starts it; the soak's test collects it)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time

from bench.chaos.run import Outcome, run_soak

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
