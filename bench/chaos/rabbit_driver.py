"""Carry out the same seeded chaos plan against the machine's RabbitMQ, in a throw-away vhost.

What differs from the Redis driver (tests/chaos/driver.py), and why:

- **The broker is shared**: the machine's rabbitmq-server serves other vhosts, other tests, other
  people, so it is never restarted or paused. Its outage is made by two relays of ours
  (doorman/simulate/outage.py), one in front of AMQP and one in front of the management API. The
  workers and the whole daemon line reach the broker only through them. `broker_kill` closes both
  ports and every connection through them: each client sees its connection drop and reconnects are
  refused, and RabbitMQ, which sees every client of the vhost go, deletes their exclusive and
  auto-delete queues (the workers' pidbox queues, Doorman's event queue), as a restart does. Durable
  queues and persistent messages are kept, as a restart keeps them. `broker_start` opens the same
  ports again. Deleting the vhost's connections through the management API instead would model a
  restart less well: the workers reconnect at once, so the broker is never unreachable.
- `pause`: both relays hold every byte for the pause, then let it through: a broker that accepts and
  does not answer, what `CLIENT PAUSE ALL` is on Redis.
- The backlog is read with AMQP passive declares on a direct connection (ready messages now, as
  `LLEN` counts them on Redis), and `purge` is AMQP's `queue.purge` of the vhost's own queue.

Everything (vhost with its queues, workers, relays, the line) is removed at the end, on failure too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from typing import Any

import amqp
import orjson

from bench.chaos.driver import HOOK, INTERVAL, BacklogWatch, Cancelled, Log, Result, Soak, daemon_env
from bench.chaos.scenario import ORPHAN, Params, Step
from doorman.simulate.outage import Outage
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.rabbit import HOST, MGMT, PORT, Vhost, wait_listening
from tests.support.receiver import Receiver
from tests.support.workers import Worker, enqueue

MGMT_PORT = int(MGMT.rsplit(":", 1)[1])


def ready_counts(conn: amqp.Connection, queues: tuple[str, ...]) -> dict[str, int]:
    """Ready messages per queue by passive declare (0 for a queue that does not exist)."""
    out = {}
    for q in queues:
        ch = conn.channel()
        try:
            _name, ready, _consumers = ch.queue_declare(queue=q, passive=True)
            out[q] = ready
            ch.close()
        except amqp.exceptions.NotFound:  # closes the channel
            out[q] = 0
    return out


class RabbitBacklogWatch(BacklogWatch):
    """The same over/under/drained log as on Redis, read over AMQP with a connection of its own."""

    def __init__(self, vhost: Vhost, threshold: int, log: Log):
        super().__init__(0, threshold, log)  # its Redis client is never used (made lazily, never connected)
        self.vhost = vhost
        self.conn: amqp.Connection | None = None

    def _read(self) -> dict[str, int] | None:
        try:
            if self.conn is None:
                self.conn = amqp.Connection(f"{HOST}:{PORT}", userid="guest", password="guest",
                                            virtual_host=self.vhost.name, connect_timeout=2)
                self.conn.connect()
            return ready_counts(self.conn, ("celery", ORPHAN))
        except (amqp.exceptions.AMQPError, OSError):
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    self.conn.collect()
            self.conn = None
            return None

    def run(self) -> None:
        previous: float | None = None
        try:
            while not self.stopping.wait(0.25):
                sampled, previous = previous, time.time()
                counts = self._read()
                if counts is None:
                    continue
                celery, total = counts["celery"], sum(counts.values())
                if total > self.threshold and not self.over:
                    self.over = True
                    self.log.add("over", pending=total)
                elif total <= self.threshold and self.over:
                    self.over = False  # see BacklogWatch.run: under somewhere since the sample before
                    self.log.add("under", t=sampled, pending=total)
                if celery == 0 and self.expect_drain.is_set():
                    self.expect_drain.clear()
                    self.log.add("drained")
        finally:
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    self.conn.collect()


class RabbitSoak(Soak):
    """The soak of tests/chaos/driver.py with RabbitMQ as the broker (see the module's docstring)."""

    def __init__(self, workdir: str | None = None, params: Params | None = None,
                 cancel: threading.Event | None = None):
        super().__init__(workdir, params, cancel)
        shutil.rmtree(self.redis.dir, ignore_errors=True)  # its RedisServer is never started
        self.vhost: Vhost | None = None
        self.amqp: Outage | None = None
        self.mgmt: Outage | None = None
        self.holds: list[threading.Thread] = []

    @property
    def direct_url(self) -> str:
        assert self.vhost is not None
        return self.vhost.url()

    @property
    def relayed_url(self) -> str:
        """Where the workers and Doorman reach the broker: through the AMQP relay."""
        assert self.vhost is not None and self.amqp is not None
        return f"amqp://guest:guest@127.0.0.1:{self.amqp.port}/{self.vhost.path}"

    # -- actions
    def _start_worker(self, name: str) -> None:
        w = Worker(self.relayed_url, name, concurrency=1)
        self.logs.append(w.log.name)
        self.workers[name] = w
        assert self.vhost is not None
        try:
            wait_listening(self.vhost, w, timeout=45)
        except RuntimeError as e:
            self.errors.append(f"worker {name} not ready: {str(e)[-300:]}: "
                               f"{open(w.log.name, errors='replace').read()[-300:]}")

    def _purge(self, queue: str) -> None:
        conn = amqp.Connection(f"{HOST}:{PORT}", userid="guest", password="guest", virtual_host=self.direct_vhost,
                               connect_timeout=5)
        try:
            conn.connect()
            conn.channel().queue_purge(queue)
        finally:
            conn.collect()

    @property
    def direct_vhost(self) -> str:
        assert self.vhost is not None
        return self.vhost.name

    def _hold(self, seconds: float) -> None:
        relays = [r for r in (self.amqp, self.mgmt) if r is not None]
        threads = [threading.Thread(target=r.hold, args=(seconds,), daemon=True) for r in relays]
        for t in threads:
            t.start()
        self.holds += threads

    def do(self, step: Step) -> None:
        a, args = step.action, step.args
        assert self.amqp is not None and self.mgmt is not None
        if a == "broker_kill":
            self.log.add("broker_kill")
            self.amqp.down()
            self.mgmt.down()
            self.watch.reset()
        elif a == "broker_start":
            self.amqp.up()
            self.mgmt.up()
            self.log.add("broker_start")
        elif a == "pause":
            self.log.add("pause", seconds=args["seconds"])
            self._hold(args["seconds"])
        elif a == "burst":
            self.log.add("burst", n=args["n"], seconds=args["seconds"])
            enqueue(self.direct_url, args["n"], task="demo.sleep", args=(args["seconds"],))
            self.watch.expect_drain.set()
        elif a == "orphan":
            enqueue(self.direct_url, args["n"], task="demo.add", args=(1, 2), queue=args["queue"])
            self.log.add("orphan", queue=args["queue"], n=args["n"])
        elif a == "purge":  # what `celery purge -Q orphan` does, in the soak's own vhost
            self._purge(args["queue"])
            self.log.add("purge", queue=args["queue"])
        else:
            super().do(step)  # kill, start, idle: the same on both brokers

    # -- the run
    def run(self, steps: list[Step], duration: float, progress: Any = None) -> Result:
        receiver = Receiver()
        pipe: DaemonPipeline | None = None
        mono0, wall0 = time.monotonic(), time.time()
        t0 = end = wall0
        try:
            self.vhost = Vhost()
            self.amqp = Outage(HOST, PORT)
            self.mgmt = Outage(HOST, MGMT_PORT)
            self.watch = RabbitBacklogWatch(self.vhost, self.params.threshold, self.log)
            pipe = DaemonPipeline(self.relayed_url, receiver.url(HOOK), interval=INTERVAL, workdir=str(self.dir),
                                  tee_alerts=True)
            pipe.env.update(daemon_env(self.params.threshold))
            pipe.env["DOORMAN_RABBITMQ_MANAGEMENT_URL"] = f"http://127.0.0.1:{self.mgmt.port}"
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
            if getattr(self, "watch", None) is not None:
                self.watch.stopping.set()
            if pipe is not None:
                pipe.stop(timeout=20)
            receiver.close()
            for w in self.workers.values():
                w.kill9()
            for relay in (self.amqp, self.mgmt):
                if relay is not None:
                    relay.close()
            if self.vhost is not None:
                self.vhost.delete()
            for path in self.logs:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        assert pipe is not None
        alerts = [{"received": round(r.at - mono0 + wall0, 3), "alert": r.json} for r in receiver.delivered(HOOK)]
        with open(self.dir / "received.ndjson", "wb") as f:
            for a in alerts:
                f.write(orjson.dumps(a) + b"\n")
        return Result(self.dir, t0, end, self.log.entries, alerts, pipe.alerts(), len(pipe.snapshots()), pipe.env,
                      self.errors)
