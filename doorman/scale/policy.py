"""How many workers a pool needs: pure functions of successive snapshots (docs/scale.md, "The policy").

    arrival  λ = (pending now − pending before + tasks completed meanwhile) / Δt   (tasks/s, ≥ 0)
    service  μ = Δprocessed / Δt of each worker, over intervals where tasks were waiting (tasks/s/worker)
    needed   n = ⌈ (λ + pending / target_wait) / μ ⌉        (Little's law: wait = backlog / throughput)
    desired  = clamp(n, min, max), at least 1 while tasks wait

Both rates are exponentially weighted averages with time constant `rate_window`. Growing happens at
once; shrinking only after every recommendation of a whole stabilization window was lower, to
no less than the highest of them, by at most half, and at most once per window. Time is the
snapshots' `ts`, never the clock, so a replay of a day's snapshots decides exactly what the live
run decided. Snapshots are hostile data: every figure is checked before use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from doorman.contract.shapes import finite
from doorman.scale.settings import Pool
from doorman.timefmt import parse_iso

MAX_WINDOW = 4096  # recommendations kept for the stabilization window: bounded whatever the rate
MAX_WORKERS = 10_000  # counters kept per pool
NEGLIGIBLE = 0.01  # a need below this many workers is none (a decaying average never reaches 0)


@dataclass(frozen=True)
class Policy:
    stabilization: float = 300.0
    rate_window: float = 60.0
    stale_after: float = 120.0


@dataclass(frozen=True)
class Counter:
    processed: int
    at: float  # the heartbeat that carried it (else the snapshot's ts)


@dataclass(frozen=True)
class Reading:
    """What one snapshot says of one pool."""

    ts: float
    pending: int
    oldest_age: float | None
    current: int  # live workers serving the pool
    counters: dict[str, Counter]  # live workers' `processed` counters, when they report them
    queues: tuple[str, ...]


@dataclass(frozen=True)
class State:
    """One pool's memory between snapshots; small and bounded."""

    prev: Reading | None = None
    arrival: float | None = None
    service: float | None = None
    desired: int | None = None  # the last decision
    window: tuple[tuple[float, int], ...] = ()  # (ts, recommendation) over the stabilization window
    lower_since: float | None = None  # since when every recommendation was below `desired`


@dataclass(frozen=True)
class Decision:
    ts: float
    pool: str
    queues: tuple[str, ...]
    current: int
    desired: int
    changed: bool
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hold:
    """No decision on this snapshot, and why (broker down, stale data, out of order)."""

    reason: str


_num = finite


