"""A stop signal for doorman-simulate, taken the one way `doorman.process` provides: the wakeup
pipe's watcher thread sets a `Stop`, and the main thread's waits here (`pause`, `wait_proc`) end
with `Stopped` as soon as it is set, so the run's `finally` tears down everything it started, in
order. No exception is raised from a signal handler (it could land inside any lock or `finally`);
a wait that is not one of these notices the stop at the next one."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator

from doorman.process import Stop, stop_signals
from doorman.simulate.procs import STOP_SIGNALS


class Stopped(Exception):
    """A signal asked us to stop; raised in the main thread by a wait, so every `finally` tears down."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


class _Request:
    """The stop in hand and the first signal that asked for it."""

    def __init__(self) -> None:
        self.stop = Stop()
        self.signum: int | None = None

    def __call__(self, signum: int) -> None:  # the watcher thread's callback
        if self.signum is None:
            self.signum = signum
        self.stop.set()


_active: list[_Request] = []  # the stop_on_signals in force (main thread only)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGINT/SIGTERM/SIGHUP make the next `pause`/`wait_proc` raise `Stopped`.
    Teardown code must not call them: a second signal then changes nothing."""
    request = _Request()
    with stop_signals(request, STOP_SIGNALS):
        _active.append(request)
        try:
            yield
        finally:
            _active.remove(request)
            request.stop.close()


def check() -> None:
    """`Stopped` if a stop signal came."""
    if _active and _active[-1].signum is not None:
        raise Stopped(_active[-1].signum)


def pause(seconds: float) -> None:
    """`time.sleep`, cut short by a stop signal (then `Stopped`); a plain sleep outside `stop_on_signals`."""
    if not _active:
        time.sleep(seconds)
        return
    _active[-1].stop.wait(seconds)
    check()


def wait_proc(proc: subprocess.Popen, timeout: float | None = None) -> int:
    """`proc.wait(timeout)` that a stop signal ends with `Stopped` (`subprocess.TimeoutExpired` as usual)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while (code := proc.poll()) is None:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout or 0)
        pause(0.1 if left is None else min(0.1, left))
    return code
