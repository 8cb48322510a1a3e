"""`doorman-simulate --scenario NAME`: the ways Celery loses tasks in silence, each staged with real
parts and watched by the real `doorman-collect | doorman-analyze` until its alert comes.

- `redelivery`: two workers with `acks_late` and a 6 s visibility timeout; a 20 s task. kombu hands
  it to the second worker after 6 s: the task really runs twice; `redelivery_risk` warns at 80 %.
- `stranded`: the only worker runs an `acks_late` task and is `kill -9`ed: `unacked_stranded`.
- `eviction`: `maxmemory 2mb` + `allkeys-lru`, filled past the limit: Redis really evicts
  (`broker_eviction_policy`, then `broker_evicting`).
- `oom`: `maxmemory 2mb` + `noeviction`, filled: a real publish fails with OOM; `broker_oom`, and
  no `redis_down`: queues and workers are still read.
- `beat-killed`: a real `celery beat` with RedBeat (from PyPI: `celery-redbeat`) and the canary
  task every second, then `kill -9`: `beat_down`.
- `results`: results without expiry pile up: `results_growing`.

Everything runs in a temporary directory on its own redis-server (`--port`), or with `--broker
rabbitmq` in a throw-away vhost of the RabbitMQ there (`Stage`), and is stopped on exit. Which of
these exist on RabbitMQ: doorman/simulate/per_broker.py.
The simulation configures its own redis-server (`CONFIG SET maxmemory`); Doorman itself never does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from doorman.simulate.broker import RedisProcess
from doorman.simulate.enqueue import Task, publish
from doorman.simulate.per_broker import NOT_ON_BROKER, refused
from doorman.simulate.procs import child_env, command, kill_group, log_tail, spawn, stop
from doorman.simulate.rabbit import RabbitVhost
from doorman.simulate.workers import WorkerPool
from doorman.timefmt import parse_iso

SCENARIOS = ("redelivery", "stranded", "eviction", "oom", "beat-killed", "results")
CANARY = "doorman:beat:canary"
TIMEOUT = 90.0


class Watch:
    """`doorman-collect --interval S --config F | doorman-analyze --config F`, alerts gathered."""

    def __init__(self, url: str, config: Path, interval: float, env: dict[str, str], alerts: IO[str]):
        self.out = alerts
        self.alerts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.collect = spawn([*command("doorman-collect"), "--redis-url", url, "--config", str(config),
                              "--interval", str(interval)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.analyze = spawn([*command("doorman-analyze"), "--config", str(config)], env=env,
                             stdin=self.collect.stdout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.collect.stdout is not None
        self.collect.stdout.close()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.analyze.stdout is not None
        for line in self.analyze.stdout:
            try:
                alert = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            with self.lock:
                self.alerts.append(alert)
            self.out.write(line.decode("utf-8", "replace"))
            self.out.flush()

    def first(self, alert_type: str, severity: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            return next((a for a in self.alerts if a["alert_type"] == alert_type and a["status"] == "firing"
                         and (severity is None or a["severity"] == severity)), None)

    def stop(self) -> None:
        stop(self.collect)
        stop(self.analyze)


def wait(predicate: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return None


def fill(url: str, n: int = 4000) -> int:
    """Write 1 KB keys until `n` or the server refuses (OOM); how many went in."""
    import redis

    client = redis.Redis.from_url(url)
    for i in range(n):
        try:
            client.set(f"filler:{i}", b"x" * 1024)
        except redis.exceptions.OutOfMemoryError:
            return i
    return n


class Stage:
    """One scenario's redis-server, workers, beat and pipeline; all stopped by `close()`."""

    def __init__(self, port: int, interval: float, alerts: IO[str], talk: IO[str], broker: str = "redis"):
        self.dir = Path(tempfile.mkdtemp(prefix="doorman-simulate-"))
        os.chmod(self.dir, 0o700)
        self.interval, self.alerts, self.talk = interval, alerts, talk
        self.t0 = time.time()
        self.env = child_env(dict(os.environ), {})
        for k in [k for k in self.env if k.startswith(("REDIS_URL", "CELERY_BROKER", "BROKER_URL"))]:
            del self.env[k]
        self.redis: RedisProcess | RabbitVhost
        if broker == "rabbitmq":  # a throw-away vhost (doorman/simulate/rabbit.py), deleted by close()
            self.redis = RabbitVhost(port, self.dir)
            try:
                self.redis.start()
            except BaseException:
                self.redis.stop()
                shutil.rmtree(self.dir, ignore_errors=True)
                raise
            self.env.update(self.redis.env)
            self.say(f"RabbitMQ: {self.redis.where}")
        else:
            self.redis = RedisProcess(port, self.dir).start()
        self.url = self.redis.url
        self.pools: list[WorkerPool] = []
        self.procs: list[subprocess.Popen] = []
        self.watch: Watch | None = None

    def say(self, text: str) -> None:
        self.talk.write(f"[{time.time() - self.t0:6.1f}s] {text}\n")
        self.talk.flush()

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def workers(self, n: int, env: dict[str, str] | None = None, events: bool = True) -> WorkerPool:
        pool = WorkerPool(self.url, self.dir, {**self.env, **(env or {})}, events).add(n)
        self.pools.append(pool)
        pool.wait_ready(listening=self.redis.listening if isinstance(self.redis, RabbitVhost) else None)
        self.say(f"{n} Celery worker(s) ready: {', '.join(w.name for w in pool.workers)}")
        return pool

    def pipeline(self, config: str) -> Watch:
        path = self.dir / "doorman.yaml"
        path.write_text(config)
        self.say("watching: doorman-collect | doorman-analyze (alerts on stdout)")
        self.watch = Watch(self.url, path, self.interval, self.env, self.alerts)
        return self.watch

    def close(self) -> None:
        if self.watch:
            self.watch.stop()
        for p in self.procs:
            kill_group(p)
        for pool in self.pools:
            pool.stop()
        self.redis.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def staged(port: int, interval: float, alerts: IO[str], talk: IO[str], broker: str = "redis") -> Iterator[Stage]:
    stage = Stage(port, interval, alerts, talk, broker)
    try:
        yield stage
    finally:
        stage.close()