def _count(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def snapshot_time(snap: dict[str, Any]) -> float | None:
    try:
        return parse_iso(snap.get("ts"))  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        return None


def read_pool(snap: dict[str, Any], pool: Pool, ts: float) -> Reading:
    """The pool's figures from one snapshot. Workers are those listed in the pool's queues'
    `consumed_by` when the collector knows it, else every worker (one pool, or a broker that
    cannot tell)."""
    raw_queues = snap.get("queues")
    queues: dict[str, Any] = raw_queues if isinstance(raw_queues, dict) else {}
    names = pool.queues if pool.queues is not None else tuple(sorted(str(q) for q in queues))
    pending, oldest, known = 0, None, False
    consumers: set[str] = set()
    for q in names:
        entry = queues.get(q)
        if not isinstance(entry, dict):
            continue
        pending += _count(entry.get("pending")) or 0
        head = entry.get("oldest")
        age = _num(head.get("age_seconds")) if isinstance(head, dict) else None
        if age is not None and age >= 0:
            oldest = age if oldest is None else max(oldest, age)
        by = entry.get("consumed_by")
        if isinstance(by, list):
            known = True
            consumers.update(str(n) for n in by)
    raw_workers = snap.get("workers")
    workers: list[Any] = raw_workers if isinstance(raw_workers, list) else []
    current = 0
    counters: dict[str, Counter] = {}
    for w in workers:
        if not isinstance(w, dict) or w.get("alive") is not True or not isinstance(w.get("name"), str):
            continue
        if known and w["name"] not in consumers:
            continue
        current += 1
        processed = _count(w.get("processed"))
        if processed is not None and len(counters) < MAX_WORKERS:
            at = ts
            if isinstance(w.get("last_heartbeat"), str):
                try:
                    at = parse_iso(w["last_heartbeat"])
                except ValueError:
                    pass
            counters[w["name"]] = Counter(processed, at)
    return Reading(ts, pending, oldest, current, counters, names)


def _average(old: float | None, sample: float, dt: float, window: float) -> float:
    if old is None:
        return sample
    alpha = 1.0 - math.exp(-dt / window)
    return old + alpha * (sample - old)


def _rates(prev: Reading, now: Reading, state: State, policy: Policy) -> tuple[float | None, float | None]:
    """The arrival and service averages updated with the interval prev → now."""
    dt = now.ts - prev.ts
    completed = 0
    per_worker: list[float] = []
    for name, c in now.counters.items():
        before = prev.counters.get(name)
        if before is None:
            continue  # a new worker: its counter starts counting next time
        done = c.processed - before.processed if c.processed >= before.processed else c.processed  # restart
        completed += done
        if c.at > before.at and prev.pending > 0:  # busy the whole interval: its pace is its capacity
            per_worker.append(done / (c.at - before.at))
    arrival = _average(state.arrival, max(0.0, (now.pending - prev.pending + completed) / dt), dt,
                       policy.rate_window)
    service = state.service
    if per_worker:
        sample = sum(per_worker) / len(per_worker)
        if sample > 0:
            service = _average(state.service, sample, dt, policy.rate_window)
    return arrival, service


def needed(arrival: float, service: float, pending: int, target_wait: float) -> float:
    """Workers to absorb arrivals and drain the backlog within `target_wait` (Little's law)."""
    return (arrival + pending / target_wait) / service


def step(state: State, snap: dict[str, Any], pool: Pool, policy: Policy) -> tuple[State, Decision | Hold]:
    """One snapshot in: the pool's new state and either a decision or why there is none."""
    ts = snapshot_time(snap)
    if ts is None:
        return state, Hold("snapshot without a valid ts")
    if snap.get("redis_connected") is not True or snap.get("error"):
        return replace(state, prev=None, lower_since=None), Hold("broker down: no decision until it answers")
    prev = state.prev
    if prev is not None and ts <= prev.ts:
        return state, Hold("snapshot older than the previous one: ignored")
    now = read_pool(snap, pool, ts)
    if prev is None:
        return replace(state, prev=now), Hold("first reading since start or outage: rates need two")
    if ts - prev.ts > policy.stale_after:
        return (replace(state, prev=now, lower_since=None),
                Hold(f"stale data: {ts - prev.ts:.0f} s since the previous snapshot (limit {policy.stale_after:g} s)"))
    arrival, service = _rates(prev, now, state, policy)
    state = replace(state, prev=now, arrival=arrival, service=service)
    return _decide(state, now, pool, policy)


def _decide(state: State, now: Reading, pool: Pool, policy: Policy) -> tuple[State, Decision]:
    before = state.desired if state.desired is not None else now.current
    inputs: dict[str, Any] = {
        "arrival_rate": round(state.arrival, 4) if state.arrival is not None else None,
        "service_rate": round(state.service, 4) if state.service is not None else None,
        "pending": now.pending,
        "oldest_age_seconds": now.oldest_age,
        "target_wait_seconds": pool.target_wait,
        "needed": None,
    }
    floor = max(pool.min, 1 if now.pending > 0 else 0)
    if state.service is None or state.arrival is None:
        # No pace measured yet (no busy interval, or workers that do not report `processed`):
        # keep what there is, but never zero while tasks wait.
        idle = now.pending == 0 and (state.arrival is None or state.arrival < NEGLIGIBLE)
        rec = floor if idle else max(floor, min(pool.max, before))
        why = ("nothing waiting or arriving" if idle else
               "service rate not measured yet (no busy interval with `processed` counters)")
    else:
        need = needed(state.arrival, state.service, now.pending, pool.target_wait)
        inputs["needed"] = round(need, 3)
        rec = min(pool.max, max(floor, math.ceil(need - NEGLIGIBLE)))
        why = (f"{now.pending} pending, {state.arrival:.3g}/s arriving, {state.service:.3g}/s per worker: "
               f"{need:.3g} worker(s) keep waits under {pool.target_wait:g} s")
        if rec == pool.max and math.ceil(need - NEGLIGIBLE) > pool.max:
            why += f" (capped at max {pool.max})"
    old, start = state.window, 0
    while start < len(old) and old[start][0] <= now.ts - policy.stabilization:  # oldest first
        start += 1
    window = old[max(start, len(old) - MAX_WINDOW + 1):] + ((now.ts, rec),)
    desired, lower_since = before, None
    if rec > before:
        desired, reason = rec, f"scale up: {why}"
    elif rec == before:
        reason = f"steady: {why}"
    else:
        lower_since = state.lower_since if state.lower_since is not None else now.ts
        late = now.oldest_age is not None and now.oldest_age > pool.target_wait and now.pending > 0
        waited = now.ts - lower_since
        if late:
            reason = (f"hold {before}: the oldest task has waited {now.oldest_age:.0f} s, over the "
                      f"{pool.target_wait:g} s target; {why}")
            lower_since = None
        elif waited < policy.stabilization:
            reason = (f"hold {before}: {rec} would do, but only for {waited:.0f} s of the "
                      f"{policy.stabilization:g} s stabilization window; {why}")
        else:
            half = 0 if before == 1 else math.ceil(before / 2)  # 1 -> 0 is allowed when idle (min 0)
            desired = max(max(r for _, r in window), half, floor)
            lower_since = now.ts  # the next step down needs a whole new window
            reason = f"scale down (at most half, highest of the window): {why}"
    changed = state.desired is None or desired != state.desired
    state = replace(state, desired=desired, window=window, lower_since=lower_since)
    return state, Decision(now.ts, pool.name, now.queues, now.current, desired, changed, reason, inputs)
