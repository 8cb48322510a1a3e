"""The rules, in evaluation order. Adding a rule = adding a module here and to `RULES`.

Each module exposes `INFO` (a `base.RuleInfo`) and `evaluate(snapshot, state, config)` returning a
list of `base.condition` dicts; it is pure (no I/O, no clock: "now" is `state["now"]`, taken from
the snapshot's `ts`). A rule that must remember something across snapshots also exposes
`observe(snapshot, state, config)`, the only place that writes its slice of `state`.
"""

from __future__ import annotations

from doorman.rules import backlog, backlog_growing, latency, redis_down, worker_lost, workers, zombie

RULES = (redis_down, workers, worker_lost, backlog, backlog_growing, zombie, latency)

ALERT_TYPES = tuple(t for r in RULES for t in r.INFO.alert_types)
