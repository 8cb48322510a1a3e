"""Real `celery worker` processes running the bundled demo app (doorman/demoapp.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from doorman.errors import StartupFailed
from doorman.simulate.procs import child_env, kill_group, log_tail, spawn
from doorman.simulate.stopping import pause


class WorkerProcess:
    def __init__(self, index: int, url: str, workdir: Path, env: dict[str, str], events: bool = True):
        self.name = f"sim{index}@{socket.gethostname()}"
        self.log = workdir / f"worker{index}.log"
        # -E: task events on, as a deployment that wants task outcomes runs them (events=False: without)
        args = [sys.executable, "-m", "celery", "-A", "doorman.demoapp", "worker", "-n", self.name,
                "-c", "1", "--pool", "prefork", "-l", "WARNING", "--without-mingle", *(["-E"] if events else [])]
        with open(self.log, "wb") as log:
            self.proc = spawn(args, env=child_env(env, {"REDIS_URL": url}), stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.killed = False

    def kill9(self) -> None:
        """`kill -9` the worker and its pool children, as a crash or an OOM kill would."""
        self.killed = True
        kill_group(self.proc)


class WorkerPool:
    """N workers, one process group each, concurrency 1 (so a few slow tasks make a backlog)."""

    def __init__(self, url: str, workdir: Path, env: dict[str, str] | None = None, events: bool = True):
        self.url, self.workdir, self.env = url, workdir, dict(env or os.environ)
        self.events = events  # workers started with -E (task events on)
        self.workers: list[WorkerProcess] = []

    def add(self, n: int) -> WorkerPool:
        """Start n workers; each is registered as soon as it exists, so `stop()` always finds it."""
        for _ in range(n):
            self.workers.append(WorkerProcess(len(self.workers) + 1, self.url, self.workdir, self.env,
                                              self.events))
        return self

    def wait_ready(self, timeout: float = 60, listening: Callable[[list[str]], bool] | None = None) -> None:
        """Ready = bound to the pidbox and subscribed to the control channel, so it answers checks.
        `listening(names)` tells it on another broker than Redis (RabbitMQ's `RabbitVhost.listening`)."""
        if not self.workers:
            return
        client = None
        if listening is None:
            import redis

            from doorman.brokers.redis.keys import Keys
            from doorman.brokers.redis.pidbox import listening as on_redis

            client = redis.Redis.from_url(self.url, socket_timeout=5)
            listening = lambda names: on_redis(client, Keys(), names)  # noqa: E731
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for w in self.workers:
                    if w.proc.poll() is not None:
                        raise StartupFailed(f"worker {w.name} exited with {w.proc.returncode}: {log_tail(w.log)}")
                if listening([w.name for w in self.workers]):
                    pause(0.3)
                    return
                pause(0.1)
        finally:
            if client is not None:
                client.close()
        names = ", ".join(w.name for w in self.workers)
        raise StartupFailed(f"workers {names} not ready after {timeout:.0f}s: {log_tail(self.workers[-1].log)}")

    def kill_one(self) -> WorkerProcess | None:
        """kill -9 the last worker still running."""
        for w in reversed(self.workers):
            if not w.killed and w.proc.poll() is None:
                w.kill9()
                return w
        return None

    def stop(self) -> None:
        for w in self.workers:
            kill_group(w.proc)
