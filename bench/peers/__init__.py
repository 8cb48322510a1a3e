"""The peers Doorman is measured against, each from its own virtualenv made by `make bench-peers`.

Flower (`.venv-flower`) and danihodovic's celery-exporter (`.venv-exporter`, PyPI
`prometheus-exporter-celery`). Both listen on 127.0.0.1 only, run in their own process group and
are always stopped by `stop()`. A peer that is not installed is reported with the reason, never
silently left out.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tests.support.process import ROOT, free_port

VENVS = {"flower": ROOT / ".venv-flower", "exporter": ROOT / ".venv-exporter"}


def installed(peer: str) -> tuple[bool, str]:
    """(usable, version or the reason it is not)."""
    venv = VENVS[peer]
    if (venv / ".installed").exists():
        return True, (venv / ".installed").read_text().strip()
    if (venv / ".failed").exists():
        return False, "install failed: " + (venv / ".failed").read_text().strip()
    return False, f"not installed ({venv.name} missing): run `make bench-peers`"


def rss_mib(pid: int) -> float | None:
    """A process's resident memory now (MiB), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Peer:
    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str] | None = None):
        self.name, self.port = name, port
        self.log = tempfile.NamedTemporaryFile(prefix=f"doorman-bench-{name}-", suffix=".log", delete=False)
        self.cwd = tempfile.mkdtemp(prefix=f"doorman-bench-{name}-")
        self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=self.cwd,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, timeout: float = 60) -> Peer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if requests.get(self.base() + path, timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-1500:]

    def rss_mib(self) -> float | None:
        return rss_mib(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                self.proc.wait()
        self.log.close()


def start_flower(broker_url: str, broker_api: str | None = None) -> Peer:
    """Flower with its API open (no auth), on the broker only: no app module needed. On RabbitMQ,
    `broker_api` is the management API Flower reads queue lengths from (`--broker_api`)."""
    port = free_port()
    argv = [str(VENVS["flower"] / "bin" / "celery"), f"--broker={broker_url}", "flower",
            "--address=127.0.0.1", f"--port={port}", *([f"--broker_api={broker_api}"] if broker_api else [])]
    return Peer("flower", argv, port, {"FLOWER_UNAUTHENTICATED_API": "true"}).wait_ready("/api/workers?status=1")


def flower_workers(peer: Peer) -> dict[str, bool]:
    """`/api/workers?status=1`: {worker name: online}."""
    return requests.get(peer.base() + "/api/workers?status=1", timeout=10).json()


def flower_queue_lengths(peer: Peer) -> dict[str, int | None]:
    """`/api/queues/length`: {queue: messages}. On RabbitMQ each entry is the management API's queue
    object, which has no `messages` until the broker's first statistics emission for the queue (None)."""
    data = requests.get(peer.base() + "/api/queues/length", timeout=10).json()
    return {q["name"]: q.get("messages") for q in data.get("active_queues", [])}


EXPORTER_MAIN = 'from src.cli import cli; cli(auto_envvar_prefix="CE")'


def start_exporter(broker_url: str, queues: list[str]) -> Peer:
    """The exporter has no console script; its wheel installs a top-level package named `src`."""
    port = free_port()
    argv = [str(VENVS["exporter"] / "bin" / "python"), "-c", EXPORTER_MAIN, f"--broker-url={broker_url}",
            "--host", "127.0.0.1", "--port", str(port), "-Q", ",".join(queues)]
    return Peer("exporter", argv, port).wait_ready("/metrics")


SAMPLE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)$')


def exporter_metrics(peer: Peer) -> dict[tuple[str, str], float]:
    """One scrape: {(metric, 'label="v",…'): value}. A scrape takes ~2 s (two 1 s inspect broadcasts)."""
    text = requests.get(peer.base() + "/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def exporter_value(metrics: dict[tuple[str, str], float], metric: str, label: str, value: str) -> float | None:
    for (name, labels), v in metrics.items():
        if name == metric and f'{label}="{value}"' in labels:
            return v
    return None