def _redelivery(s: Stage) -> bool:
    env = {"DOORMAN_DEMO_ACKS_LATE": "1", "DOORMAN_DEMO_VISIBILITY_TIMEOUT": "6"}
    s.workers(2, env)
    marks = s.dir / "runs.txt"
    publish(s.url, [Task("demo.mark", (str(marks), 20.0))])
    s.say("published one 20 s task; workers run with acks_late and a 6 s visibility timeout")
    watch = s.pipeline("broker_transport_options:\n  visibility_timeout: 6\n")
    runs = wait(lambda: marks.exists() and len(lines := marks.read_text().splitlines()) >= 2 and lines)
    warned = wait(lambda: watch.first("redelivery_risk"), 10)
    if not runs:
        s.say("the task did not run twice")
        return False
    (tid, t1), (_, t2) = [(line.split()[0], float(line.split()[1])) for line in runs[:2]]
    s.say(f"task {tid} ran twice: at +{t1 - s.t0:.1f}s and again at +{t2 - s.t0:.1f}s")
    if warned:
        at = parse_iso(warned["ts"])
        s.say(f"redelivery_risk {warned['severity']} at +{at - s.t0:.1f}s: "
              + ("before the second run" if at < t2 else "AFTER the second run"))
    return bool(warned) and parse_iso(warned["ts"]) < t2


def _stranded(s: Stage) -> bool:
    pool = s.workers(1, {"DOORMAN_DEMO_ACKS_LATE": "1"})
    marks = s.dir / "runs.txt"
    publish(s.url, [Task("demo.mark", (str(marks), 60.0))])
    wait(marks.exists, 30)
    pool.kill_one()
    s.say("the only worker was kill -9ed while running an acks_late task (visibility timeout 3 s here)")
    watch = s.pipeline("broker_transport_options:\n  visibility_timeout: 3\n")
    return bool(wait(lambda: watch.first("unacked_stranded"), 30))


def _eviction(s: Stage) -> bool:
    s.client().config_set("maxmemory", "2mb")
    s.client().config_set("maxmemory-policy", "allkeys-lru")
    s.say("redis-server: maxmemory 2mb, maxmemory-policy allkeys-lru (CONFIG SET by the simulation)")
    watch = s.pipeline("")
    wait(lambda: watch.first("broker_eviction_policy"), 20)
    publish(s.url, [Task("demo.add", (2, 3))] * 20)
    s.say(f"20 tasks queued; then {fill(s.url)} 1 KB keys written: Redis evicts to make room")
    ok = wait(lambda: watch.first("broker_evicting"), 20)
    s.say(f"evicted keys: {s.client().info('stats')['evicted_keys']}; tasks left in the queue: "
          f"{s.client().llen('celery')} of 20")
    return bool(ok)


