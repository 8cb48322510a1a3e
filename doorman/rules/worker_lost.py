"""worker_lost: a worker that was alive stopped answering while others still run.

Only workers seen alive are tracked (state `workers`: name -> last time seen alive), so the stale
pidbox binding of a long-dead worker never fires. After `worker_forget_seconds` a lost worker is
forgotten and its alert resolves saying so. When no worker is alive at all, workers_down or
celery_disconnected inhibits these (one incident, one page).
"""

from __future__ import annotations

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.shapes import is_num, map_of
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
from doorman.timefmt import parse_iso

MAX_WORKERS = 1000
AGGREGATE_OVER = 5  # more workers lost at once than this: one alert "N workers lost", never N alerts
NAMES_LISTED = 20  # names listed in that alert's details


def _last_alive(w: Worker, now: float) -> float | None:
    """The worker's last sign of life: a reply in this check is now; else its last heartbeat."""
    if w.get("responded") is True:
        return now
    try:
        beat = parse_iso(last) if isinstance(last := w.get("last_heartbeat"), str) else None
    except (ValueError, OverflowError, OSError):
        beat = None
    if beat is not None:
        return min(beat, now)
    return now if w.get("alive") is True else None


def _alive(snapshot: Snapshot) -> set[str]:
    return {w["name"] for w in snapshot.get("workers") or () if w.get("alive") is True}


def _departed(snapshot: Snapshot) -> set[str]:
    return {w["name"] for w in snapshot.get("workers") or () if w.get("departed") is True}


class WorkerLost(BaseRule):
    name = "worker_lost"
    alert_types = (AlertType("worker_lost", ("warning",), "worker:<name>",
                             "A worker that was alive stopped answering while others still run.",
                             inhibited_by=OUTAGE | {"celery_disconnected"}, reconnect_grace=True),)
    settings = (
        Setting("worker_forget_seconds", "float", 3600.0, ("WORKER_FORGET_SECONDS",),
                "A lost worker gone this long is forgotten (its worker_lost alert resolves).",
                section=THRESHOLDS),
    )

    def initial_state(self) -> State:
        return {"workers": {}, "forgotten": {}}

    def state_problem(self, state: State) -> str | None:
        if not (map_of(state.get("workers"), is_num) and map_of(state.get("forgotten"), is_num)):
            return "workers and forgotten must map names to times"
        return None

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        seen = state.setdefault("workers", {})
        alive = _alive(snapshot)
        for name in _departed(snapshot):  # stopped warm (worker-offline): a clean departure, not a loss
            seen.pop(name, None)
        for w in snapshot.get("workers") or ():
            last = _last_alive(w, now)
            if last is not None and (w["name"] in alive or w["name"] in seen):
                seen[w["name"]] = max(seen.get(w["name"], last), last)
        forgotten = {}
        if len(seen) > len(alive):
            forget = config.thresholds.worker_forget_seconds
            forgotten = {n: t for n, t in seen.items() if n not in alive and now - t >= forget}
            for n in forgotten:
                del seen[n]
        if len(seen) > MAX_WORKERS:
            for n, _ in sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))[: len(seen) - MAX_WORKERS]:
                del seen[n]
        state["forgotten"] = forgotten

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        seen = state.get("workers", {})
        alive = _alive(snapshot)
        # a worker whose liveness is unknown (null: a full broker refused the check's request) is not lost
        alive |= {w["name"] for w in snapshot.get("workers") or () if w.get("alive", False) is None}
        lost = [(n, t) for n, t in seen.items() if n not in alive] if len(seen) > len(alive) else []
        bound = {w["name"] for w in snapshot.get("workers") or ()} if lost else set()
        if (snapshot.get("truncated") or {}).get("workers"):
            lost = [(n, t) for n, t in lost if n in bound]  # not shown (a cut list) is not lost
        out = []
        if len(lost) > AGGREGATE_OVER:  # a burst (spoofed heartbeats, a whole fleet): one alert
            lost.sort(key=lambda nt: (-nt[1], nt[0]))
            out.append(condition(
                "worker_lost", "warning", "workers:many", f"{len(lost)} workers lost",
                f"{len(lost)} workers stopped answering (the last {duration(now - lost[0][1])} ago); "
                f"{len(alive)} other worker(s) alive.",
                {"lost": len(lost), "workers": [n for n, _ in lost[:NAMES_LISTED]], "alive_workers": len(alive)},
            ))
            lost = []
        for name, last in lost:
            out.append(condition(
                "worker_lost", "warning", f"worker:{name}", f"Worker {name} lost",
                f"Worker {name} stopped answering {duration(now - last)} ago; {len(alive)} other worker(s) alive.",
                {"worker": name, "last_seen_alive_seconds_ago": round(now - last, 3),
                 "alive_workers": len(alive), "binding_present": name in bound},
            ))
        for name, last in state.get("forgotten", {}).items():
            out.append(condition(
                "worker_lost", "warning", f"worker:{name}", f"Worker {name} forgotten",
                f"Worker {name} forgotten after {duration(now - last)} without an answer.",
                {"worker": name, "forgotten": True, "last_seen_alive_seconds_ago": round(now - last, 3),
                 "worker_forget_seconds": config.thresholds.worker_forget_seconds},
                status="resolved",
            ))
        return out


RULE: Rule = WorkerLost()
