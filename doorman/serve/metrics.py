"""`/metrics`: the state as Prometheus series, built by prometheus_client at each scrape.

Names follow celery-exporter where the meaning is the same (its Grafana dashboards 17508/17509
and alerting rules keep working); the rest are `doorman_*` in base units. Every series carries
`cluster`. The registry is our own, without the process/platform collectors, so nothing without
`cluster` (and nothing about the host) is exposed.

A scrape must stay cheap with thousands of series (prometheus_client spends ~10 µs a sample), so
everything but the snapshots' age is rendered once per change of the state, by `Exposition.refresh`
(called from a thread of its own), and a scrape adds only the age, rendered then.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from doorman.serve.state import State
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
        consumers = _g("celery_active_worker_count", "Live consumers of the queue (when the broker tells).",
                       ["queue_name"])
        up = _g("celery_worker_up", "1 if the worker is alive; 0 until it expires after going away.", ["hostname"])
        wactive = _g("celery_worker_tasks_active", "Tasks the worker is running.", ["hostname"])
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
        omitted = _g("doorman_series_omitted", "Queues or workers left out by serve's cardinality caps.", ["what"])
        firing = _g("doorman_alerts_firing", "Alerts firing now.", ["alert_type", "severity"])
        emitted = CounterMetricFamily("doorman_alerts_emitted", "Alert lines read (firing and resolved).",
                                      labels=["cluster", "alert_type", "severity", "status"])
        with self.state.lock:
            for cl_raw, c in self.state.clusters.items():
                cl = label(cl_raw)
                for qn_raw, q in c.queues.items():
                    qn = label(qn_raw)
                    qlen.add_metric([cl, qn], q.pending)
                    if q.consumers is not None:
                        consumers.add_metric([cl, qn], q.consumers)
                    if q.oldest_age is not None:
                        oldest.add_metric([cl, qn], q.oldest_age)
                    for p, n in q.by_priority.items():
                        prio.add_metric([cl, qn, label(p)], n)
                for wn_raw, w in c.workers.items():
                    wn = label(wn_raw)
                    up.add_metric([cl, wn], 1 if w.alive else 0)
                    if w.active is not None:
                        wactive.add_metric([cl, wn], w.active)
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
                counts: dict[tuple[str, str], int] = {}
                for f in c.firing.values():
                    counts[(f.alert_type, f.severity)] = counts.get((f.alert_type, f.severity), 0) + 1
                for (atype, sev, _status) in c.emitted:  # a type that fired once shows 0 once resolved
                    counts.setdefault((atype, sev), 0)
                for (atype, sev), n in sorted(counts.items()):
                    firing.add_metric([cl, label(atype), sev], n)
                for (atype, sev, status), n in sorted(c.emitted.items()):
                    emitted.add_metric([cl, label(atype), sev, status], n)
        yield from (qlen, consumers, up, wactive, oldest, prio, broker, collect, pending, alive, known,
                    active, unacked, unacked_age, omitted, firing, emitted)


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

    def refresh(self) -> None:
        """Render the state's series again if it changed since the last time."""
        with self.lock:
            version = self.state.version
            if version != self.version:
                self.text = generate_latest(self.static)
                self.version = version

    def render(self) -> bytes:
        if self.version < 0:
            self.refresh()
        return self.text + generate_latest(self.dynamic)


def exposition_maker(state: State, clock: Callable[[], float]) -> Callable[[], bytes]:
    """Render on every call (tests, promtool); serve itself keeps an `Exposition` fresh in a thread."""
    exp = Exposition(state, clock)

    def render() -> bytes:
        exp.refresh()
        return exp.render()

    return render
