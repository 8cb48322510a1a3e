"""Processes joined by OS pipes exactly as the shell's `|` joins them: each stage's stdout is the
write end of an `os.pipe()` whose read end is the next stage's stdin. A joint may carry a tap (a
`tee`): a thread then sits on it, passes every chunk on to the next stage first, and only then
hands it to the tap (a file, a view). No stage waits for a tap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

Chunk = Callable[[bytes], None]
Spawn = Callable[..., subprocess.Popen]
CHUNK = 65536
# The threads here leave every signal to the main thread (which takes them through doorman.process).
THREAD_BLOCKED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}


@dataclass(frozen=True)
class Stage:
    name: str
    argv: list[str]


def lines(callback: Callable[[bytes], None]) -> Chunk:
    """A tap that gets whole lines (each with its newline; a last unterminated one at EOF: b"")."""
    held = bytearray()

    def take(chunk: bytes) -> None:
        if not chunk:  # EOF
            if held:
                callback(bytes(held))
                held.clear()
            return
        held.extend(chunk)
        while (i := held.find(b"\n")) >= 0:
            line = bytes(held[:i + 1])
            del held[:i + 1]
            callback(line)

    return take


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


class Chain:
    """`stages[0] | stages[1] | ...`; `taps[i]` (or None) sits between stage i and i+1; `out` takes
    the last stage's stdout (None: it inherits ours). Start with `start()`, which returns once
    every stage runs (each `exec` done: a signal sent afterwards reaches the stage itself)."""

    def __init__(self, stages: Sequence[Stage], env: Mapping[str, str] | None = None,
                 taps: Sequence[Chunk | None] = (), out: Chunk | None = None,
                 stdin: int | IO[Any] | None = None, spawn: Spawn = subprocess.Popen, tap_first: bool = False):
        self.stages = list(stages)
        self.env = dict(env) if env is not None else None
        self.taps = list(taps) + [None] * (len(self.stages) - 1 - len(taps))
        self.out, self.stdin, self.spawn = out, stdin, spawn
        self.tap_first = tap_first  # a view that must show a line before the next stage acts on it
        self.procs: dict[str, subprocess.Popen] = {}
        self.threads: list[threading.Thread] = []

    def start(self) -> Chain:
        n = len(self.stages)
        ins: list[Any] = [self.stdin] + [None] * (n - 1)
        outs: list[Any] = [None] * n
        copies: list[tuple[int, int | None, Chunk | None]] = []  # (read, write-to-next, tap)
        try:
            for i in range(n - 1):
                r, w = os.pipe()
                outs[i] = w
                if self.taps[i] is None:
                    ins[i + 1] = r
                else:
                    r2, w2 = os.pipe()
                    ins[i + 1] = r2
                    copies.append((r, w2, self.taps[i]))
            if self.out is not None:
                r, w = os.pipe()
                outs[n - 1] = w
                copies.append((r, None, self.out))
            for i in reversed(range(n)):  # readers first, as a shell starts them
                stage = self.stages[i]
                self.procs[stage.name] = self.spawn(stage.argv, env=self.env, stdin=ins[i], stdout=outs[i],
                                                    close_fds=True)
                for fd in (ins[i] if i else None, outs[i]):  # the stage has its copy; ours would hold EOF back
                    if isinstance(fd, int):
                        _close(fd)
                if i:
                    ins[i] = None
                outs[i] = None
        except BaseException:
            for fd in [*ins[1:], *outs, *(c[0] for c in copies), *(c[1] for c in copies)]:
                if isinstance(fd, int):
                    _close(fd)
            for p in self.procs.values():
                with contextlib.suppress(OSError):
                    p.kill()
                p.wait()
            raise
        for src, dst, tap in copies:
            t = threading.Thread(target=self._copy, args=(src, dst, tap, self.tap_first), name="doorman-tee",
                                 daemon=True)
            t.start()
            self.threads.append(t)
        return self

    @staticmethod
    def _copy(src: int, dst: int | None, tap: Chunk | None, tap_first: bool) -> None:
        """`tee`: every chunk to the next stage first (`tap_first`: after the tap), then to the tap;
        a next stage that is gone is no reason to stop reading (the tap still sees everything)."""
        signal.pthread_sigmask(signal.SIG_BLOCK, THREAD_BLOCKED)
        try:
            while True:
                try:
                    chunk = os.read(src, CHUNK)
                except InterruptedError:
                    continue
                except OSError:
                    chunk = b""
                if tap is not None and tap_first:
                    with contextlib.suppress(Exception):
                        tap(chunk)
                if dst is not None and chunk:
                    try:
                        _write_all(dst, chunk)
                    except OSError:  # the next stage is gone
                        _close(dst)
                        dst = None
                if tap is not None and not tap_first:
                    with contextlib.suppress(Exception):  # a tap never holds up the stream
                        tap(chunk)
                if not chunk:
                    return
        finally:
            _close(src)
            _close(dst)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the taps to have seen everything (after the stages ended)."""
        for t in self.threads:
            t.join(timeout)

    def codes(self) -> dict[str, int | None]:
        return {s.name: self.procs[s.name].poll() if s.name in self.procs else None for s in self.stages}
