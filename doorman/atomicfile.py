"""Private files that a crash or a second process cannot corrupt: the notify spool, the analyze state.

`write_atomic` writes a temporary file, fsyncs it, renames it over the target and fsyncs the
directory: after a crash (even a power cut) a reader sees the old file or the new one, never half
of one. `FileLock` is an `flock` on a separate lock file, so two runs never interleave their
read-modify-write cycles. Every file is opened with `O_NOFOLLOW` and is 0600 whatever the umask
(an existing one is chmod-ed), every directory we create is 0700, and a directory we did not
create must be ours (or root's) and not writable by group or others: a symlink, hard link or
forged file planted beside ours can neither redirect our writes nor feed us its content. A file
owned by another user is refused (`UnsafePath`, one line), never read or written. Temporary
files have random names and are created `O_EXCL`.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from doorman.errors import UnsafePath

FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
FILE_MODE = 0o600
DIR_MODE = 0o700


TRUSTED_OWNERS = (0,)  # besides ourselves: root may own a directory we use (/var/lib, /run)
STALE_TEMP_SECONDS = 60.0


def make_parent(path: str) -> None:
    """Create the directories above `path` (0700: they hold what only we may read), then check the
    one that holds the file (`check_dir`)."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.mkdir(parent, DIR_MODE)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(parent, mode=DIR_MODE, exist_ok=True)
    check_dir(parent)


def check_dir(directory: str) -> None:
    """Refuse a directory where another user could plant or swap our files: one not owned by us
    (or root), or writable by group or others (even with the sticky bit: /tmp is refused)."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(directory, "is not a directory")
    if st.st_uid != os.geteuid() and st.st_uid not in TRUSTED_OWNERS:
        raise UnsafePath(directory, f"the directory belongs to another user (uid {st.st_uid}); "
                                    f"use a directory of your own (mode 0700)")
    if st.st_mode & 0o022:
        raise UnsafePath(directory, f"the directory is writable by other users (mode "
                                    f"{stat.S_IMODE(st.st_mode):04o}); chmod 700 it or use another one")


def _check_file(fd: int, path: str) -> None:
    """The open file must be a regular file of ours; it is made 0600 if it was not."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(path, "is not a regular file")
    if st.st_uid != os.geteuid():
        raise UnsafePath(path, f"belongs to another user (uid {st.st_uid}); refusing to trust it")
    if st.st_nlink > 1:
        raise UnsafePath(path, "has other hard links; refusing to write through them")
    if stat.S_IMODE(st.st_mode) & ~FILE_MODE:
        os.fchmod(fd, FILE_MODE)


def open_private(path: str, flags: int) -> int:
    """`os.open` that never follows a symlink, creates files 0600 whatever the umask and refuses a
    file that is not a regular file of ours (`UnsafePath`)."""
    try:
        fd = os.open(path, flags | FLAGS, FILE_MODE)
    except OSError as e:
        if os.path.islink(path):
            raise UnsafePath(path, "is a symbolic link; refusing to follow it") from None
        raise e from None
    try:
        _check_file(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(path: str, limit: int | None = None) -> bytes:
    """The content of one of our files (at most `limit` + 1 bytes), with `open_private`'s checks.
    FileNotFoundError when there is none."""
    fd = open_private(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read() if limit is None else f.read(limit + 1)


def sweep_temps(path: str, now: float | None = None) -> None:
    """Remove our temporary files of `path` left by a killed writer (older than a minute)."""
    directory, base = os.path.split(os.path.abspath(path))
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for e in entries:
        if not e.name.startswith(base + ".tmp."):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and now - st.st_mtime > STALE_TEMP_SECONDS:
                os.unlink(e.path)
        except OSError:
            pass


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

    The temporary name is random and created O_EXCL, so nothing planted under a name we would use
    (a symlink, a hard link, another writer's file) is ever written through or renamed into place."""
    if mkdirs:
        make_parent(path)
    for _ in range(8):
        tmp = f"{path}.tmp.{secrets.token_hex(8)}"
        try:
            fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            break
        except FileExistsError:
            continue
    else:
        raise UnsafePath(path, "cannot create a temporary file beside it")
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
