"""`doorman-simulate --serve`: the demo's streams shown live by doorman-serve, beside the pipeline.

The view that prints each snapshot and alert also hands a copy to a bounded queue; a thread of
its own appends the copies to a file (0600) that a doorman-serve process follows. A slow disk or a
stuck serve can only drop copies, never hold up a line on its way to analyze or notify.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from doorman.atomicfile import open_private
from doorman.ndjson import dumps
from doorman.simulate.pipeline import View
from doorman.simulate.procs import command, spawn, stop


class CopyingView(View):
    def __init__(self, alerts: IO[str], human: IO[str], sink: queue.Queue[bytes | None]):
        super().__init__(alerts, human)
        self.sink = sink

    def _copy(self, line: bytes) -> None:
        try:
            self.sink.put_nowait(line if line.endswith(b"\n") else line + b"\n")
        except queue.Full:
            pass

    def snapshot(self, snap: dict[str, Any]) -> None:
        super().snapshot(snap)
        self._copy(dumps(snap))

    def alert(self, line: bytes, obj: dict[str, Any] | None) -> None:
        super().alert(line, obj)
        self._copy(line)


class ServeBeside:
    """The streams file, its writer thread and the doorman-serve process."""

    def __init__(self, workdir: Path, listen: str, env: dict[str, str], say: Callable[[str], None]):
        self.path = workdir / "streams.ndjson"
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)
        self.fd = open_private(str(self.path), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.writer.start()
        argv = [*command("doorman-serve"), "--listen", listen, "--history", str(workdir / "history.sqlite3"),
                str(self.path)]
        self.proc = spawn(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        say(f"doorman-serve (pid {self.proc.pid}) shows the run at http://{listen}/")

    def view(self, alerts: IO[str], human: IO[str]) -> View:
        return CopyingView(alerts, human, self.queue)

    def _write(self) -> None:
        while True:
            line = self.queue.get()
            if line is None:
                return
            try:
                os.write(self.fd, line)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.queue.put(None, timeout=1)
        except queue.Full:
            pass
        self.writer.join(2)
        stop(self.proc)
        os.close(self.fd)
