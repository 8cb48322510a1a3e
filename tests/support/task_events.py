"""Real parts for the task-event tests: workers started with or without `-E`, the collector's daemon
loop in a thread (real broker, real subscription), and the outcomes the demo tasks give."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from doorman.collect.run import run as collect
from doorman.config.load import make_config
from tests.support.process import BIN, ROOT, wait_for

PLAIN = ("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked")


class EventWorker:
    """A real `celery worker` of doorman.demoapp, with `-E` (task events) or without."""

    def __init__(self, url: str, name: str, events: bool, queues: str | None = None, concurrency: int = 2):
        self.name = name
        args = [str(BIN / "celery"), "-A", "doorman.demoapp", "worker", "-n", name, "-c", str(concurrency),
                "-l", "WARNING", "--without-mingle", "--without-gossip"]
        args += ["-E"] if events else []
        args += ["-Q", queues] if queues else []
        self.log = tempfile.NamedTemporaryFile(prefix="doorman-worker-", suffix=".log", delete=False)
        env = {**os.environ, "REDIS_URL": url, "DOORMAN_DEMO_SENT_EVENTS": "1", "DOORMAN_DEMO_ACKS_LATE": "1"}
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def kill9(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


class Daemon:
    """`doorman-collect`'s daemon loop (doorman.collect.main.collect) in a thread; keeps the last snapshot."""

    def __init__(self, url: str, **settings: Any):
        self.cfg = make_config(broker_url=url, check_interval=0.3, **settings)
        self.stop = threading.Event()
        self.snaps: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=collect, args=(self.cfg, self._emit), kwargs={"stopping": self.stop},
                                       daemon=True)
        self.thread.start()

    def _emit(self, snap: dict[str, Any], _n: int) -> None:
        self.snaps = [snap]

    @property
    def tasks(self) -> dict[str, Any] | None:
        return self.snaps[-1]["tasks"] if self.snaps else None

    def until(self, check: Any, timeout: float, what: str) -> dict[str, Any]:
        """Wait for a snapshot whose `tasks` satisfies `check`; return that `tasks`."""
        def ok() -> dict[str, Any] | None:
            t = self.tasks
            return t if t is not None and check(t) else None
        try:
            return wait_for(ok, timeout, what)
        except AssertionError:
            raise AssertionError(f"timed out waiting for {what}; last tasks: {self.tasks}") from None

    def alive(self, name: str) -> bool:
        return bool(self.snaps) and any(w["name"] == name and w["alive"] for w in self.snaps[-1]["workers"])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)


def producer(url: str):
    from celery import Celery

    app = Celery("doorman_test_producer", broker=url, set_as_current=False)
    app.conf.task_send_sent_event = True
    return app


def plain(counts: dict[str, Any]) -> dict[str, int]:
    return {k: counts[k] for k in PLAIN}


LATER = "later"  # where the revoked task waits until its task-sent was counted


def run_every_outcome(url: str, worker: str, daemon: Daemon) -> dict[str, dict[str, int]]:
    """Publish one of each demo outcome (and 3 successes); return what the workers will have done,
    per task name: the counts the snapshot must show.

    The task revoked before it arrives is named only by its `task-sent`, which the publisher sends on
    a connection of its own: the worker's `task-revoked` could overtake it and count under
    `(unknown)` (docs/tasks.md). So it waits in `later`, which the worker consumes only once Doorman
    has counted its `task-sent`."""
    app = producer(url)
    with app.connection_for_write() as conn:
        for _ in range(3):
            app.send_task("demo.add", args=(1, 2), connection=conn)
        for name in ("demo.fail_value", "demo.fail_value", "demo.fail_key", "demo.retry_then_ok",
                     "demo.retry_give_up", "demo.reject"):
            app.send_task(name, connection=conn)
    tid = str(uuid.uuid4())
    replies = app.control.revoke(tid, reply=True, timeout=15, destination=[worker])  # the worker knows first
    assert replies, "the worker did not acknowledge the revoke"
    app.send_task("demo.sleep", args=(1,), task_id=tid, queue=LATER)
    daemon.until(lambda t: (t["by_name"].get("demo.sleep") or {}).get("sent") == 1, 60, "the revoked task's task-sent")
    assert app.control.add_consumer(LATER, reply=True, timeout=15, destination=[worker]), "add_consumer unanswered"
    z = dict.fromkeys(PLAIN, 0)
    return {
        "demo.add": {**z, "sent": 3, "received": 3, "started": 3, "succeeded": 3},
        "demo.fail_value": {**z, "sent": 2, "received": 2, "started": 2, "failed": 2},
        "demo.fail_key": {**z, "sent": 1, "received": 1, "started": 1, "failed": 1},
        # two retries (each a new message, announced by task-sent from the worker), then success
        "demo.retry_then_ok": {**z, "sent": 3, "received": 3, "started": 3, "retried": 2, "succeeded": 1},
        "demo.retry_give_up": {**z, "sent": 3, "received": 3, "started": 3, "retried": 2, "failed": 1},
        # Celery 5.7 sends task-failed for Reject(requeue=False), then task-rejected (acks_late)
        "demo.reject": {**z, "sent": 1, "received": 1, "started": 1, "failed": 1, "rejected": 1},
        # revoked before it arrived: the worker drops it without receiving it
        "demo.sleep": {**z, "sent": 1, "revoked": 1},
    }


