"""A snapshot's `tasks` section folded into celery-exporter's label sets, bounded and monotonic.

The snapshot's counts are cumulative since `tasks.since` (the collector's start), so serve exports
them as they are, with `_created = since`: a restart of serve re-reads the same totals (nothing is
counted twice on a replay of the streams file), and a restart of collect (a new `since`, totals
from 0) is a counter reset, which `rate()`/`increase()` handle.

Label values are celery-exporter's: `hostname` is the part of Celery's node name after the `@`
(`celery@web-1` -> `web-1`, celery's `nodesplit`), so rows of several workers on one host are
summed, as the exporter's one counter per host counts them.

Broker data is hostile: task names, hostnames, queues, exception classes and their combinations
are capped per cluster (`TaskCaps`). A key is admitted while there is room and then stays admitted
until `since` changes, so a series never moves into `(other)` and back, and `(other)` only grows;
what is over a cap is summed under `(other)`. Within one `since`, a value that would go down (a
collector that misbehaves) keeps its previous value: counters never go backwards while serve runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from doorman.contract.shapes import finite
from doorman.contract.tasks import OTHER, OUTCOMES, QUEUE_WAIT_BUCKETS, RUNTIME_BUCKETS

MAX_LABEL = 200  # characters of a label value kept (as serve's other names)
UNKNOWN_EXCEPTION = "UnknownException"  # celery-exporter's label when the class cannot be parsed
N_OUT = len(OUTCOMES)
FAILED = OUTCOMES.index("failed")
SENT = OUTCOMES.index("sent")


@dataclass(frozen=True)
class TaskCaps:
    names: int = 500
    hostnames: int = 200
    exceptions: int = 50
    series: int = 2000
    queues: int = 1000


@dataclass
class Hist:
    counts: list[int]  # per bucket, len(bounds) + 1, NOT cumulative (as the snapshot has them)
    count: int
    sum: float


@dataclass
class Row:
    """One (name, hostname, queue_name) label set."""

    counts: list[int]  # in OUTCOMES order
    exceptions: dict[str, int] = field(default_factory=dict)
    runtime: Hist | None = None
    queue_wait: Hist | None = None


Key = tuple[str, str, str]
Fresh = tuple[Key, "str | None"]  # a label set: a row (None), or one exception class of its failed counter


def exporter_hostname(node: str) -> str:
    """celery-exporter's `hostname` label: what follows the first `@` of the node name, else all of it."""
    return node.split("@", 1)[1] if "@" in node else node


def _label(value: Any) -> str:
    text = (value if isinstance(value, str) else str(value))[:MAX_LABEL]
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(ch for ch in text if ch >= " " and ch != "\x7f")


def _count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def _hist(raw: Any, nbounds: int) -> Hist | None:
    if not isinstance(raw, dict):
        return None
    counts = raw.get("counts")
    if not isinstance(counts, list) or len(counts) != nbounds + 1:
        return None
    total = finite(raw.get("sum"))
    if not all(type(n) is int and n >= 0 for n in counts):
        counts = [_count(n) for n in counts]
    return Hist(list(counts), _count(raw.get("count")), total if total is not None else 0.0)


def _bounds(raw: Any, default: tuple[float, ...]) -> tuple[float, ...]:
    if (isinstance(raw, list) and 0 < len(raw) <= 64 and all(type(b) in (int, float) for b in raw)
            and all(a < b for a, b in zip(raw, raw[1:], strict=False)) and raw[-1] < float("inf")):
        return tuple(float(b) for b in raw)
    return default


class Admission:
    """Keys admitted under a cap, sticky: once in, in until `reset`."""

    def __init__(self, cap: int):
        self.cap = cap
        self.keys: set[str] = set()

    def offer(self, totals: dict[str, int]) -> None:
        """Admit new keys while there is room, the busiest first (ties by name: deterministic)."""
        room = self.cap - len(self.keys)
        if room <= 0:
            return
        new = [k for k in totals if k not in self.keys and k != OTHER]
        if len(new) > room:
            new = sorted(new, key=lambda k: (-totals[k], k))[:room]
        self.keys.update(new)

    def map(self, key: str) -> str:
        return key if key in self.keys or key == OTHER else OTHER


