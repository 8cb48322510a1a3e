"""`/metrics`: the state as Prometheus series, built by prometheus_client at each scrape.

Names follow celery-exporter where the meaning is the same (its Grafana dashboards 17508/17509
and alerting rules keep working); the rest are `doorman_*` in base units. Every series carries
`cluster`. The registry is our own, without the process/platform collectors, so nothing without
`cluster` (and nothing about the host) is exposed.

A scrape must stay cheap with thousands of series (prometheus_client spends ~10 µs a sample), so
everything but the snapshots' age is rendered once per change of the state, by `Exposition.refresh`
(called from a thread of its own), and a scrape adds only the age, rendered then. The task series
can make the text ~10 MB; it is gzipped once per change too, and Prometheus (which asks for gzip)
gets that: two gzip members, the cached one and the age's, which gzip readers join.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from doorman.serve.state import ClusterState, State
from doorman.serve.task_text import render_tasks
from doorman.serve.tasks import exporter_hostname
from doorman.textsafe import printable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _g(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["cluster", *labels])


def label(value: str) -> str:
    """A label value from broker data, safe in the exposition: prometheus_client escapes only `\\`,
    `"` and a newline, so every other control byte (ESC, BEL, NUL, C1...) is written as the text
    `\\xNN` (`doorman.textsafe.printable`, as in every human output; docs/serve.md)."""
    return printable(value)


class StateCollector(Collector):
    def __init__(self, state: State, clock: Callable[[], float]):
        self.state, self.clock = state, clock

    def collect(self) -> Iterator[Metric]:
        qlen = _g("celery_queue_length", "Tasks waiting in the queue, every priority list included.", ["queue_name"])
        consumers = _g("celery_active_consumer_count", "The broker's count of the queue's consumers (RabbitMQ).",
                       ["queue_name"])
        wcount = _g("celery_active_worker_count", "Live workers whose active_queues list the queue.", ["queue_name"])
        procs = _g("celery_active_process_count", "Pool processes (concurrency) of the live workers consuming "
                   "the queue.", ["queue_name"])
        up = _g("celery_worker_up", "1 if a worker of the host is alive; 0 until worker_down_keep_seconds after it "
                "went away.", ["hostname"])
        wactive = _g("celery_worker_tasks_active", "Tasks the host's live workers are running.", ["hostname"])
        oldest = _g("doorman_queue_oldest_age_seconds", "Age of the message that has waited longest.",
                    ["queue_name"])
        prio = _g("doorman_queue_pending_by_priority", "Tasks waiting, per kombu priority step.",
                  ["queue_name", "priority"])
        broker = _g("doorman_broker_up", "1 if the broker answered the newest check.", [])
        collect = _g("doorman_collect_duration_seconds", "How long the newest check took.", [])
        pending = _g("doorman_pending_tasks", "Tasks waiting over all queues.", [])
        alive = _g("doorman_workers_alive", "Workers alive at the newest check.", [])
        known = _g("doorman_workers_known", "Workers known (alive, or gone and not yet expired).", [])
        active = _g("doorman_active_tasks", "Tasks running over all workers.", [])
        unacked = _g("doorman_unacked_tasks", "Messages delivered to workers but not acknowledged.", [])
        unacked_age = _g("doorman_unacked_oldest_age_seconds", "Age of the oldest unacknowledged message.", [])
        omitted = _g("doorman_series_omitted", "Distinct keys left out or summed under (other) by the cardinality "
                     "caps.", ["what"])
        firing = _g("doorman_alerts_firing", "Alerts firing now.", ["alert_type", "severity"])
        emitted = CounterMetricFamily("doorman_alerts_emitted", "Alert lines read (firing and resolved).",
                                      labels=["cluster", "alert_type", "severity", "status"])
        with self.state.lock:
            for cl_raw, c in self.state.clusters.items():
                cl = label(cl_raw)
                per_queue = _per_queue(c, self.state.limits.max_queues)
                for qn_raw, q in c.queues.items():
                    qn = label(qn_raw)
                    qlen.add_metric([cl, qn], q.pending)
                    if c.rabbitmq and q.consumers is not None:
                        consumers.add_metric([cl, qn], q.consumers)
                    if q.oldest_age is not None:
                        oldest.add_metric([cl, qn], q.oldest_age)
                    for p, n in q.by_priority.items():
                        prio.add_metric([cl, qn, label(p)], n)
                for qn_raw, (nw, np) in per_queue.items():
                    wcount.add_metric([cl, label(qn_raw)], nw)
                    procs.add_metric([cl, label(qn_raw)], np)
                for host, (is_up, running) in _per_host(c).items():
                    up.add_metric([cl, label(host)], is_up)
                    if running is not None:
                        wactive.add_metric([cl, label(host)], running)
                broker.add_metric([cl], 1 if c.broker_up else 0)
                if c.collect_seconds is not None:
                    collect.add_metric([cl], c.collect_seconds)
                for fam, value in ((pending, c.pending), (alive, c.workers_alive), (active, c.active),
                                   (unacked, c.unacked), (unacked_age, c.unacked_oldest_age)):
                    if value is not None:
                        fam.add_metric([cl], value)
                known.add_metric([cl], len(c.workers) + c.workers_omitted)
                omitted.add_metric([cl, "queues"], c.queues_omitted)
                omitted.add_metric([cl, "workers"], c.workers_omitted)
                if c.tasks is not None:
                    for what, n in sorted(c.tasks.omitted.items()):
                        omitted.add_metric([cl, f"task_{what}"], n)
                    for what, n in sorted(c.tasks.collect_omitted.items()):
                        omitted.add_metric([cl, f"collect_task_{what}"], n)
                counts: dict[tuple[str, str], int] = {}
                for f in c.firing.values():
                    counts[(f.alert_type, f.severity)] = counts.get((f.alert_type, f.severity), 0) + 1
                for (atype, sev, _status) in c.emitted:  # a type that fired once shows 0 once resolved
                    counts.setdefault((atype, sev), 0)
                for (atype, sev), n in sorted(counts.items()):
                    firing.add_metric([cl, label(atype), sev], n)
                for (atype, sev, status), n in sorted(c.emitted.items()):
                    emitted.add_metric([cl, label(atype), sev, status], n)
        yield from (qlen, consumers, wcount, procs, up, wactive, oldest, prio, broker, collect, pending, alive, known,
                    active, unacked, unacked_age, omitted, firing, emitted)


def _per_host(c: ClusterState) -> dict[str, tuple[int, int | None]]:
    """celery-exporter's worker series are per host (`celery@web-1` -> `web-1`): up if any of its
    workers is, tasks active summed over its live workers."""
    out: dict[str, tuple[int, int | None]] = {}
    for wn, w in c.workers.items():
        host = exporter_hostname(wn)
        is_up, running = out.get(host, (0, None))
        if w.alive:
            is_up = 1
            if w.active is not None:
                running = (running or 0) + w.active
        out[host] = (is_up, running)
    return out


def _per_queue(c: ClusterState, cap: int) -> dict[str, tuple[int, int]]:
    """(live workers whose active_queues list the queue, their pool processes) for every queue the
    snapshot has, and the queues live workers consume beside them (up to `cap` queues in all)."""
    out: dict[str, tuple[int, int]] = {qn: (0, 0) for qn in c.queues}
    for w in c.workers.values():
        if not w.alive:
            continue
        for qn in w.queues:
            if qn not in out and len(out) >= cap:
                continue
            nw, np = out.get(qn, (0, 0))
            out[qn] = (nw + 1, np + (w.concurrency or 0))
    return out


class AgeCollector(Collector):
    """The one figure that changes between snapshots: how old the newest one is now."""

    def __init__(self, state: State, clock: Callable[[], float]):
        self.state, self.clock = state, clock

    def collect(self) -> Iterator[Metric]:
        age = _g("doorman_snapshot_age_seconds", "Seconds since the newest snapshot was taken.", [])
        now = self.clock()
        with self.state.lock:
            for cl, c in self.state.clusters.items():
                age.add_metric([label(cl)], max(0.0, now - c.ts))
        yield age


class Exposition:
    """The text for /metrics: the state's series rendered once per change, plus the age per scrape."""

    def __init__(self, state: State, clock: Callable[[], float]):
        self.state = state
        self.static = CollectorRegistry(auto_describe=False)
        self.static.register(StateCollector(state, clock))
        self.dynamic = CollectorRegistry(auto_describe=False)
        self.dynamic.register(AgeCollector(state, clock))
        self.lock = threading.Lock()
        self.version = -1
        self.text = b""
        self.gz = b""
        self.read = True  # the text rendered last was served to a scrape (newborn task series: task_text)

    def refresh(self) -> None:
        """Render the state's series again if it changed since the last time."""
        with self.lock:
            version = self.state.version
            if version != self.version:
                with self.state.lock:
                    tasks = render_tasks(self.state, self.read)
                self.read = False
                self.text = generate_latest(self.static) + tasks
                self.gz = gzip.compress(self.text, compresslevel=1, mtime=0)
                self.version = version

    def render(self) -> bytes:
        if self.version < 0:
            self.refresh()
        self.read = True
        return self.text + generate_latest(self.dynamic)

    def render_gzip(self) -> bytes:
        if self.version < 0:
            self.refresh()
        self.read = True
        return self.gz + gzip.compress(generate_latest(self.dynamic), compresslevel=1, mtime=0)


def exposition_maker(state: State, clock: Callable[[], float]) -> Callable[[], bytes]:
    """Render on every call (tests, promtool); serve itself keeps an `Exposition` fresh in a thread."""
    exp = Exposition(state, clock)

    def render() -> bytes:
        exp.refresh()
        return exp.render()

    return render
