"""What serve knows now: per cluster, the newest snapshot's figures and the alerts firing.

Broker data is hostile, so everything here is bounded: clusters, queues and workers per cluster
(the caps in `Limits`), alert kinds, and every name's length. Queues over the cap keep the ones
with the most pending tasks; workers over the cap keep the alive ones first. A worker that is no
longer alive keeps its series (`celery_worker_up 0`) for `worker_expiry` seconds of snapshot time
after it was last seen alive, then loses them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from doorman.contract.alert import Alert
from doorman.contract.snapshot import Snapshot
from doorman.serve.task_history import TaskSummary, summary
from doorman.serve.tasks import TaskCaps, TaskTable
from doorman.timefmt import parse_iso

MAX_NAME = 200  # characters of a queue, worker, subject or cluster name kept


@dataclass(frozen=True)
class Limits:
    max_clusters: int = 32
    max_queues: int = 1000  # per cluster
    max_workers: int = 1000  # per cluster
    worker_expiry: float = 1800.0  # seconds after a worker was last seen alive (> CeleryWorkerDown's `for: 15m`)
    max_firing: int = 1000  # alerts firing per cluster
    max_alert_kinds: int = 100  # (alert_type, severity, status) counters per cluster
    tasks: TaskCaps = TaskCaps()  # the celery_task_* series per cluster (doorman.serve.tasks)


def name(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return text[:MAX_NAME]


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else (hostile shapes read as "nothing")."""
    return value if isinstance(value, dict) else {}


