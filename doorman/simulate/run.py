"""Run one simulation from start to teardown: redis-server, workers, tasks, then the pipeline (or
the user's command), and whatever happens (end, error, Ctrl-C, SIGTERM) stop all of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from doorman.redact import redact_url
from doorman.simulate.broker import RedisProcess
from doorman.simulate.enqueue import publish
from doorman.simulate.pipeline import Pipeline, View
from doorman.simulate.procs import child_env
from doorman.simulate.rabbit import RabbitVhost
from doorman.simulate.scenario import Options, plan
from doorman.simulate.serve import ServeBeside
from doorman.simulate.stopping import Stopped, stop_on_signals, wait_proc
from doorman.simulate.workers import WorkerPool


class Simulation:
    """Everything one run started, so that `close()` can take all of it down."""

    def __init__(self, opts: Options, env: Mapping[str, str], file_data: Mapping[str, Any],
                 say: Callable[[str], None]):
        self.opts, self.say = opts, say
        self.plan = plan(opts, env, file_data)
        self.workdir = Path(tempfile.mkdtemp(prefix="doorman-simulate-"))
        self.redis: RedisProcess | RabbitVhost = (RabbitVhost(opts.port, self.workdir) if opts.broker == "rabbitmq"
                                                  else RedisProcess(opts.port, self.workdir))
        self.pool: WorkerPool | None = None
        self.timers: list[threading.Timer] = []
        self.env = child_env(dict(env), {**self.plan.settings, "REDIS_URL": self.redis.url})

    def start(self) -> None:
        o = self.opts
        if isinstance(self.redis, RabbitVhost):
            self.say(f"RabbitMQ: {self.redis.start().where}")
            self.env.update(self.redis.env)  # a private node's management port is known only now
            self.env["REDIS_URL"] = self.redis.monitor_url
            self.say(f"Doorman reaches it through a relay on {redact_url(self.redis.monitor_url)}, so that the "
                     "broker can vanish for it at once")
        else:
            proc = self.redis.start().proc
            self.say(f"redis-server on 127.0.0.1:{o.port} (pid {proc.pid if proc else '?'})")
        self.pool = WorkerPool(self.redis.url, self.workdir, dict(os.environ))
        self.pool.add(o.workers).wait_ready(
            listening=self.redis.listening if isinstance(self.redis, RabbitVhost) else None)
        if o.workers:
            self.say(f"{o.workers} worker(s) ready: {', '.join(w.name for w in self.pool.workers)}")
        n = publish(self.redis.url, self.plan.tasks)
        if isinstance(self.redis, RabbitVhost):
            self.redis.settle(n)
        if n:
            kinds = sorted({f"{t.name}{t.args!r} -> {t.queue}" for t in self.plan.tasks})
            self.say(f"enqueued {n} task(s): {'; '.join(kinds)}")
        if self.plan.settings:
            self.say("demo settings: " + " ".join(f"{k}={v}" for k, v in sorted(self.plan.settings.items())))

    def arm_timers(self) -> None:
        """--kill-after / --stop-redis-after, counted from now (the first check, or the command's start)."""
        o = self.opts
        if o.kill_after is not None:
            self._timer(o.kill_after, self._kill_worker)
        if o.stop_redis_after is not None:
            self._timer(o.stop_redis_after, self._stop_redis)

    def _timer(self, seconds: float, fn: Callable[[], None]) -> None:
        t = threading.Timer(seconds, fn)
        t.daemon = True
        self.timers.append(t)
        t.start()

    def _kill_worker(self) -> None:
        w = self.pool.kill_one() if self.pool else None
        if w:
            self.say(f"kill -9 worker {w.name} (pid {w.proc.pid})")

    def _stop_redis(self) -> None:
        self.redis.stop()
        if isinstance(self.redis, RabbitVhost):
            self.say(f"RabbitMQ vhost {self.redis.vhost} deleted: the broker is gone for every client in it")
        else:
            self.say(f"redis-server on 127.0.0.1:{self.opts.port} stopped")

    def close(self) -> None:
        for t in self.timers:
            t.cancel()
        if self.pool:
            self.pool.stop()
        self.redis.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def watch(sim: Simulation, alerts: IO[str], human: IO[str]) -> int:
    """The real pipeline against the simulated broker; returns 0, or 1 if a stage failed."""
    o = sim.opts
    served = ServeBeside(sim.workdir, o.serve, sim.env, sim.say) if o.serve else None
    view = served.view(alerts, human) if served else View(alerts, human)
    pipe = Pipeline(sim.env, view, o.interval, None if o.forever else o.checks,
                    str(sim.workdir / "state.json"), o.config_path, on_snapshot=lambda _: sim.arm_timers())
    sim.say(f"watching {redact_url(sim.env['REDIS_URL'])}: {pipe.shown}")
    try:
        pipe.start()
        codes = pipe.wait()
    finally:
        pipe.stop()
        if served:
            served.close()
    sim.say(f"{view.checks} check(s), {len(view.alert_lines)} alert(s), {view.deliveries} delivery record(s)")
    failed = {name: code for name, code in codes.items() if code != 0}
    for name, code in failed.items():
        sim.say(f"{name} exited with {code}")
    return 1 if failed else 0


def run_command(sim: Simulation, argv: tuple[str, ...]) -> int:
    """The user's command with REDIS_URL on the simulated broker; its exit code is ours."""
    env = dict(sim.env)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    sim.say(f"running with REDIS_URL={redact_url(env['REDIS_URL'])}: {' '.join(argv)}")
    try:
        proc = subprocess.Popen(list(argv), env=env)
    except OSError as e:
        sim.say(f"cannot run {argv[0]}: {e.strerror}")
        return 127 if isinstance(e, FileNotFoundError) else 126
    sim.arm_timers()
    try:
        code = wait_proc(proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 128 - code if code < 0 else code


def read_config_file(path: str | None) -> dict[str, Any]:
    """The user's `--config` file as written (already checked by the command), to see what it sets."""
    if not path:
        return {}
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def simulate(opts: Options, env: Mapping[str, str], alerts: IO[str], human: IO[str], talk: IO[str]) -> int:
    """Set up, run (pipeline or command), tear down. Exit code: as documented in docs/simulate.md ("Exit codes")."""

    def say(text: str) -> None:
        try:
            talk.write(f"doorman-simulate: {text}\n")
            talk.flush()
        except (OSError, ValueError):
            pass

    sim = Simulation(opts, env, read_config_file(opts.config_path), say)
    with stop_on_signals():
        try:
            sim.start()
            return run_command(sim, opts.command) if opts.command else watch(sim, alerts, human)
        except Stopped as e:
            say(f"{e}: stopping everything")
            return 128 + e.signum
        finally:
            sim.close()
