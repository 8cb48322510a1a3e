"""Starting and ending child processes so that none outlives the simulation.

Each child gets its own process group (so a whole `celery worker` with its pool children can be
killed at once, and a terminal's Ctrl-C reaches only us, who then tear down in order) and, on
Linux, a parent-death signal: even if doorman-simulate itself is `kill -9`ed, its children die.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from doorman.process import command as command  # where our own commands are, shared with doorman-run
from doorman.process import kill_group

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def threads_ignore_stop_signals() -> Iterator[None]:
    """Threads started inside inherit a mask that blocks SIGINT/SIGTERM/SIGHUP, so the kernel hands
    those to the main thread, where Python's default SIGINT (KeyboardInterrupt) interrupts a
    blocking call at once (a signal taken by a helper thread would wait until that call returned).
    Not needed under `stopping.stop_on_signals`, whose wakeup pipe hears a signal in any thread.
    Start no process in here: a child would inherit the mask."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


def spawn(args: list[str], **kw) -> subprocess.Popen:
    """Popen in a new session that is SIGKILLed if we die."""
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent(), **kw)


def children_of(pid: int) -> list[int]:
    """Child processes of `pid` (field 4 of /proc/<pid>/stat is the parent)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(stat.parent.name))
    return out


def stop(proc: subprocess.Popen, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL after `timeout`; the group goes too."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    kill_group(proc)


def package_root() -> Path:
    return Path(__file__).resolve().parent.parent.parent


def child_env(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """`base` + `extra`, with this package importable even when it is run from a checkout."""
    env = {**base, **extra}
    root = str(package_root())
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


def log_tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""