def done(expected: dict[str, dict[str, int]]):
    def check(t: dict[str, Any]) -> bool:
        return all(name in t["by_name"] and plain(t["by_name"][name]) == want for name, want in expected.items())
    return check


def assert_every_count(t: dict[str, Any], expected: dict[str, dict[str, int]], worker: str) -> None:
    """Every count of the section equals what the worker did."""
    assert {n: plain(c) for n, c in t["by_name"].items()} == expected
    by = t["by_name"]
    assert by["demo.fail_value"]["exceptions"] == {"ValueError": 2}
    assert by["demo.fail_key"]["exceptions"] == {"KeyError": 1}
    assert by["demo.retry_give_up"]["exceptions"] == {"ValueError": 1}
    assert by["demo.retry_give_up"]["final_failures"] == 1  # the last try, after two retries
    assert by["demo.fail_value"]["final_failures"] == 0
    assert by["demo.reject"]["exceptions"] == {"UnknownException": 1}  # Reject's repr is no `Class(...)`
    assert by["demo.add"]["runtime"]["count"] == 3 and sum(by["demo.add"]["runtime"]["counts"]) == 3
    assert by["demo.retry_then_ok"]["runtime"]["count"] == 1
    for name, c in by.items():  # every start had its received and sent before it
        assert c["wait"]["count"] == c["started"], name
        assert c["queue_wait"]["count"] == c["started"], name
        assert len(c["runtime"]["counts"]) == len(t["buckets"]["runtime"]) + 1
    total = {k: sum(c[k] for c in expected.values()) for k in PLAIN}
    worker_side = {**total, "sent": 0}
    # the retries' task-sent come from the worker's own node name; the rest from the producer
    got = t["by_worker"][worker]
    assert {k: got[k] for k in PLAIN if k != "sent"} == {k: v for k, v in worker_side.items() if k != "sent"}
    assert sum(w["sent"] for w in t["by_worker"].values()) == total["sent"]
    # every event is counted under a queue; only task-sent names it, so a task-received that overtakes
    # its task-sent (the publisher's and the worker's events race) counts under "(unknown)" (docs/tasks.md)
    queues = {q: plain(c) for q, c in t["by_queue"].items()}
    assert set(queues) <= {"celery", LATER, "(unknown)"}
    assert queues["celery"]["sent"] + queues[LATER]["sent"] == total["sent"] and queues[LATER]["revoked"] == 1
    assert {k: sum(q[k] for q in queues.values()) for k in total} == total
    rows = [r for r in t["series"] if r["hostname"] == worker]
    assert {r["name"] for r in rows} == set(expected)
    assert sum(r["succeeded"] for r in t["series"]) == total["succeeded"]
    assert t["events"] == "on" and t["silent_workers"] == []
    assert t["lost"]["gaps"] == 0 and t["lost"]["total"] == 0
    assert t["reader"]["subscribed"] and t["reader"]["bad"] == 0
    assert t["omitted"] == {"names": 0, "hostnames": 0, "queues": 0, "series": 0, "exceptions": 0}
