"""The real commands as a user runs them, and the machine they run on: the checkout and the
virtualenv's bin/, free loopback ports, programs the suite needs (missing = a loud failure, never a
skip), waiting for a condition with a deadline."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from doorman.simulate.lost_tasks import wait

ROOT = Path(__file__).resolve().parent.parent.parent
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
