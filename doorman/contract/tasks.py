"""The snapshot's `tasks` section (contract v1, additive): its histogram bucket bounds.

Minimal on this branch (the exporter drop-in needs only the bounds); the task-event reader's branch
holds the same constants and the section's typed records. Upper bounds in seconds, `+Inf` implied
as the last bucket; a `Hist`'s `counts` has `len(bounds) + 1` entries, not cumulative.
"""

from __future__ import annotations

# prometheus_client's Histogram.DEFAULT_BUCKETS without +Inf: celery-exporter's celery_task_runtime
RUNTIME_BUCKETS: tuple[float, ...] = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0)
# celery-exporter's celery_task_queue_wait_time (--queue-wait-buckets default)
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (.05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                                         1800.0)
WAIT_BUCKETS: tuple[float, ...] = QUEUE_WAIT_BUCKETS  # received -> started (prefetched in the worker)

# the eight outcome counters of a `Plain` record, in celery-exporter's order
OUTCOMES: tuple[str, ...] = ("sent", "received", "started", "succeeded", "failed", "rejected", "revoked", "retried")
OTHER = "(other)"  # the key every capped map folds its overflow into
