"""DOORMAN_STREAMS_DIR: copies of the snapshots and alerts passing between the stages, for
doorman-serve to follow beside the pipeline (never in it).

The directory is ours, 0700, or refused (another user's, or writable by group or others, is a
place where someone could plant a link); the files are opened `O_NOFOLLOW`, 0600, ours, with no
second hard link (`doorman.atomicfile`), so no line is ever appended to someone else's file. The
size cap truncates the descriptor we hold, never a path: a link swapped in later is not followed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from doorman.atomicfile import check_dir, open_private

SNAPSHOTS = "snapshots.ndjson"
ALERTS = "alerts.ndjson"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
CAP_EVERY = 10.0  # seconds between two size checks


def make_private_dir(path: str) -> None:
    """`mkdir -p` with every directory it creates 0700; then the directory must be safe to use
    (`UnsafePath` when it is another user's or writable by group or others)."""
    old = os.umask(0o077)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    finally:
        os.umask(old)
    check_dir(path)


class StreamFile:
    """One appended copy of a stream: a tap for `doorman.run.chain`, which never fails the stream
    (a full disk is said once on stderr, and the copy goes on when it can)."""

    def __init__(self, path: str, max_bytes: int, say: Callable[[str], None]):
        self.path, self.max_bytes, self.say = path, max_bytes, say
        self.fd = open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self.lock = threading.Lock()  # a truncation never lands in the middle of a chunk's writes
        self.failed = False

    def __call__(self, chunk: bytes) -> None:
        if not chunk:
            return
        with self.lock:
            try:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.fd, view):]
                self.failed = False
            except OSError as e:
                if not self.failed:
                    self.say(f"cannot append to {self.path} ({e.strerror}); the pipeline goes on without this copy")
                self.failed = True

    def cap(self) -> None:
        """Past the cap, empty the file (doorman-serve notices the truncation and reads on)."""
        with self.lock, contextlib.suppress(OSError):
            if os.fstat(self.fd).st_size > self.max_bytes:
                os.ftruncate(self.fd, 0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_streams(directory: str, max_bytes: int, say: Callable[[str], None]) -> tuple[StreamFile, StreamFile]:
    """(snapshots, alerts); `UnsafePath` (one line, exit 2) for a directory or file we must not use."""
    make_private_dir(directory)
    snapshots = StreamFile(os.path.join(directory, SNAPSHOTS), max_bytes, say)
    try:
        return snapshots, StreamFile(os.path.join(directory, ALERTS), max_bytes, say)
    except BaseException:
        snapshots.close()
        raise
