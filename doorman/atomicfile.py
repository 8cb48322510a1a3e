"""Private files that a crash or a second process cannot corrupt: the notify spool, the analyze state.

`write_atomic` writes a temporary file, fsyncs it, renames it over the target and fsyncs the
directory: after a crash (even a power cut) a reader sees the old file or the new one, never half
of one. `FileLock` is an `flock` on a separate lock file, so two runs never interleave their
read-modify-write cycles. Every file is opened with `O_NOFOLLOW` and created mode 0600, and every
directory we create is 0700: a symlink planted beside the file cannot redirect our writes, and
other users cannot read alerts or secrets.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
FILE_MODE = 0o600
DIR_MODE = 0o700


def make_parent(path: str) -> None:
    """Create the directories above `path` (0700: they hold what only we may read)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=DIR_MODE, exist_ok=True)


def open_private(path: str, flags: int) -> int:
    """`os.open` that never follows a symlink and creates files 0600."""
    return os.open(path, flags | FLAGS, FILE_MODE)


def fsync_dir(path: str) -> None:
    """Make a rename in this file's directory durable. Some filesystems cannot fsync a directory:
    the rename is then as durable as they make it, which is no reason to fail the write."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, mkdirs: bool = True) -> None:
    """Replace `path` with `data` atomically and durably. Raises OSError (the target is untouched).

    The temporary name carries our pid, so a writer that goes on without its lock never renames
    another process's half-written file into place; O_EXCL after removing our own stale one means
    nothing planted under that name (a symlink, a hard link) is ever written through."""
    if mkdirs:
        make_parent(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        os.unlink(tmp)  # left by a killed process that had our pid
    except FileNotFoundError:
        pass
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path)


def append_durable(path: str, data: bytes, mkdirs: bool = True) -> None:
    """Append `data` and fsync: for append-only files (the dead letters), never rewritten."""
    if mkdirs:
        make_parent(path)
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with os.fdopen(fd, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class FileLock:
    """An exclusive `flock` on `path`, across processes; re-entrant within this one (a second
    `flock` on another descriptor of the same file would deadlock against ourselves)."""

    POLL = 0.05  # seconds between two tries when waiting with a timeout

    def __init__(self, path: str, mkdirs: bool = True, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep):
        self.path, self.mkdirs = path, mkdirs
        self.clock, self.sleep = clock, sleep
        self.fd: int | None = None
        self.depth = 0

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for the lock (`timeout` None: for as long as it takes). False when the timeout
        ran out; OSError when the lock file cannot be opened or locked."""
        if self.depth:
            self.depth += 1
            return True
        if self.mkdirs:
            make_parent(self.path)
        fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        try:
            got = self._flock(fd, timeout)
        except BaseException:
            os.close(fd)
            raise
        if not got:
            os.close(fd)
            return False
        self.fd, self.depth = fd, 1
        return True

    def _flock(self, fd: int, timeout: float | None) -> bool:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return True
        deadline = self.clock() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if self.clock() >= deadline:
                    return False
                self.sleep(self.POLL)

    def release(self) -> None:
        if not self.depth:
            return
        self.depth -= 1
        if self.depth == 0 and self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @contextmanager
    def held(self) -> Iterator[None]:
        """`with lock.held():` waits for the lock and gives it back at the end of the block."""
        self.acquire()
        try:
            yield
        finally:
            self.release()