@dataclass
class TaskTable:
    """One cluster's celery_task_* series, as of its newest snapshot."""

    caps: TaskCaps
    since: float | None = None
    runtime_bounds: tuple[float, ...] = RUNTIME_BUCKETS
    queue_wait_bounds: tuple[float, ...] = QUEUE_WAIT_BUCKETS
    rows: dict[Key, Row] = field(default_factory=dict)
    omitted: dict[str, int] = field(default_factory=dict)  # distinct keys folded by serve, this snapshot
    collect_omitted: dict[str, int] = field(default_factory=dict)  # the collector's own (tasks.omitted)
    admitted: dict[str, Admission] = field(default_factory=dict)
    # Label sets that appeared after serve's first look at this `since` are shown at 0 until a scrape
    # has read that 0 (`zeroed`): a counter that is born at its value is invisible to `increase()`,
    # so without it the first failures of a new task would never show in a rate. Label sets present
    # at the first look (serve restarted, or collect did: a new `since`) show their values at once,
    # so a restart is never a dip to 0 and back (counted twice).
    fresh: set[Fresh] = field(default_factory=set)
    zeroed_last: set[Fresh] = field(default_factory=set)
    looked: bool = False

    def __post_init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        c = self.caps
        self.admitted = {"names": Admission(c.names), "hostnames": Admission(c.hostnames),
                         "queues": Admission(c.queues), "exceptions": Admission(c.exceptions),
                         "series": Admission(c.series)}
        self.rows = {}
        self.fresh, self.zeroed_last, self.looked = set(), set(), False

    def zeroed(self, read: bool) -> set[Fresh]:
        """The label sets to show at 0 in this render; `read`: the last render was served to a
        scrape, so what it showed at 0 has been seen at 0 and may show its value now."""
        if read:
            self.fresh -= self.zeroed_last
        self.zeroed_last = set(self.fresh)
        return self.zeroed_last

    def update(self, tasks: Mapping[str, Any]) -> None:
        """Take in a snapshot's (non-null) `tasks` section."""
        since = finite(tasks.get("since"))
        since = since if since is not None and 0 <= since < 1e11 else 0.0
        if since != self.since:  # collect restarted: a counter reset; admissions start afresh
            self.since = since
            self._reset()
        buckets: dict[str, Any] = tasks["buckets"] if isinstance(tasks.get("buckets"), dict) else {}
        self.runtime_bounds = _bounds(buckets.get("runtime"), RUNTIME_BUCKETS)
        self.queue_wait_bounds = _bounds(buckets.get("queue_wait"), QUEUE_WAIT_BUCKETS)
        raw_rows = self._read_rows(tasks.get("series"))
        omitted = tasks.get("omitted")
        self.collect_omitted = {_label(k)[:32]: _count(v) for k, v in list(omitted.items())[:8]} \
            if isinstance(omitted, dict) else {}
        before = self.rows
        self.rows = self._fold(raw_rows)
        if self.looked:
            for key, row in self.rows.items():
                old = before.get(key)
                if old is None:
                    self.fresh.add((key, None))
                else:
                    self.fresh.update((key, cls) for cls in row.exceptions if cls not in old.exceptions)
        self.looked = True

    def _read_rows(self, series: Any) -> list[tuple[str, str, str, Row]]:
        out: list[tuple[str, str, str, Row]] = []
        nr, nq = len(self.runtime_bounds), len(self.queue_wait_bounds)
        for s in series if isinstance(series, list) else ():
            if not isinstance(s, dict):
                continue
            exc = s.get("exceptions")
            row = Row([_count(s.get(k)) for k in OUTCOMES], {}, _hist(s.get("runtime"), nr),
                      _hist(s.get("queue_wait"), nq))
            for k, v in list(exc.items())[:1000] if isinstance(exc, dict) else ():
                cls = _label(k) or UNKNOWN_EXCEPTION
                row.exceptions[cls] = row.exceptions.get(cls, 0) + _count(v)
            unaccounted = row.counts[FAILED] - sum(row.exceptions.values())
            if unaccounted > 0:  # failures without a class: celery-exporter's label for an unparsed one
                row.exceptions[UNKNOWN_EXCEPTION] = row.exceptions.get(UNKNOWN_EXCEPTION, 0) + unaccounted
            out.append((_label(s.get("name", "(unknown)")), exporter_hostname(_label(s.get("hostname", ""))),
                        _label(s.get("queue", "(unknown)")), row))
        return out

    def _fold(self, raw: list[tuple[str, str, str, Row]]) -> dict[Key, Row]:
        adm = self.admitted
        totals: dict[str, dict[str, int]] = {"names": {}, "hostnames": {}, "queues": {}, "exceptions": {}}
        for name, host, queue, row in raw:
            n = sum(row.counts)
            for what, key in (("names", name), ("hostnames", host), ("queues", queue)):
                totals[what][key] = totals[what].get(key, 0) + n
            for cls, m in row.exceptions.items():
                totals["exceptions"][cls] = totals["exceptions"].get(cls, 0) + m
        for what, t in totals.items():
            adm[what].offer(t)
        self.omitted = {what: sum(1 for k in t if adm[what].map(k) == OTHER and k != OTHER)
                        for what, t in totals.items()}
        mapped: dict[Key, Row] = {}
        for name, host, queue, row in raw:
            _add(mapped, (adm["names"].map(name), adm["hostnames"].map(host), adm["queues"].map(queue)), row,
                 adm["exceptions"])
        series_totals = {"\x00".join(k): sum(r.counts) for k, r in mapped.items()}
        adm["series"].offer(series_totals)
        self.omitted["series"] = sum(1 for k in series_totals if adm["series"].map(k) == OTHER
                                     and k != "\x00".join((OTHER, OTHER, OTHER)))
        rows: dict[Key, Row] = {}
        for mkey, row in mapped.items():
            kept = mkey if adm["series"].map("\x00".join(mkey)) != OTHER else (OTHER, OTHER, OTHER)
            _add(rows, kept, row, None)
        for rkey, row in rows.items():  # never backwards within one `since`
            old = self.rows.get(rkey)
            if old is not None:
                _not_below(row, old)
        return rows

    def samples(self) -> int:
        """How many samples the rows make in /metrics (for tests and the bench)."""
        n = 0
        for row in self.rows.values():
            n += 2 * (N_OUT + 1 + len(row.exceptions))
            for h, b in ((row.runtime, self.runtime_bounds), (row.queue_wait, self.queue_wait_bounds)):
                if h is not None and h.count:
                    n += len(b) + 4
        return n