def _oom(s: Stage) -> bool:
    s.workers(1)
    client = s.client()
    client.config_set("maxmemory", "2mb")
    client.config_set("maxmemory-policy", "noeviction")
    watch = s.pipeline("")
    time.sleep(2 * s.interval)
    s.say(f"redis-server: maxmemory 2mb, noeviction; {fill(s.url)} 1 KB keys written until refused")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"] * 0.9))  # stays full
    try:
        publish(s.url, [Task("demo.add", (2, 3))])
        s.say("a publish went through?")
    except Exception as e:  # noqa: BLE001 - the point: the application's publish fails
        s.say(f"a real publish fails, as the application would see it: {type(e).__name__}: {e}")
    ok = wait(lambda: watch.first("broker_oom"), 20)
    time.sleep(2 * s.interval)
    down = watch.first("redis_down")
    s.say("redis_down: " + ("FIRED (wrong)" if down else "not fired: a full broker is not a down broker"))
    return bool(ok) and not down


def _beat_killed(s: Stage) -> bool:
    if importlib.util.find_spec("redbeat") is None:
        s.say("this scenario needs RedBeat: pip install celery-redbeat")
        return False
    beat_env = {"DOORMAN_DEMO_BEAT_EVERY": "1", "DOORMAN_BEAT_CANARY_KEY": CANARY}
    s.workers(1, beat_env)
    log = s.dir / "beat.log"
    with open(log, "wb") as f:
        beat = spawn([sys.executable, "-m", "celery", "-A", "doorman.demoapp", "beat", "-S",
                      "redbeat.RedBeatScheduler", "-l", "INFO", "-s", str(s.dir / "beat-schedule")],
                     env=child_env(s.env, {"REDIS_URL": s.url, **beat_env}), stdout=f,
                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    s.procs.append(beat)
    client = s.client()
    if not wait(lambda: client.get(CANARY) and client.exists("redbeat::lock"), 60):
        s.say(f"celery beat did not start: {log_tail(log)}")
        return False
    s.say("celery beat (RedBeat) runs the canary task every second")
    watch = s.pipeline(f"beat:\n  canary_key: {CANARY}\n  canary_max_age_seconds: 4\n  grace_seconds: 3\n")
    time.sleep(3 * s.interval)
    kill_group(beat)
    s.say("celery beat was kill -9ed")
    return bool(wait(lambda: watch.first("beat_down"), 30))


def _results(s: Stage) -> bool:
    watch = s.pipeline("thresholds:\n  results_growth_window_seconds: 8\n  results_growth_min_keys: 100\n"
                       "  backlog_growth_min_samples: 4\n")
    client, stop_at = s.client(), time.monotonic() + 40
    s.say("results stored without expiry (result_expires off): celery-task-meta-* keys pile up")
    i = 0
    while time.monotonic() < stop_at and not watch.first("results_growing"):
        client.set(f"celery-task-meta-{i}", b'{"status": "SUCCESS", "result": 5}')
        i += 1
        time.sleep(0.02)
    return bool(watch.first("results_growing"))


RUN: dict[str, Callable[[Stage], bool]] = {
    "redelivery": _redelivery, "stranded": _stranded, "eviction": _eviction, "oom": _oom,
    "beat-killed": _beat_killed, "results": _results,
}


def scenario(name: str, port: int, interval: float, alerts: IO[str], talk: IO[str],
             run: dict[str, Callable[[Stage], bool]] = RUN, broker: str = "redis") -> int:
    """Stage `name` (one of `run`'s) on `broker`; 0 when its alert came as expected, 1 when not,
    NOT_ON_BROKER (2) when the failure cannot exist on that broker (doorman/simulate/per_broker.py)."""
    if refused(name, broker, talk):
        return NOT_ON_BROKER
    with staged(port, interval, alerts, talk, broker) as s:
        ok = run[name](s)
        s.say(f"scenario {name}: " + ("the expected alert came" if ok else "the expected alert did NOT come"))
    return 0 if ok else 1
