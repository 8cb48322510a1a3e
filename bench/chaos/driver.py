"""Carry out a chaos plan with real parts, and write down what really happened.

A redis-server on a free loopback port (killed and restarted on the same port, paused with
`CLIENT PAUSE`), real prefork Celery workers (`doorman.demoapp`, kill -9'd and restarted), the real
daemon line `doorman-collect --interval 5 | doorman-analyze --state F | doorman-notify` to a real
HTTP receiver on 127.0.0.1. Two `tee`s keep every snapshot and every alert analyze wrote, so the
soak can be replayed through `doorman-analyze` afterwards.

The ground-truth log (`events.ndjson`) has one line per action, stamped just before it was done
(kills, the pause, a burst) or once it had taken effect (a worker ready again, the broker answering, tasks
in the unconsumed queue), plus what the driver saw of the backlog itself (`over`/`under` the threshold,
`drained`), read every 0.25 s with its own client — reading is all it does between actions.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from bench.chaos.scenario import ORPHAN, Params, Step
from doorman.brokers.redis.keys import SEP
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.process import BIN
from tests.support.receiver import Receiver
from tests.support.redis import RedisServer
from tests.support.workers import Worker, enqueue

HOOK = "/hooks/chaos"
INTERVAL = 5.0
MAX_WAIT = 30.0


def daemon_env(threshold: int) -> dict[str, str]:
    """The settings the soak runs at: defaults, except a small backlog threshold and latency limit, and
    the unconsumed queue among the monitored ones."""
    return {"MAX_QUEUE_SIZE": str(threshold), "MAX_WAIT_TIME": f"{MAX_WAIT:g}",
            "MONITORED_QUEUES": f"celery,{ORPHAN}"}


class Log:
    """The ground truth, in memory and appended to a file as it happens."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, action: str, t: float | None = None, **args: Any) -> None:
        entry = {"t": round(time.time() if t is None else t, 3), "action": action, **args}
        with self.lock:
            self.entries.append(entry)
            with open(self.path, "ab") as f:
                f.write(orjson.dumps(entry) + b"\n")


class BacklogWatch(threading.Thread):
    """What the backlog really was: over/under the threshold, and when a burst had drained."""

    def __init__(self, port: int, threshold: int, log: Log):
        super().__init__(daemon=True, name="chaos-backlog-watch")
        self.client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
        self.threshold, self.log = threshold, log
        self.stopping = threading.Event()
        self.expect_drain = threading.Event()
        self.over = False

    def run(self) -> None:
        previous: float | None = None  # when the sample before this one was taken
        while not self.stopping.wait(0.25):
            sampled, previous = previous, time.time()
            try:
                with self.client.pipeline(transaction=False) as p:
                    p.llen("celery")
                    p.llen(ORPHAN)
                    celery, orphan = p.execute()
            except redis.RedisError:
                continue
            total = celery + orphan
            if total > self.threshold and not self.over:
                self.over = True
                self.log.add("over", pending=total)
            elif total <= self.threshold and self.over:
                # it went under somewhere since the sample before, which still showed it over: a check
                # that read the queue in between may rightly resolve before this one saw it
                self.over = False
                self.log.add("under", t=sampled, pending=total)
            if celery == 0 and self.expect_drain.is_set():
                self.expect_drain.clear()
                self.log.add("drained")

    def reset(self) -> None:
        """The broker was killed: its queues are gone."""
        self.over = False
        self.expect_drain.clear()


@dataclass
class Result:
    dir: Path
    t0: float
    end: float
    log: list[dict[str, Any]]
    alerts: list[dict[str, Any]]  # {"received": epoch, "alert": {...}} as the webhook got them
    analyzed: list[dict[str, Any]]  # what doorman-analyze wrote (the replay's reference)
    snapshots: int
    env: dict[str, str]
    errors: list[str]


class Cancelled(Exception):
    """The soak was called off (its pytest session ended without it): everything is torn down."""


