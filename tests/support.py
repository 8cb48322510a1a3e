"""Real parts for the tests: a redis-server on a free loopback port, real Celery workers, the real CLIs.

Nothing here fakes anything. A missing `redis-server` fails the run loudly (it is never a skip).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from doorman.brokers.redis.keys import Keys
from doorman.brokers.redis.pidbox import listening
from doorman.simulate.lost_tasks import wait

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


_ports = random.Random()  # its own generator: the global one is hypothesis's to watch


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port on 127.0.0.1 below the kernel's ephemeral range. A port from `bind(0)` is an
    ephemeral one: while a server on it is down between restarts, any client still connecting
    there (a worker, collect, a watch) can be given it as its own source port and connect to
    itself, and the server cannot start again."""
    low = _ephemeral_low()
    for _ in range(100):
        port = _ports.randrange(10000, low) if low > 11000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port on 127.0.0.1 below the ephemeral range")


def require(binary: str, package: str) -> str:
    """The path of a program the suite runs for real; missing, the test fails (never skips)."""
    path = shutil.which(binary)
    if not path:
        pytest.fail(f"{binary} is not installed: run `make install` (installs the Debian package "
                    f"{package}). Tests never skip for a missing server.", pytrace=False)
    return path


def require_redis_server() -> str:
    return require("redis-server", "redis-server")


class RedisServer:
    """A throw-away redis-server the test owns: it can be stopped, killed, paused and restarted."""

    def __init__(self, password: str | None = None, extra: list[str] | None = None):
        self.binary = require_redis_server()
        self.port = free_port()
        self.password = password
        self.extra = extra or []
        self.dir = tempfile.mkdtemp(prefix="doorman-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no", *self.extra]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.client().ping()
                return self
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def client(self, **kw: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kw)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Worker:
    """A real `celery worker` process running `doorman.demoapp`."""

    def __init__(self, url: str, name: str, concurrency: int = 1, pool: str = "prefork",
                 queues: str | None = None, env: dict[str, str] | None = None):
        self.url, self.name = url, name
        args = [str(BIN / "celery"), "-A", "doorman.demoapp", "worker", "-n", name, "-c", str(concurrency),
                "--pool", pool, "-l", "WARNING", "--without-mingle"]
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


def cli(name: str, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one of the installed commands as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_BROKER"))}
    full_env.update(env or {})
    return subprocess.run([str(BIN / name), *args], input=input, capture_output=True, env=full_env,
                          timeout=timeout)


def records(out: bytes) -> list[dict]:
    """Every stdout line must be one JSON object."""
    return [orjson.loads(line) for line in out.splitlines()]


def collect_once(url: str | None, *args: str, env: dict[str, str] | None = None) -> dict:
    """`doorman-collect --once [--redis-url URL] ARGS`: exit 0 and exactly one snapshot, returned."""
    url_args = ["--redis-url", url] if url else []
    result = cli("doorman-collect", "--once", *url_args, *args, env=env)
    assert result.returncode == 0, result.stderr
    [snap] = records(result.stdout)
    return snap


def collect_with_config(cfg: Path, mode: int) -> subprocess.CompletedProcess:
    """`doorman-collect --once --config CFG`, the file's permissions set to `mode` first."""
    cfg.chmod(mode)
    return cli("doorman-collect", "--once", "--config", str(cfg))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until `predicate()` is truthy; return its value. Fails the test after `timeout` s."""
    value = wait(predicate, timeout)
    if value:
        return value
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# A child's ru_maxrss counts the memory it had before exec, i.e. the forking parent's. So a
# measured command is forked from this minimal launcher (`python3 -S -c LAUNCHER_RSS cmd args…`,
# ~8 MiB), never from the test process. The command's own stdout passes through; the launcher
# then prints "<wall seconds> <peak RSS MiB> <exit code>" as the last line (or, with
# DOORMAN_LAUNCHER_QUIET=1, silences the command's output).
LAUNCHER_RSS = """
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    if os.environ.get("DOORMAN_LAUNCHER_QUIET") == "1":
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stdout.flush()
print(time.perf_counter() - t, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))
"""
