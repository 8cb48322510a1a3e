"""celery-exporter's task series as Prometheus text, written directly (not through prometheus_client).

With the caps' worth of series a render is ~100k samples; prometheus_client spends ~10 µs a sample,
this ~1 µs. The output is what prometheus_client writes for the exporter's Counter and Histogram
(`_total` samples, `_created` beside them, cumulative `_bucket`s with `le`, `_count`, `_sum`), with
`cluster` as the first label like every serve series. Called under the state's lock.

Which samples a label set has follows the exporter: the 7 counters but `sent` are all present (at
0 too: "pre-zeroed", and `failed` with `exception=""`) once the set has any of them; `sent` only
once it counted one (publishers' hosts are not workers). Unlike the exporter, the runtime histogram
is pre-zeroed likewise (and the queue-wait one when the cluster has task-sent events at all), so
`rate()` and `increase()` see the first observations too instead of starting from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.utils import floatToGoString

from doorman.contract.tasks import OUTCOMES
from doorman.serve.tasks import FAILED, SENT, Fresh, Hist, Key, Row

if TYPE_CHECKING:
    from doorman.serve.state import State

HELP = {
    "sent": "Sent when a task message is published.",
    "received": "Sent when the worker receives a task.",
    "started": "Sent just before the worker executes the task.",
    "succeeded": "Sent if the task executed successfully.",
    "failed": "Sent if the execution of the task failed.",
    "rejected": "The task was rejected by the worker, possibly to be re-queued or moved to a dead letter queue.",
    "revoked": "Sent if the task has been revoked.",
    "retried": "Sent if the task failed, but will be retried in the future.",
}
RUNTIME_HELP = "Histogram of task runtime measurements."
QUEUE_WAIT_HELP = ("Histogram of the time tasks spend waiting in the queue before being executed, excluding "
                   "deliberate ETA/countdown delay.")


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    return floatToGoString(v)


def render_tasks(state: State, read: bool = True) -> bytes:
    """Every cluster's task series; empty when no snapshot had a `tasks` section. `read`: the last
    render reached a scrape (label sets born since show at 0 until one has: `TaskTable.fresh`)."""
    tables = [(cl, c.tasks) for cl, c in state.clusters.items() if c.tasks is not None and c.tasks.rows]
    if not tables:
        return b""
    out: list[str] = []
    # per table: (row as shown, label text without braces, created text)
    prepared = []
    for cl, t in tables:
        created = _num(t.since or 0.0)
        zero = t.zeroed(read)
        rows = [(_at_zero(row, key, zero) if zero else row,
                 f'cluster="{escape(cl)}",name="{escape(n)}",hostname="{escape(h)}"', f'queue_name="{escape(q)}"')
                for key, row in sorted(t.rows.items()) for n, h, q in [key]]
        prepared.append((t, created, rows))
    for i, outcome in enumerate(OUTCOMES):
        name = f"celery_task_{outcome}"
        out.append(f"# HELP {name}_total {HELP[outcome]}\n# TYPE {name}_total counter\n")
        for _t, created, rows in prepared:
            for row, head, queue in rows:
                if not _shown(row, i):
                    continue
                if i == FAILED:
                    for exc, n in (("", 0), *sorted(row.exceptions.items())):
                        labels = f'{head},exception="{escape(exc)}",{queue}'
                        out.append(f"{name}_total{{{labels}}} {n}.0\n{name}_created{{{labels}}} {created}\n")
                else:
                    labels = f"{head},{queue}"
                    out.append(f"{name}_total{{{labels}}} {row.counts[i]}.0\n{name}_created{{{labels}}} {created}\n")
    for name, help_, attr in (("celery_task_runtime", RUNTIME_HELP, "runtime"),
                              ("celery_task_queue_wait_time", QUEUE_WAIT_HELP, "queue_wait")):
        out.append(f"# HELP {name} {help_}\n# TYPE {name} histogram\n")
        for t, created, rows in prepared:
            bounds = t.runtime_bounds if attr == "runtime" else t.queue_wait_bounds
            les = [_num(b) for b in bounds] + ["+Inf"]
            zeroed = attr == "runtime" or any(r.counts[SENT] for r in t.rows.values())
            for row, head, queue in rows:
                h: Hist | None = getattr(row, attr)
                if not (h is not None and h.count) and zeroed and _shown(row, FAILED):
                    h = Hist([0] * (len(bounds) + 1), 0, 0.0)
                if h is None or (not h.count and not zeroed):
                    continue
                labels = f"{head},{queue}"
                acc = 0
                for le, n in zip(les, h.counts, strict=True):
                    acc += n
                    out.append(f'{name}_bucket{{{labels},le="{le}"}} {acc}.0\n')
                out.append(f"{name}_count{{{labels}}} {h.count}.0\n{name}_sum{{{labels}}} {_num(h.sum)}\n"
                           f"{name}_created{{{labels}}} {created}\n")
    return "".join(out).encode()


def _at_zero(row: Row, key: Key, zero: set[Fresh]) -> Row:
    """`row` with its newborn label sets at 0 (the same samples present: `_shown` reads the real one)."""
    if (key, None) in zero:
        return _Zero(row)
    if not any((key, cls) in zero for cls in row.exceptions):
        return row
    excs = {cls: 0 if (key, cls) in zero else n for cls, n in row.exceptions.items()}
    return Row(row.counts, excs, row.runtime, row.queue_wait)


class _Zero(Row):
    """A row shown at 0 whose samples are those of the real row."""

    def __init__(self, real: Row):
        def flat(h: Hist | None) -> Hist | None:
            return None if h is None else Hist([0] * len(h.counts), 0, 0.0)

        super().__init__([0] * len(real.counts), dict.fromkeys(real.exceptions, 0), flat(real.runtime),
                         flat(real.queue_wait))
        self.real = real


def _shown(row: Row, i: int) -> bool:
    """The exporter's pre-zeroing: `sent` once counted; the others once any but `sent` is there."""
    row = row.real if isinstance(row, _Zero) else row
    others = any(n for j, n in enumerate(row.counts) if j != SENT)
    if i == SENT:
        return row.counts[SENT] > 0 or not others
    return others or row.counts[SENT] == 0