def _add(into: dict[Key, Row], key: Key, row: Row, exceptions: Admission | None) -> None:
    excs: Iterable[tuple[str, int]] = row.exceptions.items()
    if exceptions is not None:
        excs = [(exceptions.map(c), n) for c, n in excs]
    cur = into.get(key)
    if cur is None:
        cur = into[key] = Row([0] * N_OUT)
    for i, n in enumerate(row.counts):
        cur.counts[i] += n
    for c, n in excs:
        cur.exceptions[c] = cur.exceptions.get(c, 0) + n
    cur.runtime = _hist_add(cur.runtime, row.runtime)
    cur.queue_wait = _hist_add(cur.queue_wait, row.queue_wait)


def _hist_add(a: Hist | None, b: Hist | None) -> Hist | None:
    if b is None:
        return a
    if a is None:
        return Hist(list(b.counts), b.count, b.sum)
    return Hist([x + y for x, y in zip(a.counts, b.counts, strict=True)], a.count + b.count, a.sum + b.sum)


def _not_below(row: Row, old: Row) -> None:
    row.counts = [max(n, o) for n, o in zip(row.counts, old.counts, strict=True)]
    for c, n in old.exceptions.items():
        row.exceptions[c] = max(row.exceptions.get(c, 0), n)
    if old.runtime is not None and (row.runtime is None or row.runtime.count < old.runtime.count):
        row.runtime = old.runtime
    if old.queue_wait is not None and (row.queue_wait is None or row.queue_wait.count < old.queue_wait.count):
        row.queue_wait = old.queue_wait
