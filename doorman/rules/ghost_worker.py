"""ghost_worker: a worker heartbeats as alive but does not consume (celery#8082, #8030, #10205, #4453).

Two ways it shows, each for `ghost_after_seconds` while the worker's `processed` count stays put:
- (b) a queue in its own `active_queues` has tasks waiting and it has free slots
  (`active < concurrency`): it could take them and does not — a hung pool, a consumer that never
  came back after a reconnect;
- (a) it has no consumer connection: the broker's connection table shows fewer consumers than
  live workers. The table has no worker names, so the stuck workers are named only when no more
  of them sit still than consumer connections are missing. On RabbitMQ the broker names them:
  `task_consumers: 0` is a worker alive on the control channel with no task consumer on its own
  connection.
Inhibited by redis_down and workers_down (one incident, one page).
"""

from __future__ import annotations

from typing import Any

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.shapes import is_count, is_num
from doorman.contract.snapshot import Worker
from doorman.rules.base import (
    OUTAGE,
    AlertType,
    BaseRule,
    Condition,
    Rule,
    Snapshot,
    State,
    condition,
    duration,
)

MAX_WORKERS = 1000


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _waiting_queues(snapshot: Snapshot, worker: str) -> list[str]:
    """Its own queues (from active_queues) with tasks waiting."""
    return sorted(q for q, d in (snapshot.get("queues") or {}).items()
                  if d.get("pending") and worker in (d.get("consumed_by") or ()))


def _case_b(snapshot: Snapshot, w: Worker) -> bool:
    active, slots = _int(w.get("active")), _int(w.get("concurrency"))
    return bool(active is not None and slots is not None and active < slots and _waiting_queues(snapshot, w["name"]))


def _missing_consumers(snapshot: Snapshot, alive: list[Worker]) -> int:
    conns = snapshot.get("connections")
    consumers = _int(conns.get("consumers")) if isinstance(conns, dict) else None
    return 0 if consumers is None else max(0, len(alive) - consumers)


def _no_task_consumer(w: Worker) -> bool:
    """The broker says by name that this worker consumes no task queue (RabbitMQ), though it
    lists queues of its own (a worker with none left is queue_unconsumed's business)."""
    return w.get("task_consumers") == 0 and bool(w.get("queues"))


def _entry_ok(e: Any) -> bool:
    return (isinstance(e, dict) and is_count(e.get("processed"))
            and all(e.get(k) is None or is_num(e.get(k)) for k in ("a", "b")))


class GhostWorker(BaseRule):
    name = "ghost_worker"
    alert_types = (AlertType("ghost_worker", ("critical",), "worker:<name>",
                             "A worker heartbeats as alive but consumes nothing: no consumer connection, or "
                             "tasks wait in its queues while it has free slots and its processed count is flat.",
                             inhibited_by=OUTAGE, reconnect_grace=True),)
    settings = (
        Setting("ghost_after_seconds", "float", 60.0, ("GHOST_AFTER_SECONDS",),
                "A live worker that does not consume this long (see ghost_worker): ghost_worker.",
                section=THRESHOLDS),
    )

    def initial_state(self) -> State:
        return {"workers": {}}

    def state_problem(self, state: State) -> str | None:
        ws = state.get("workers")
        if not (isinstance(ws, dict) and all(isinstance(k, str) and _entry_ok(v) for k, v in ws.items())):
            return "workers must map names to {processed, a, b}"
        return None

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        seen: dict[str, dict[str, Any]] = state.setdefault("workers", {})
        alive = [w for w in snapshot.get("workers") or () if w.get("alive") is True]
        missing = _missing_consumers(snapshot, alive)
        keep = {}
        for w in alive[:MAX_WORKERS]:
            processed = _int(w.get("processed"))
            if processed is None:
                continue
            e = seen.get(w["name"])
            if e is None or e["processed"] != processed:
                e = {"processed": processed, "a": None, "b": None}
            a = _no_task_consumer(w) or (missing > 0 and w.get("queues") != [] and w.get("task_consumers") is None)
            e["a"] = (e["a"] if e["a"] is not None else now) if a else None
            e["b"] = (e["b"] if e["b"] is not None else now) if _case_b(snapshot, w) else None
            keep[w["name"]] = e
        state["workers"] = keep

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        limit = config.thresholds.ghost_after_seconds
        seen: dict[str, dict[str, Any]] = state.get("workers", {})
        alive = {w["name"]: w for w in snapshot.get("workers") or () if w.get("alive") is True}
        missing = _missing_consumers(snapshot, list(alive.values()))
        still_a = [n for n, e in seen.items() if n in alive and e["a"] is not None and now - e["a"] >= limit]
        named_a = {n for n in still_a if _no_task_consumer(alive[n])}
        counted = [n for n in still_a if n not in named_a]
        named_a |= set(counted) if 0 < len(counted) <= missing else set()
        out = []
        for name in sorted(alive):
            e = seen.get(name)
            if e is None:
                continue
            b = e["b"] is not None and now - e["b"] >= limit
            if not (b or name in named_a):
                continue
            since = min(t for t in (e["a"] if name in named_a else None, e["b"] if b else None) if t is not None)
            w = alive[name]
            if b:
                queues = _waiting_queues(snapshot, name)
                why = (f"tasks wait in {', '.join(queues)} and it runs {w.get('active')} of {w.get('concurrency')} "
                       f"slots, yet it has processed nothing for {duration(now - since)}")
            elif _no_task_consumer(w):
                why = (f"it listens on the control channel but its connection holds no task consumer, and it has "
                       f"processed nothing for {duration(now - since)}")
            else:
                why = f"it has no consumer connection and has processed nothing for {duration(now - since)}"
            out.append(condition(
                "ghost_worker", "critical", f"worker:{name}", f"Ghost worker {name}",
                f"Worker {name} heartbeats as alive but does not consume: {why}.",
                {"worker": name, "case": "b" if b else "a", "processed": e["processed"],
                 "stuck_seconds": round(now - since, 3), "threshold": limit,
                 "active": w.get("active"), "concurrency": w.get("concurrency"),
                 "waiting_queues": _waiting_queues(snapshot, name), "missing_consumers": missing},
            ))
        return out


RULE: Rule = GhostWorker()
