"""Processes: stop signals taken one way everywhere, a stop a blocking read can wait on, ending a
child with its process group, and the argv of our own commands.

Why signals go through a pipe: a Python signal handler runs in the main thread between two
bytecodes, possibly while that thread holds the very lock the handler needs, so
`threading.Event.set()` or `Queue.put()` from a handler can deadlock the process for good (seen: a
collect daemon that ignored SIGTERM for ever). Here the handler does nothing at all; the C-level
handler writes the signal's number to a pipe (`signal.set_wakeup_fd`), and either a helper thread
reads it and calls back like any other thread, or the caller selects on it. Nothing is blocked in
the signal mask, so children started later get the default dispositions (exec resets handled
signals) and no inherited mask.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _ignore(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    """The Python-level handler: nothing (the wakeup pipe carries the signal). It takes no lock."""


class SignalPipe:
    """The read end of the wakeup pipe: `fileno()` for select, `take()` for the signals that came."""

    def __init__(self, fd: int):
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def take(self) -> list[int]:
        """The signals received since the last call (none: an empty list); never blocks."""
        try:
            data = os.read(self.fd, 512)
        except (BlockingIOError, InterruptedError):
            return []
        return list(data)


@contextlib.contextmanager
def signals_to_pipe(signals: Iterable[int] = STOP_SIGNALS) -> Iterator[SignalPipe]:
    """While inside, `signals` are written to a pipe instead of acting; everything is put back at
    the end (callers such as tests go on living). Main thread only."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    old = {s: signal.signal(s, _ignore) for s in signals}
    try:
        yield SignalPipe(r)
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(old_fd)
        os.close(w)
        os.close(r)


@contextlib.contextmanager
def stop_signals(callback: Callable[[int], None], signals: Iterable[int] = STOP_SIGNALS) -> Iterator[None]:
    """While inside, call `callback(signum)` from a helper thread for every one of `signals`."""
    with signals_to_pipe(signals) as pipe:
        done_r, done_w = os.pipe()

        def watch() -> None:
            while True:
                ready, _, _ = select.select([pipe.fileno(), done_r], [], [])
                if done_r in ready:
                    return
                for signum in pipe.take():
                    callback(signum)

        watcher = threading.Thread(target=watch, name="doorman-signals", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            os.write(done_w, b"x")
            watcher.join(5)
            os.close(done_w)
            os.close(done_r)


@contextlib.contextmanager
def stop_signals_if_main(callback: Callable[[int], None],
                         signals: Iterable[int] = STOP_SIGNALS) -> Iterator[None]:
    """`stop_signals` when called in the main thread (a stage's command); elsewhere (a stage run as
    a library call in a thread, as tests do) nothing: only the main thread may take signals."""
    if threading.current_thread() is threading.main_thread():
        with stop_signals(callback, signals):
            yield
    else:
        yield


def on_stop_signal(callback: Callable[[int], None], signals: Iterable[int] = STOP_SIGNALS) -> None:
    """`stop_signals` for the rest of the process's life (a stage's CLI). Main thread only."""
    stack = contextlib.ExitStack()
    stack.enter_context(stop_signals(callback, signals))
    _kept.append(stack)


_kept: list[contextlib.ExitStack] = []  # never closed: the handlers last until the process exits


class Stop:
    """A stop request that a thread can wait for and a `select` can watch (its `fileno()`), set
    from any thread but never from a signal handler (`stop_signals` calls it from a thread)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)

    def __call__(self, signum: int | None = None) -> None:  # noqa: ARG002 - a stop_signals callback
        self.set()

    def set(self) -> None:
        self.event.set()
        with contextlib.suppress(OSError):
            os.write(self._w, b"x")

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.event.wait(timeout)

    def fileno(self) -> int:
        return self._r

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


class StoppableReader(io.RawIOBase):
    """A raw reader of `fd` that ends (EOF) as soon as `stop` is set, even in the middle of a
    blocking wait for input: wrap it in `io.BufferedReader` and read lines as usual."""

    def __init__(self, fd: int, stop: Stop):
        super().__init__()
        self.fd, self.stop = fd, stop

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd, self.stop.fileno()], [], [])
            if self.stop.is_set():
                break
            if self.fd in ready:
                data = os.read(self.fd, len(buf))
                buf[:len(data)] = data
                return len(data)
        return 0


def stoppable(stream: IO[bytes], stop: Stop) -> IO[bytes]:
    """`stream` (stdin, a pipe) read so that `stop` ends a wait for input at once, as an EOF; a
    stream with no file descriptor is returned as it is."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return stream
    return io.BufferedReader(StoppableReader(fd, stop))


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 10) -> None:
    """End a child started in its own session (`start_new_session=True`) with its whole process
    group, so no grandchild (a pool process, a shell's command) outlives it; reap it (SIGKILL if
    `sig` was not enough within `timeout`). A group already gone is fine."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def command(name: str) -> list[str]:
    """argv for one of our own commands (`doorman-collect`, ...): the console script installed
    beside this Python, else the CLI module run by this Python, never whatever else is on PATH,
    and never with the current directory on `sys.path` (a `doorman/` there must not shadow ours)."""
    script = Path(sys.executable).parent / name
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    module = name.removeprefix("doorman-")
    return [sys.executable, "-c",
            "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
            f"from doorman.cli.{module} import main; main(prog_name={name!r})"]


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: 128 + N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode
