"""Crafted `tasks` sections (the schema of tasks-schema / doorman.contract.tasks) and a known workload.

The workload is written out by hand, row by row, so that what the tests expect is not computed by
the code under test.
"""

from __future__ import annotations

import csv
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from doorman.contract.tasks import OUTCOMES, QUEUE_WAIT_BUCKETS, RUNTIME_BUCKETS
from tests.support.process import free_port, require
from tests.support.serve import snapshot

MIXIN = __import__("pathlib").Path(__file__).parents[1] / "data" / "celery-mixin"


@dataclass
class WRow:
    name: str
    node: str  # Celery's node name, as events carry it
    queue: str
    counts: dict[str, int]
    exceptions: dict[str, int] = field(default_factory=dict)
    runtimes: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)


def hist(values: list[float], bounds: tuple[float, ...]) -> dict[str, Any]:
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[next((i for i, b in enumerate(bounds) if v <= b), len(bounds))] += 1
    return {"counts": counts, "count": len(values), "sum": sum(values)}


def series_row(r: WRow, zero: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {k: 0 if zero else r.counts.get(k, 0) for k in OUTCOMES}
    row.update(name=r.name, hostname=r.node, queue=r.queue,
               exceptions={c: 0 if zero else n for c, n in r.exceptions.items()},
               runtime=hist([] if zero else r.runtimes, RUNTIME_BUCKETS),
               queue_wait=hist([] if zero else r.waits, QUEUE_WAIT_BUCKETS))
    return row


def tasks_section(rows: list[WRow], since: float, zero: bool = False, **extra: Any) -> dict[str, Any]:
    return {"events": "on", "silent_workers": [], "since": since,
            "reader": {"broker": "redis", "subscribed": True, "events": 0, "messages": 0, "bad": 0},
            "buckets": {"runtime": list(RUNTIME_BUCKETS), "queue_wait": list(QUEUE_WAIT_BUCKETS),
                        "wait": list(QUEUE_WAIT_BUCKETS)},
            "by_name": {}, "by_queue": {}, "by_worker": {},
            "series": [series_row(r, zero) for r in rows],
            "lost": {"unsubscribed_seconds": 0.0, "gaps": 0, "by_worker": {}, "total": 0},
            "omitted": {"names": 0, "hostnames": 0, "queues": 0, "series": 0, "exceptions": 0}, **extra}


# The known mix: successes, failures of two exception classes (one task, and only it, fails > 5%),
# retries, revocations, a rejection; sends counted on the publisher's host; two workers on w1/w2,
# a third (w3) gone.
WORKLOAD = [
    WRow("demo.add", "gen1@web-1", "celery", {"sent": 15}),
    WRow("demo.fail", "gen1@web-1", "celery", {"sent": 6}),
    WRow("demo.flaky", "gen1@web-1", "other", {"sent": 5}),
    WRow("demo.add", "celery@w1", "celery", {"received": 10, "started": 10, "succeeded": 10},
         runtimes=[0.02] * 9 + [0.3], waits=[0.07] * 10),
    WRow("demo.add", "celery@w2", "celery", {"received": 5, "started": 5, "succeeded": 5},
         runtimes=[0.04] * 5, waits=[0.2] * 5),
    WRow("demo.fail", "celery@w1", "celery", {"received": 6, "started": 6, "failed": 6},
         exceptions={"ValueError": 4, "KeyError": 2}),
    WRow("demo.flaky", "celery@w2", "other",
         {"received": 5, "started": 4, "retried": 2, "succeeded": 2, "revoked": 1, "rejected": 1},
         runtimes=[1.5, 3.0]),
]
SINCE_AGO = 3600.0
QUEUES = {"celery": 150, "other": 0}  # over CeleryHighQueueLength's 100
WORKERS = [("celery@w1", True, 1), ("celery@w2", True, 0), ("celery@w3", False, 0)]
WORKER_QUEUES = {"celery@w1": (["celery"], 4), "celery@w2": (["celery", "other"], 2), "celery@w3": (["celery"], 8)}


def workload_snapshot(ts: float, since: float, zero: bool = False, rows: list[WRow] | None = None,
                      cluster: str = "default") -> dict[str, Any]:
    snap = snapshot(ts, dict(QUEUES), list(WORKERS), cluster=cluster)
    for w in snap["workers"]:
        w["queues"], w["concurrency"] = WORKER_QUEUES[w["name"]]
    snap["tasks"] = tasks_section(WORKLOAD if rows is None else rows, since, zero)
    return snap


def expected_counters() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(series name, sorted labels) -> value, by hand from WORKLOAD: celery-exporter's labels
    (hostname after '@'), `failed` split by exception with the pre-zeroed `exception=""`."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for r in WORKLOAD:
        host = r.node.split("@", 1)[1]
        base = {"cluster": "default", "name": r.name, "hostname": host, "queue_name": r.queue}
        sent_only = set(r.counts) == {"sent"}
        for k in OUTCOMES:
            if (k == "sent") != sent_only and not (k == "sent" and r.counts.get("sent")):
                continue
            if k == "failed":
                for exc, n in {"": 0, **r.exceptions}.items():
                    out[(f"celery_task_{k}_total", tuple(sorted({**base, "exception": exc}.items())))] = n
            else:
                out[(f"celery_task_{k}_total", tuple(sorted(base.items())))] = r.counts.get(k, 0)
    return out


# promtool's lint notes that celery-exporter's own names draw (its `*_count` gauges, and the
# `_created` samples prometheus_client writes beside counters and histograms without a HELP line)
EXPORTER_LINT = re.compile(r'^(celery_active_\w+_count non-histogram and non-summary metrics should not have '
                           r'"_count" suffix|celery_task_\w+_created no help text)$')


def promtool_problems(promtool: str, text: str) -> list[str]:
    """What `promtool check metrics` says of `text`, but the exporter names' own lint notes."""
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    said = [line for line in (r.stdout + r.stderr).decode().splitlines() if line.strip()]
    problems = [line for line in said if not EXPORTER_LINT.match(line)]
    if r.returncode not in (0, 3) and not problems:  # 3: lint notes only; anything else is an error
        problems.append(f"promtool exited {r.returncode}")
    return problems


JOB = "celery"  # the documented job name: matches the mixin's job=~".*celery.*" and the legacy dashboard's
FILL = {"$cluster": "default", "$namespace": "", "$job": JOB, "$queue_name": ".*", "$task": ".*",
        "$__rate_interval": "10m", "$__range": "1h"}


def fill(expr: str) -> str:
    for var, value in sorted(FILL.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


def queries() -> list[dict[str, str]]:
    return [r for r in csv.DictReader((MIXIN / "queries.tsv").open(), delimiter="\t") if r["expr"].strip()
            and r["kind"] != "recording-rule"]


class Prometheus:
    def __init__(self, tmp: Path, target: str, rule_files: list[Path] = ()):  # type: ignore[assignment]
        self.port = free_port()
        config = tmp / "prometheus.yml"
        rules = "".join(f"  - '{p}'\n" for p in rule_files)
        config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                          + (f"rule_files:\n{rules}" if rule_files else "")
                          + f"scrape_configs:\n  - job_name: {JOB}\n    static_configs: [{{targets: ['{target}']}}]\n")
        self.proc = subprocess.Popen([require("prometheus", "prometheus"), f"--config.file={config}",
                                      f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                                     stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.err", "wb"))
        self.api = f"http://127.0.0.1:{self.port}/api/v1"

    def get(self, path: str, **params: Any) -> Any:
        try:
            r = requests.get(f"{self.api}/{path}", params=params, timeout=10)
        except requests.ConnectionError:
            return None
        return r.json()["data"] if r.ok else None

    def query(self, q: str, at: float | None = None) -> list[dict[str, Any]]:
        data = self.get("query", query=q, **({"time": at} if at is not None else {}))
        return data["result"] if data else []

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