def num(value: Any) -> float | None:
    """A finite number, or None (NaN, strings, booleans are not figures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


@dataclass
class QueueView:
    pending: int
    by_priority: dict[str, int]
    oldest_age: float | None
    consumers: int | None


@dataclass
class WorkerView:
    alive: bool
    active: int | None
    last_alive: float  # snapshot time it was last alive (or first seen)
    queues: tuple[str, ...] = ()  # its active_queues, when it said
    concurrency: int | None = None  # its pool size


@dataclass
class Firing:
    alert_type: str
    severity: str
    subject: str
    title: str
    started_at: float


@dataclass
class ClusterState:
    ts: float = 0.0
    broker_up: bool = False
    error: str | None = None
    pending: int | None = None
    workers_alive: int | None = None
    active: int | None = None
    unacked: int | None = None
    unacked_oldest_age: float | None = None
    collect_seconds: float | None = None
    queues: dict[str, QueueView] = field(default_factory=dict)
    queues_omitted: int = 0
    workers: dict[str, WorkerView] = field(default_factory=dict)
    workers_omitted: int = 0
    firing: dict[str, Firing] = field(default_factory=dict)
    emitted: dict[tuple[str, str, str], int] = field(default_factory=dict)
    rabbitmq: bool = False  # the broker counts a queue's consumers itself (celery_active_consumer_count)
    tasks: TaskTable | None = None  # None until a snapshot carries a `tasks` section
    task_summary: TaskSummary | None = None  # the newest snapshot's task table (None: it had no `tasks`)

    @property
    def oldest_age(self) -> float | None:
        ages = [q.oldest_age for q in self.queues.values() if q.oldest_age is not None]
        return max(ages) if ages else None


def _queues(raw: Any, cap: int) -> tuple[dict[str, QueueView], int]:
    if not isinstance(raw, dict):
        return {}, 0
    views: dict[str, QueueView] = {}
    for qn, q in raw.items():
        if not isinstance(q, dict):
            continue
        pending = q.get("pending")
        by_prio = as_dict(q.get("by_priority"))
        oldest = as_dict(q.get("oldest"))
        consumers = q.get("consumers")
        views[name(qn)] = QueueView(
            pending=pending if isinstance(pending, int) and not isinstance(pending, bool) else 0,
            by_priority={name(p)[:8]: int(n) for p, n in list(by_prio.items())[:16]
                         if isinstance(n, int) and not isinstance(n, bool)},
            oldest_age=num(oldest.get("age_seconds")),
            consumers=consumers if isinstance(consumers, int) and not isinstance(consumers, bool) else None,
        )
    if len(views) <= cap:
        return views, 0
    keep = sorted(views, key=lambda k: (-views[k].pending, k))[:cap]
    return {k: views[k] for k in sorted(keep)}, len(views) - cap


class State:
    """Thread-safe: the reader thread calls `snapshot`/`alert`; HTTP threads read `view()`."""

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits()
        self.lock = threading.Lock()
        self.clusters: dict[str, ClusterState] = {}
        self.clusters_refused: set[str] = set()
        self.version = 0  # +1 on every change, so /metrics re-renders only then

    def _cluster(self, cluster: str) -> ClusterState | None:
        c = self.clusters.get(cluster)
        if c is None:
            if len(self.clusters) >= self.limits.max_clusters:
                if len(self.clusters_refused) < 1000:
                    self.clusters_refused.add(cluster)
                return None
            c = self.clusters[cluster] = ClusterState()
        return c

    def snapshot(self, snap: Snapshot) -> bool:
        """Take in a valid snapshot; an older one than the newest seen only updates nothing."""
        ts = parse_iso(snap["ts"])
        cluster = name(snap.get("cluster") or "default")
        lim = self.limits
        queues, omitted = _queues(snap.get("queues"), lim.max_queues)
        unacked = as_dict(snap.get("unacked"))
        task_summary = summary(snap.get("tasks"))
        with self.lock:
            c = self._cluster(cluster)
            if c is None or ts < c.ts:
                return False
            c.ts = ts
            c.broker_up = bool(snap.get("redis_connected"))
            c.error = name(snap["error"]) if isinstance(snap.get("error"), str) else None
            c.pending = snap.get("pending_tasks")
            c.workers_alive = snap.get("alive_workers")
            active = snap.get("active_tasks")
            c.active = active if isinstance(active, int) and not isinstance(active, bool) else None
            count = unacked.get("count")
            c.unacked = count if isinstance(count, int) and not isinstance(count, bool) else None
            c.unacked_oldest_age = num(unacked.get("oldest_age_seconds"))
            ms = num(snap.get("collect_ms"))
            c.collect_seconds = ms / 1000 if ms is not None else None
            c.queues, c.queues_omitted = queues, omitted
            self._workers(c, snap.get("workers"), ts)
            c.rabbitmq = _is_rabbitmq(snap)
            c.task_summary = task_summary
            tasks = snap.get("tasks")
            if isinstance(tasks, dict):  # null (events not read): the last totals stand
                if c.tasks is None:
                    c.tasks = TaskTable(lim.tasks)
                c.tasks.update(tasks)
            self.version += 1
        return True

    def _workers(self, c: ClusterState, raw: Any, ts: float) -> None:
        seen: set[str] = set()
        for w in raw if isinstance(raw, list) else ():
            if not isinstance(w, dict) or w.get("name") is None:
                continue
            wn = name(w["name"])
            seen.add(wn)
            alive = w.get("alive") is True
            active = w.get("active")
            active = active if isinstance(active, int) and not isinstance(active, bool) else None
            old = c.workers.get(wn)
            last_alive = ts if alive or old is None else old.last_alive
            queues = w.get("queues")
            conc = w.get("concurrency")
            c.workers[wn] = WorkerView(alive, active if alive else None, last_alive,
                                       tuple(name(q) for q in queues[:100]) if isinstance(queues, list) else (),
                                       conc if type(conc) is int and conc >= 0 else None)
        for wn, view in list(c.workers.items()):
            if wn not in seen and view.alive:
                c.workers[wn] = WorkerView(False, None, view.last_alive, view.queues, view.concurrency)
            if not c.workers[wn].alive and ts - c.workers[wn].last_alive > self.limits.worker_expiry:
                del c.workers[wn]
        cap = self.limits.max_workers
        if len(c.workers) > cap:
            keep = sorted(c.workers, key=lambda k: (not c.workers[k].alive, -c.workers[k].last_alive, k))[:cap]
            c.workers_omitted = len(c.workers) - cap
            c.workers = {k: c.workers[k] for k in keep}
        else:
            c.workers_omitted = 0

    def alert(self, alert: Alert) -> bool:
        cluster = name(alert.get("cluster") or "default")
        atype, sev, status = name(alert["alert_type"])[:64], alert["severity"], alert["status"]
        with self.lock:
            c = self._cluster(cluster)
            if c is None:
                return False
            self.version += 1
            key = (atype, sev, status)
            if key in c.emitted or len(c.emitted) < self.limits.max_alert_kinds:
                c.emitted[key] = c.emitted.get(key, 0) + 1
            fp = name(alert["fingerprint"])[:64]
            if status == "resolved":
                c.firing.pop(fp, None)
            elif fp in c.firing or len(c.firing) < self.limits.max_firing:
                started = alert.get("started_at")
                try:
                    start = parse_iso(started) if isinstance(started, str) else parse_iso(alert["ts"])
                except (ValueError, OverflowError, OSError):
                    start = parse_iso(alert["ts"])
                c.firing[fp] = Firing(atype, sev, name(alert.get("subject") or ""),
                                      name(alert.get("title") or ""), start)
        return True


def _is_rabbitmq(snap: Mapping[str, Any]) -> bool:
    broker = snap.get("broker")
    if isinstance(broker, str) and broker.startswith(("amqp", "pyamqp")):
        return True
    health = snap.get("broker_health")
    return isinstance(health, dict) and health.get("server") == "rabbitmq"

