"""A local stand-in for `docker compose --scale` / `kubectl scale`: the `--exec` target of the
autoscale demo writes the wanted number of workers to a file, and `Fleet` starts or stops real
Celery workers until that many run.

    python -m doorman.simulate.fleet FILE POOL DESIRED     # what doorman-scale --exec runs

Stopping is Celery's warm shutdown (SIGTERM): the worker finishes the task in hand and gives its
prefetched messages back to the queue, as a pod or a container does on scale-down.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from doorman.simulate.procs import stop
from doorman.simulate.workers import WorkerPool, WorkerProcess

MAX_FLEET = 64  # whatever the file says, never more local workers than this


def write_desired(path: str, desired: int) -> None:
    """Atomically: the reconciler never reads half a number."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{desired}\n")
    os.replace(tmp, path)


def read_desired(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return min(int(text), MAX_FLEET) if text.isdigit() else None


class Fleet:
    """Keeps `desired` workers of `pool` running; `running` are the ones not asked to stop."""

    def __init__(self, pool: WorkerPool, desired_file: Path):
        self.pool, self.file = pool, desired_file
        self.running: list[WorkerProcess] = [w for w in pool.workers if w.proc.poll() is None]
        self.stoppers: list[threading.Thread] = []

    def reconcile(self) -> int:
        """Start or stop workers to match the file; returns how many run now."""
        want = read_desired(self.file)
        if want is None:
            return len(self.running)
        if want > len(self.running):
            before = len(self.pool.workers)
            self.pool.add(want - len(self.running))
            self.running += self.pool.workers[before:]
        while len(self.running) > want:
            w = self.running.pop()
            t = threading.Thread(target=stop, args=(w.proc, 15), daemon=True)
            t.start()
            self.stoppers.append(t)
        return len(self.running)

    def join(self) -> None:
        for t in self.stoppers:
            t.join(20)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[2].isdigit():
        sys.stderr.write("usage: python -m doorman.simulate.fleet FILE POOL DESIRED\n")
        return 2
    write_desired(argv[0], int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
