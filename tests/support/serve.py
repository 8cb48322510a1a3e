"""Helpers for the doorman-serve tests: contract-shaped records, and serve as a real process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import requests

from doorman.contract.tasks import QUEUE_WAIT_BUCKETS, RUNTIME_BUCKETS, WAIT_BUCKETS
from doorman.timefmt import iso
from tests.support.process import BIN, free_port

XSS = "<img src=x onerror=alert(1)>"


def snapshot(ts: float, queues: dict[str, int] | None = None, workers: list[tuple[str, bool, int]] | None = None,
             cluster: str = "default", connected: bool = True, oldest: dict[str, float] | None = None,
             unacked: int = 0, unacked_age: float | None = None) -> dict[str, Any]:
    queues = {"celery": 0} if queues is None else queues
    workers = workers or []
    oldest = oldest or {}
    return {
        "v": 1, "kind": "snapshot", "ts": iso(ts), "cluster": cluster, "broker": "redis://127.0.0.1:1/0",
        "seq": 1, "trigger": "interval", "redis_connected": connected, "error": None if connected else "refused",
        "pending_tasks": sum(queues.values()) if connected else None,
        "queues": {q: {"pending": n, "by_priority": {"0": n, "3": 0, "6": 0, "9": 0},
                       "oldest": ({"task_id": "t", "task_name": "demo.sleep", "priority": 0, "published_at": iso(ts),
                                   "age_seconds": oldest[q], "age_source": "published_header"}
                                  if q in oldest else None),
                       "heads": [], "source": "config"} for q, n in queues.items()} if connected else {},
        "alive_workers": sum(1 for w in workers if w[1]) if connected else None,
        "workers": [{"name": n, "alive": a, "responded": a, "active": act, "last_heartbeat": None,
                     "heartbeat_freq": None} for n, a, act in workers],
        "active_tasks": sum(w[2] for w in workers if w[1]) if connected else None,
        "active": [], "unacked": {"count": unacked, "oldest_delivered_at": None, "oldest_age_seconds": unacked_age,
                                  "visibility_timeout": 3600},
        "workers_subscribed": len(workers), "collect_ms": 12.5,
    }


def alert(ts: float, alert_type: str = "backlog_explosion", status: str = "firing", severity: str = "critical",
          cluster: str = "default", subject: str = "cluster", started_at: float | None = None,
          fingerprint: str = "0123456789abcdef0123456789abcdef", title: str = "Backlog") -> dict[str, Any]:
    return {"v": 1, "kind": "alert", "ts": iso(ts), "cluster": cluster, "alert_type": alert_type,
            "severity": severity, "status": status, "title": title, "message": "m", "subject": subject,
            "fingerprint": fingerprint, "details": {}, "started_at": iso(started_at if started_at else ts)}


def runtime_hist(runtimes: dict[float, int] | None = None) -> dict[str, Any]:
    """A runtime histogram with `n` runs in the bucket whose upper bound is each key (inf: +Inf)."""
    counts = [0] * (len(RUNTIME_BUCKETS) + 1)
    for bound, n in (runtimes or {}).items():
        counts[len(RUNTIME_BUCKETS) if bound == float("inf") else RUNTIME_BUCKETS.index(bound)] += n
    return {"counts": counts, "count": sum(counts), "sum": float(sum(n for n in (runtimes or {}).values()))}


def task_counts(ok: int = 0, failed: int = 0, retried: int = 0, exceptions: dict[str, int] | None = None,
                runtime: dict[float, int] | None = None) -> dict[str, Any]:
    """One `tasks.by_name` entry (contract shape)."""
    empty = {"counts": [0] * (len(QUEUE_WAIT_BUCKETS) + 1), "count": 0, "sum": 0.0}
    return {"sent": 0, "received": ok + failed, "started": ok + failed, "succeeded": ok, "failed": failed,
            "retried": retried, "rejected": 0, "revoked": 0, "exceptions": exceptions or {}, "final_failures": failed,
            "runtime": runtime_hist(runtime), "wait": dict(empty), "queue_wait": dict(empty)}


def tasks_section(by_name: dict[str, Any], since: float, events: str = "on",
                  silent: list[str] | None = None) -> dict[str, Any]:
    """A snapshot's `tasks` section (contract shape) with these per-name counts."""
    return {"events": events, "silent_workers": silent or [], "since": since,
            "reader": {"broker": "redis", "subscribed": True, "events": 0, "messages": 0, "bad": 0},
            "buckets": {"runtime": list(RUNTIME_BUCKETS), "queue_wait": list(QUEUE_WAIT_BUCKETS),
                        "wait": list(WAIT_BUCKETS)},
            "by_name": by_name, "by_queue": {}, "by_worker": {}, "series": [],
            "lost": {"unsubscribed_seconds": 0.0, "gaps": 0, "by_worker": {}, "total": 0},
            "omitted": {"names": 0, "hostnames": 0, "queues": 0, "series": 0, "exceptions": 0}}


def lines(*records: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


class Serve:
    """`doorman-serve` as a user runs it, on a free loopback port."""

    def __init__(self, tmp: Path, *files: str, args: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 stdin: Any = subprocess.DEVNULL):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = tmp / f"serve-{self.port}.err"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DOORMAN_", "CHECK_INTERVAL"))}
        base.update({"XDG_STATE_HOME": str(tmp / "xdg"), "DOORMAN_CONFIG": ""})
        base.update(env or {})
        argv = [str(BIN / "doorman-serve"), "--listen", f"127.0.0.1:{self.port}", *args, *files]
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=open(self.stderr_path, "wb"), env=base)

    def wait_up(self, timeout: float = 15) -> Serve:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"doorman-serve exited {self.proc.returncode}: {self.stderr}")
            try:
                requests.get(self.url + "/livez", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"doorman-serve did not answer: {self.stderr}")

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=5, **kw)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