class Soak:
    def __init__(self, workdir: str | None = None, params: Params | None = None,
                 cancel: threading.Event | None = None):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="doorman-chaos-"))
        self.cancel = cancel or threading.Event()  # set: stop at the next wait, tearing everything down
        self.params = params or Params()
        self.log = Log(self.dir / "events.ndjson")
        self.errors: list[str] = []
        self.redis = RedisServer()
        self.workers: dict[str, Worker] = {}
        self.logs: list[str] = []

    # -- actions
    def _start_worker(self, name: str) -> None:
        w = Worker(self.redis.url, name, concurrency=1)
        self.logs.append(w.log.name)
        self.workers[name] = w
        try:
            w.wait_ready(self.redis.client(), timeout=45)
        except RuntimeError as e:
            self.errors.append(f"worker {name} not ready: {str(e)[-300:]}")

    def do(self, step: Step) -> None:
        a, args = step.action, step.args
        if a == "kill":
            w = self.workers[args["worker"]]
            self.log.add("kill", worker=args["worker"])
            w.kill9()
        elif a == "start":
            # the problem ends when the worker is started: it is online (and may be heard) before the
            # driver has seen it ready, so a resolution in between is not a false all-clear
            t = time.time()
            self._start_worker(args["worker"])
            self.log.add("start", t=t, worker=args["worker"])
        elif a == "broker_kill":
            self.log.add("broker_kill")
            self.redis.kill()
            self.watch.reset()
        elif a == "broker_start":
            self.redis.start()
            self.log.add("broker_start")
        elif a == "pause":
            self.log.add("pause", seconds=args["seconds"])
            self.redis.client().execute_command("CLIENT", "PAUSE", int(args["seconds"] * 1000), "ALL")
        elif a == "burst":
            self.log.add("burst", n=args["n"], seconds=args["seconds"])  # before the watch can see it
            enqueue(self.redis.url, args["n"], task="demo.sleep", args=(args["seconds"],))
            self.watch.expect_drain.set()
        elif a == "orphan":
            enqueue(self.redis.url, args["n"], task="demo.add", args=(1, 2), queue=args["queue"])
            self.log.add("orphan", queue=args["queue"], n=args["n"])
        elif a == "purge":  # what `celery purge -Q orphan` does: the test's own broker, not Doorman
            c = self.redis.client()
            c.delete(args["queue"], *c.keys(f"{args['queue']}{SEP}*"))
            self.log.add("purge", queue=args["queue"])
        elif a == "idle":
            self.log.add("idle", seconds=args["seconds"])
        else:
            raise ValueError(a)

    # -- the run
    def run(self, steps: list[Step], duration: float, progress: Any = None) -> Result:
        receiver = Receiver()
        self.redis.start()
        self.watch = BacklogWatch(self.redis.port, self.params.threshold, self.log)
        pipe = DaemonPipeline(self.redis.url, receiver.url(HOOK), interval=INTERVAL, workdir=str(self.dir),
                              tee_alerts=True)  # analyze's alerts kept for the replay check
        pipe.env.update(daemon_env(self.params.threshold))
        mono0, wall0 = time.monotonic(), time.time()
        try:
            for name in self.params.workers:
                self._start_worker(name)
            pipe.start()
            for name in self.params.workers:
                pipe.wait_heartbeat(name, timeout=30)
            self.watch.start()
            t0 = time.time()
            self.log.add("soak_start", t=t0)
            for step in steps:
                if self.cancel.wait(max(0.0, t0 + step.at - time.time())):
                    raise Cancelled
                pipe.check_running()
                try:
                    self.do(step)
                except Exception as e:  # noqa: BLE001 - keep the soak going, report it
                    self.errors.append(f"+{time.time() - t0:.1f}s {step.action} {step.args}: {type(e).__name__}: {e}")
                if progress:
                    progress(f"+{time.time() - t0:7.1f}s {step.action} {step.args}")
            if self.cancel.wait(max(0.0, t0 + duration - time.time())):
                raise Cancelled
            end = time.time()
            self.log.add("soak_end", t=end)
            pipe.check_running()
        finally:
            self.watch.stopping.set()
            pipe.stop(timeout=20)
            receiver.close()
            for w in self.workers.values():
                w.kill9()
            self.redis.cleanup()
            for path in self.logs:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        alerts = [{"received": round(r.at - mono0 + wall0, 3), "alert": r.json} for r in receiver.delivered(HOOK)]
        with open(self.dir / "received.ndjson", "wb") as f:
            for a in alerts:
                f.write(orjson.dumps(a) + b"\n")
        return Result(self.dir, t0, end, self.log.entries, alerts, pipe.alerts(), len(pipe.snapshots()), pipe.env,
                      self.errors)


def replay(result: Result) -> list[dict[str, Any]]:
    """The recorded snapshots through `doorman-analyze` again, from an empty state: its alerts."""
    state = result.dir / "replay-state.json"
    with open(result.dir / "snapshots.ndjson", "rb") as f:
        out = subprocess.run([str(BIN / "doorman-analyze"), "--state", str(state)], stdin=f, capture_output=True,
                             env=result.env, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"replay failed ({out.returncode}): {out.stderr.decode(errors='replace')[-1000:]}")
    return [orjson.loads(line) for line in out.stdout.splitlines() if line.strip()]
