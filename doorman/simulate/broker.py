"""The simulation's own redis-server: loopback only, no persistence, gone when we are."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from doorman.errors import SetupError, StartupFailed
from doorman.simulate.procs import log_tail, spawn, stop
from doorman.simulate.stopping import pause

INSTALL_HINT = ("redis-server is not installed: install it with `sudo apt-get install redis-server` "
                "(or `make install` in a checkout)")


def find_redis_server() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise SetupError(INSTALL_HINT)
    return path


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex((host, port)) == 0:
            return True
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed port in TIME_WAIT is free
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    def __init__(self, port: int, workdir: Path):
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisProcess:
        binary = find_redis_server()
        if port_in_use(self.port):
            raise SetupError(f"port {self.port} is already in use (another redis-server?); "
                             f"pick a free one with --port")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--daemonize", "no", "--protected-mode", "yes"]
        with open(self.log, "wb") as log:
            self.proc = spawn(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ping(self.port):
                return self
            if self.proc.poll() is not None:
                raise StartupFailed(f"redis-server on port {self.port} exited with {self.proc.returncode}: "
                                    f"{log_tail(self.log, 400)}")
            pause(0.05)
        raise StartupFailed(f"redis-server on port {self.port} did not answer within {timeout:.0f}s")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
