"""Read NDJSON lines from files the way `tail -F` follows them, or from stdin.

doorman-serve reads the files the daemon pipeline appends to with `tee -a`. A file may be rotated
by rename (a new file appears at the path) or by truncation (`logrotate copytruncate`, or
doorman-run's own size cap): both are noticed by polling, and reading starts again at the new
file's beginning. A file that is missing (not yet created, or between rename and re-creation) is
waited for. Lines are handed on whole; a partial last line waits for its newline.

At start, at most `backlog` bytes from the end of an existing file are read (the history in SQLite
already holds what came before; rows are keyed by time, so reading a line twice is harmless). Line
numbers stay exact all the same: the skipped part's newlines are counted.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

MAX_LINE_BYTES = 16 * 1024 * 1024
CHUNK = 256 * 1024

# (source name, line number, raw line without its newline) -> None
LineSink = Callable[[str, int, bytes], None]


@dataclass
class _Open:
    fd: int
    ino: tuple[int, int]
    pos: int  # -1 for a FIFO (no offsets)


class Splitter:
    """Bytes in, whole lines out; a line over `max_bytes` is reported, not held in memory."""

    def __init__(self, name: str, sink: LineSink, warn: Callable[[str], None], max_bytes: int = MAX_LINE_BYTES):
        self.name, self.sink, self.warn, self.max_bytes = name, sink, warn, max_bytes
        self.buf = bytearray()
        self.lineno = 0
        self.skipping = False
        self.skipped = 0

    def feed(self, data: bytes) -> None:
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                rest = data[start:]
                if self.skipping:
                    self.skipped += len(rest)
                elif len(self.buf) + len(rest) > self.max_bytes:
                    self.skipping, self.skipped = True, len(self.buf) + len(rest)
                    self.buf.clear()
                else:
                    self.buf += rest
                return
            self.lineno += 1
            if self.skipping:
                size = self.skipped + nl - start
                self.warn(f"{self.name}:{self.lineno}: line of {size} bytes is over the "
                          f"{self.max_bytes}-byte limit; skipped")
                self.skipping, self.skipped = False, 0
            else:
                self.buf += data[start:nl]
                if len(self.buf) > self.max_bytes:
                    self.warn(f"{self.name}:{self.lineno}: line of {len(self.buf)} bytes is over the "
                              f"{self.max_bytes}-byte limit; skipped")
                else:
                    self.sink(self.name, self.lineno, bytes(self.buf))
                self.buf.clear()
            start = nl + 1

    def reset(self, lineno: int = 0) -> None:
        self.buf.clear()
        self.lineno = lineno
        self.skipping, self.skipped = False, 0


def count_newlines(fd: int, upto: int) -> int:
    n, pos = 0, 0
    while pos < upto:
        chunk = os.pread(fd, min(CHUNK * 4, upto - pos), pos)
        if not chunk:
            break
        n += chunk.count(b"\n")
        pos += len(chunk)
    return n


class FileFollower:
    """One path, followed through rename and truncation. `poll()` reads what is new; never blocks."""

    def __init__(self, path: str, sink: LineSink, warn: Callable[[str], None], backlog: int):
        self.path, self.warn, self.backlog = path, warn, backlog
        self.split = Splitter(path, sink, warn)
        self.cur: _Open | None = None
        self.first_open = True
        self.missing_said = False

    def _open(self, from_start: bool) -> _Open | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            if not self.missing_said:
                self.warn(f"{self.path}: not there (yet); waiting for it")
                self.missing_said = True
            return None
        except OSError as e:
            if not self.missing_said:
                self.warn(f"{self.path}: cannot open ({e.strerror}); retrying")
                self.missing_said = True
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISFIFO(st.st_mode):
            os.close(fd)
            if not self.missing_said:
                self.warn(f"{self.path}: not a regular file or FIFO; waiting")
                self.missing_said = True
            return None
        self.missing_said = False
        pos, lineno = 0, 0
        if not from_start and stat.S_ISREG(st.st_mode) and st.st_size > self.backlog:
            # start within the last `backlog` bytes, at the first line boundary there
            start = st.st_size - self.backlog
            chunk = os.pread(fd, min(self.backlog, 1 << 20) + 1, start - 1)
            nl = chunk.find(b"\n")
            pos = start + nl if nl >= 0 else st.st_size
            lineno = count_newlines(fd, pos)
        self.split.reset(lineno)
        return _Open(fd, (st.st_dev, st.st_ino), pos)

    def _drain(self, cur: _Open) -> int:
        got = 0
        while True:
            try:
                data = os.pread(cur.fd, CHUNK, cur.pos) if cur.pos >= 0 else os.read(cur.fd, CHUNK)
            except BlockingIOError:
                return got
            except OSError as e:
                if e.errno == 29:  # ESPIPE: a FIFO
                    cur.pos = -1
                    continue
                raise
            if not data:
                return got
            if cur.pos >= 0:
                cur.pos += len(data)
            got += len(data)
            self.split.feed(data)

    def poll(self) -> int:
        """Read whatever is new; returns bytes read."""
        if self.cur is None:
            self.cur = self._open(from_start=not self.first_open)
            self.first_open = False
            if self.cur is None:
                return 0
        cur = self.cur
        got = self._drain(cur)
        try:
            st = os.stat(self.path)
        except OSError:
            return got  # renamed away and not yet re-created: keep reading the old one
        if (st.st_dev, st.st_ino) != cur.ino:
            got += self._drain(cur)  # the last lines written to the old file before rotation
            os.close(cur.fd)
            self.cur = None
            self.warn(f"{self.path}: replaced (rotated); following the new file")
            self.cur = self._open(from_start=True)
            if self.cur is not None:
                got += self._drain(self.cur)
        elif cur.pos >= 0 and st.st_size < cur.pos:
            self.warn(f"{self.path}: truncated; reading from its start")
            cur.pos = 0
            self.split.reset()
            got += self._drain(cur)
        return got

    def close(self) -> None:
        if self.cur is not None:
            os.close(self.cur.fd)
            self.cur = None


def follow_files(paths: list[str], sink: LineSink, warn: Callable[[str], None], stop: threading.Event,
                 backlog: int, interval: float = 0.25) -> None:
    """Poll every path until `stop` is set; sleeps only when nothing was new."""
    followers = [FileFollower(p, sink, warn, backlog) for p in paths]
    try:
        while not stop.is_set():
            got = 0
            for f in followers:
                try:
                    got += f.poll()
                except OSError as e:
                    warn(f"{f.path}: read failed ({e.strerror}); reopening")
                    f.close()
            if not got:
                stop.wait(interval)
    finally:
        for f in followers:
            f.close()


def read_stream(stream: IO[bytes], name: str, sink: LineSink, warn: Callable[[str], None]) -> None:
    """stdin: each line as it arrives, until EOF."""
    split = Splitter(name, sink, warn)
    while True:
        data = stream.read1(CHUNK) if hasattr(stream, "read1") else stream.read(CHUNK)
        if not data:
            return
        split.feed(data)
