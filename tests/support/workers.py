"""Real Celery: `celery worker` processes running doorman.demoapp, and a producer that publishes
tasks the way an application does."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from doorman.brokers.redis.keys import Keys
from doorman.brokers.redis.pidbox import listening
from tests.support.process import BIN, ROOT


class Worker:
    """A real `celery worker` process running `doorman.demoapp`, with task events on (`-E`), as the
    docs tell users to run theirs: without, a daemon pipeline rightly says `task_events_off`."""

    def __init__(self, url: str, name: str, concurrency: int = 1, pool: str = "prefork",
                 queues: str | None = None, env: dict[str, str] | None = None, events: bool = True):
        self.url, self.name = url, name
        args = [str(BIN / "celery"), "-A", "doorman.demoapp", "worker", "-n", name, "-c", str(concurrency),
                "--pool", pool, "-l", "WARNING", "--without-mingle", *(["-E"] if events else [])]
        if queues:
            args += ["-Q", queues]
        self.log = tempfile.NamedTemporaryFile(prefix="doorman-worker-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            args, env={**os.environ, "REDIS_URL": url, **(env or {})}, cwd=ROOT,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, client: redis.Redis, prefix: str = "", timeout: float = 30) -> Worker:
        """Ready = bound its pidbox and subscribed to the control channel (so it can answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {Path(self.log.name).read_text()[-2000:]}")
            if listening(client, Keys(prefix), [self.name]):
                time.sleep(0.3)
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} not ready: {Path(self.log.name).read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def kill9(self) -> None:
        """kill -9 the whole worker (main process and pool children), as a crash would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def celery_app(url: str, stamp: bool = True, keyprefix: str = ""):
    from celery import Celery

    app = Celery("doorman_test_producer", broker=url, set_as_current=False)
    if keyprefix:
        app.conf.broker_transport_options = {"global_keyprefix": keyprefix}
    from doorman.hook import install, uninstall

    # The publish signal is process-wide: set it to what this producer wants.
    install(app) if stamp else uninstall()
    return app


def enqueue(url: str, n: int, task: str = "demo.sleep", args: tuple = (60,), queue: str = "celery",
            priority: int | None = None, keyprefix: str = "") -> list[str]:
    """Publish n real Celery messages the way an application would."""
    app = celery_app(url, keyprefix=keyprefix)
    ids = []
    with app.connection_for_write() as conn:
        for _ in range(n):
            r = app.send_task(task, args=args, queue=queue, priority=priority, connection=conn)
            ids.append(r.id)
    return ids
