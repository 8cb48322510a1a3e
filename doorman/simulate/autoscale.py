"""`doorman-simulate --scenario autoscale`: a burst drained by one worker, then by workers that
doorman-scale starts and stops, measured on real processes.

Each run gets its own redis-server, one real Celery worker and a burst of `tasks` tasks of
`task_seconds`. The scaled run pipes `doorman-collect | doorman-scale --exec 'python -m
doorman.simulate.fleet FILE {pool} {desired}'`, and `Fleet` starts and stops local workers to
match, as `docker compose --scale` would. Drained = the queue and kombu's unacked set are empty
(every task has started). After the drain the scaled run goes on for `settle` seconds so the
scale-downs show, and the result counts them: no flapping means consecutive scale-downs at least
one stabilization window apart and no scale-up after the first scale-down.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from doorman.simulate.broker import RedisProcess
from doorman.simulate.enqueue import Task, publish
from doorman.simulate.fleet import Fleet
from doorman.simulate.procs import child_env, command, spawn, stop
from doorman.simulate.rabbit import RabbitVhost
from doorman.simulate.stopping import Stopped, pause, stop_on_signals
from doorman.simulate.workers import WorkerPool
from doorman.timefmt import parse_iso


@dataclass(frozen=True)
class AutoscaleOptions:
    tasks: int = 300
    task_seconds: float = 1.0
    max_workers: int = 8
    target_wait: float = 15.0
    stabilization: float = 20.0
    interval: float = 1.0
    settle: float | None = None  # after the drain; default 2.5 stabilization windows
    port: int = 6399
    baseline: bool = True  # also drain with one worker and no scaler
    timeout: float = 900.0
    broker: str = "redis"  # or "rabbitmq": a throw-away vhost (doorman/simulate/rabbit.py)


@dataclass
class Outcome:
    drain_seconds: float | None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    peak_workers: int = 1

    @property
    def changes(self) -> list[dict[str, Any]]:
        out, last = [], None
        for d in self.decisions:
            if last is not None and d["desired_workers"] != last:
                out.append(d)
            last = d["desired_workers"]
        return out

    def direction(self, d: dict[str, Any]) -> str:
        i = self.decisions.index(d)
        return "up" if d["desired_workers"] > self.decisions[i - 1]["desired_workers"] else "down"

    @property
    def ups(self) -> int:
        return sum(1 for d in self.changes if self.direction(d) == "up")

    @property
    def downs(self) -> list[dict[str, Any]]:
        return [d for d in self.changes if self.direction(d) == "down"]

    def flapping(self, window: float) -> bool:
        downs = [parse_iso(d["ts"]) for d in self.downs]
        if any(b - a < window for a, b in zip(downs, downs[1:], strict=False)):
            return True
        first_down = downs[0] if downs else None
        return first_down is not None and any(
            self.direction(d) == "up" and parse_iso(d["ts"]) > first_down for d in self.changes)


@dataclass
class AutoscaleResult:
    scaled: Outcome
    baseline: Outcome | None
    stabilization: float

    def lines(self) -> list[str]:
        s, b = self.scaled, self.baseline
        out = [f"drain time with scaling:    {_secs(s.drain_seconds)} (peak {s.peak_workers} workers)"]
        if b is not None:
            out.append(f"drain time without scaling: {_secs(b.drain_seconds)} (1 worker)")
            if s.drain_seconds and b.drain_seconds:
                ratio = s.drain_seconds / b.drain_seconds
                out.append(f"ratio: {ratio:.2f} (goal: at most 0.50) -> {'met' if ratio <= 0.5 else 'NOT met'}")
        failed = sum(1 for c in s.commands if c.get("result") != "ok")
        out.append(f"scale events: {len(s.changes)} ({s.ups} up, {len(s.downs)} down), "
                   f"{len(s.commands)} command(s) run, {failed} failed")
        flap = s.flapping(self.stabilization)
        out.append(f"flapping: {'YES' if flap else 'none'} (goal: at most one scale-down per "
                   f"{self.stabilization:g} s window, no scale-up after scaling down)")
        return out


def _secs(v: float | None) -> str:
    return f"{v:.1f} s" if v is not None else "not drained"


@contextlib.contextmanager
def _broker(port: int, workdir: Path, broker: str = "redis") -> Iterator[RedisProcess | RabbitVhost]:
    server: RedisProcess | RabbitVhost = RabbitVhost(port, workdir) if broker == "rabbitmq" else RedisProcess(port, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _drained(client: Any) -> bool:
    return client.llen("celery") == 0 and client.hlen("unacked") == 0


class _RabbitDrain:
    """Drained on RabbitMQ: `celery` has no message ready or unacknowledged. Ready is read over AMQP
    (a passive declare: exact now); unacked only from the management API, seconds late, so it is read
    only once nothing is ready (it can then only make the drain look later, never earlier)."""

    def __init__(self, vhost: RabbitVhost):
        self.vhost = vhost

    def __call__(self) -> bool:
        from urllib.parse import quote

        import amqp
        import requests

        conn = amqp.Connection(f"127.0.0.1:{self.vhost.port}", userid="guest", password="guest",
                               virtual_host=self.vhost.vhost, connect_timeout=5)
        try:
            conn.connect()
            _q, ready, _c = conn.channel().queue_declare(queue="celery", passive=True)
        except amqp.exceptions.NotFound:
            ready = 0
        finally:
            conn.collect()
        if ready:
            return False
        row = requests.get(f"http://127.0.0.1:{self.vhost.mgmt_port}/api/queues/{quote(self.vhost.vhost, safe='')}"
                           "/celery", params={"columns": "messages_unacknowledged"}, auth=("guest", "guest"),
                           timeout=5)
        if row.status_code == 404:
            return True
        # A queue the statistics timer has not seen yet is answered with `[]`: not known, so not drained
        body = row.json() if row.ok else None
        return isinstance(body, dict) and not (body.get("messages_unacknowledged") or 0)


def _burst(url: str, opts: AutoscaleOptions) -> float:
    publish(url, [Task("demo.sleep", (opts.task_seconds,))] * opts.tasks)
    return time.monotonic()


def drain_once(opts: AutoscaleOptions, env: Mapping[str, str], say: Callable[[str], None], scaled: bool) -> Outcome:
    """One run on a fresh broker: one worker, the burst, and (if `scaled`) the scaler; the outcome."""
    import redis

    workdir = Path(tempfile.mkdtemp(prefix="doorman-autoscale-"))
    procs: list[subprocess.Popen] = []
    pool: WorkerPool | None = None
    fleet: Fleet | None = None
    try:
        with _broker(opts.port, workdir, opts.broker) as broker:
            rabbit = broker if isinstance(broker, RabbitVhost) else None
            if rabbit:
                say(f"RabbitMQ: {rabbit.where}")
            pool = WorkerPool(broker.url, workdir, dict(env))
            pool.add(1).wait_ready(listening=rabbit.listening if rabbit else None)
            outcome = Outcome(None)
            reader = None
            if scaled:
                desired = workdir / "desired"
                fleet = Fleet(pool, desired)
                stage_env = {**env, **rabbit.env} if rabbit else env
                reader = _start_pipeline(opts, stage_env, broker.url, desired, workdir, procs, outcome)
                pause(2 * opts.interval)  # the scaler's first readings: before the burst
            client = None if rabbit else redis.Redis.from_url(broker.url, socket_timeout=5)
            drained: Callable[[], bool] = _RabbitDrain(rabbit) if rabbit else lambda: _drained(client)
            started = _burst(broker.url, opts)
            say(f"{'scaled' if scaled else 'baseline'} run: {opts.tasks} tasks of {opts.task_seconds:g} s enqueued")
            end = started + opts.timeout
            settle = opts.settle if opts.settle is not None else 2.5 * opts.stabilization
            stop_at = end
            while time.monotonic() < min(end, stop_at):
                if fleet is not None:
                    outcome.peak_workers = max(outcome.peak_workers, fleet.reconcile())
                if outcome.drain_seconds is None and drained():
                    outcome.drain_seconds = time.monotonic() - started
                    say(f"drained in {outcome.drain_seconds:.1f} s")
                    stop_at = time.monotonic() + (settle if scaled else 0)
                pause(0.2)
            if client is not None:
                client.close()
            for p in procs:
                stop(p)
            if reader is not None:
                reader.join(10)
            if fleet is not None:
                fleet.join()
            return outcome
    finally:
        for p in procs:
            stop(p)
        if pool is not None:
            pool.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _start_pipeline(opts: AutoscaleOptions, env: Mapping[str, str], url: str, desired: Path, workdir: Path,
                    procs: list[subprocess.Popen], outcome: Outcome) -> threading.Thread:
    """doorman-collect | doorman-scale --exec (fleet), its records gathered into `outcome`."""
    stage_env = child_env(dict(env), {
        "REDIS_URL": url, "DOORMAN_SCALE_MIN_WORKERS": "1", "DOORMAN_SCALE_MAX_WORKERS": str(opts.max_workers),
        "DOORMAN_SCALE_TARGET_WAIT_SECONDS": str(opts.target_wait),
        "DOORMAN_SCALE_STABILIZATION_SECONDS": str(opts.stabilization),
        "DOORMAN_SCALE_RATE_WINDOW_SECONDS": str(max(5.0, opts.stabilization / 2)),
    })
    template = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "doorman.simulate.fleet", str(desired)))
    with open(workdir / "collect.log", "wb") as log:
        collect = spawn([*command("doorman-collect"), "--interval", str(opts.interval)], env=stage_env,
                        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    procs.append(collect)
    with open(workdir / "scale.log", "wb") as log:
        scale = spawn([*command("doorman-scale"), "--exec", template + " {pool} {desired}"], env=stage_env,
                      stdin=collect.stdout, stdout=subprocess.PIPE, stderr=log)
    procs.append(scale)
    assert collect.stdout is not None and scale.stdout is not None
    collect.stdout.close()  # scale holds it now; collect sees EPIPE when scale ends
    out = scale.stdout

    def read() -> None:
        for line in out:
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if rec.get("kind") == "scale":
                outcome.decisions.append(rec)
            elif rec.get("kind") == "scale_exec":
                outcome.commands.append(rec)

    t = threading.Thread(target=read, name="autoscale-reader", daemon=True)
    t.start()
    return t


def autoscale(opts: AutoscaleOptions, env: Mapping[str, str], say: Callable[[str], None]) -> AutoscaleResult:
    """The scaled run, then (if `opts.baseline`) the same burst on one worker alone."""
    scaled = drain_once(opts, env, say, scaled=True)
    baseline = drain_once(opts, env, say, scaled=False) if opts.baseline else None
    return AutoscaleResult(scaled, baseline, opts.stabilization)


def run_scenario(opts: AutoscaleOptions, env: Mapping[str, str], out: Callable[[str], None],
                 say: Callable[[str], None]) -> int:
    """The CLI's scenario: the figures on `out`; 0, or 1 when a run did not drain in time. A stop
    signal tears everything down (exit 128 + signal)."""
    with stop_on_signals():
        try:
            result = autoscale(opts, env, say)
        except Stopped as e:
            say(f"{e}: stopping everything")
            return 128 + e.signum
    for line in result.lines():
        out(line)
    runs = [result.scaled, *([result.baseline] if result.baseline else [])]
    return 0 if all(r.drain_seconds is not None for r in runs) else 1


def scenario(tasks: int | None, task_seconds: float | None, port: int, interval: float,
             broker: str = "redis") -> int:
    """`doorman-simulate --scenario autoscale`: figures on stdout, progress on stderr."""
    opts = AutoscaleOptions(tasks=tasks if tasks is not None else 300,
                            task_seconds=task_seconds if task_seconds is not None else 1.0,
                            port=port, interval=interval, broker=broker)

    def out(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def say(text: str) -> None:
        sys.stderr.write(f"doorman-simulate: {text}\n")
        sys.stderr.flush()

    return run_scenario(opts, dict(os.environ), out, say)
