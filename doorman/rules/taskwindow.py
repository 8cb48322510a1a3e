"""Windowed deltas of the snapshot's cumulative task counts, for the task rules (not a rule).

A snapshot's `tasks.by_name` counts are cumulative since `tasks.since`, like Prometheus counters.
Each task rule keeps, in its own state, the last cumulative values it read (`last`) and a bounded
ring of *slots*: [start time, {task name: increments}] with one slot per window/`SLOTS` seconds, so
the increase over a window is the sum of the slots that started inside it (exact to one slot).
A counter reset is handled like Prometheus' `increase()`: when `since` changes (the collector
restarted) or a value falls, the new value is the increment, never a negative delta, so a restart
raises no alert. The first snapshot a rule ever sees is a baseline, not news.

Values are flat maps {key: number} per task name ("vectors"), capped at `MAX_NAMES` names; the
overflow names `(other)` and `(unknown)` are not one task, so no rule judges them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from doorman.config.settings import Config
from doorman.contract.shapes import finite, is_count, is_num, map_of
from doorman.rules.base import BaseRule, Snapshot, State

SLOTS = 12  # slots per window
MAX_NAMES = 1000  # task names a rule tracks (the reader's own default cap)
MAX_EXCEPTIONS = 21  # exception classes per name (the reader keeps 20 and "(other)")
OVERFLOW = frozenset({"(other)", "(unknown)"})

Vec = dict[str, float]
Slot = list[Any]  # [start, {name: Vec}]


def tasks_of(snapshot: Mapping[str, Any]) -> dict[str, Any] | None:
    """The snapshot's `tasks` section when the rules can read it (None: null, missing or malformed)."""
    t = snapshot.get("tasks")
    if not isinstance(t, dict) or finite(t.get("since")) is None or not isinstance(t.get("by_name"), dict):
        return None
    return t


def count(v: Any) -> int:
    return v if is_count(v) else 0


def hist_vec(h: Any, size: int) -> Vec:
    """A histogram as a vector: `h<i>` per bucket (not cumulative), `n` its count, `s` its sum."""
    if not isinstance(h, dict) or not isinstance(h.get("counts"), list) or len(h["counts"]) != size:
        return {}
    out: Vec = {f"h{i}": float(c) for i, c in enumerate(h["counts"]) if is_count(c) and c}
    out["n"] = float(count(h.get("count")))
    return out


def vectors(tasks: dict[str, Any], pick: Callable[[dict[str, Any]], Vec]) -> dict[str, Vec]:
    """{task name: vector} of the named tasks (overflow names left out), at most MAX_NAMES."""
    out: dict[str, Vec] = {}
    for name, c in tasks["by_name"].items():
        if len(out) >= MAX_NAMES:
            break
        if isinstance(name, str) and name not in OVERFLOW and isinstance(c, dict):
            out[name] = pick(c)
    return out


def advance(state: dict[str, Any], vecs: dict[str, Vec], since: float) -> dict[str, Vec]:
    """The increments since the last snapshot this rule read; `state` then remembers this one."""
    kept = state.get("last")
    last: dict[str, Vec] = kept if isinstance(kept, dict) else {}
    first = state.get("since") is None
    reset = not first and state.get("since") != since
    out: dict[str, Vec] = {}
    if not first:
        for name, v in vecs.items():
            before = None if reset else last.get(name)
            if before and any(x < before.get(k, 0.0) for k, x in v.items()):
                before = None  # a value fell: that name's counter was reset
            d = {k: x - (before.get(k, 0.0) if before else 0.0) for k, x in v.items()}
            d = {k: x for k, x in d.items() if x > 0}
            if d:
                out[name] = d
    state["since"] = since
    state["last"] = vecs
    return out


def record(slots: list[Slot], now: float, delta: dict[str, Vec], width: float, horizon: float) -> list[Slot]:
    """`slots` with `delta` added to the slot of `now` (a new one past `width`), those older than
    `horizon` dropped. A clock that went back (a merged or reordered stream) starts over."""
    if slots and now < slots[-1][0]:
        slots = []
    slots = [s for s in slots if s[0] >= now - horizon]
    if not delta:
        return slots
    if slots and now - slots[-1][0] < width:
        add_into(slots[-1][1], delta)
    else:
        slots.append([now, {n: dict(v) for n, v in delta.items()}])
    return slots


def initial_state(*rings: str) -> dict[str, Any]:
    """A window rule's empty state: no reading yet, no counters, empty slot rings."""
    return {"since": None, "last": {}, **{ring: [] for ring in rings}}


def observe(state: dict[str, Any], tasks: dict[str, Any], pick: Callable[[dict[str, Any]], Vec], now: float,
            window: float) -> dict[str, Vec]:
    """One reading into the state: `pick`'s counters advanced, their increase recorded in the
    window's slots; that increase, for a rule that keeps another ring too."""
    delta = advance(state, vectors(tasks, pick), float(tasks["since"]))
    state["slots"] = record(state.get("slots", []), now, delta, window / SLOTS, window)
    return delta


def add_into(acc: dict[str, Vec], delta: dict[str, Vec], sign: float = 1.0) -> None:
    for name, v in delta.items():
        a = acc.setdefault(name, {})
        for k, x in v.items():
            a[k] = a.get(k, 0.0) + sign * x


def total(slots: Iterable[Slot], now: float, window: float) -> dict[str, Vec]:
    """The increments of the slots that started within `window` seconds of `now`, per task name."""
    acc: dict[str, Vec] = {}
    for start, delta in slots:
        if start >= now - window:
            add_into(acc, delta)
    return acc


def _vec_ok(v: Any) -> bool:
    return map_of(v, is_num)


def slots_ok(slots: Any) -> bool:
    return isinstance(slots, list) and all(
        isinstance(s, list) and len(s) == 2 and is_num(s[0]) and map_of(s[1], _vec_ok) for s in slots)


def state_problem(state: Any, *ring_keys: str) -> str | None:
    """Why a task rule's state read back from the file is not one it wrote (None: it is)."""
    if not isinstance(state, dict):
        return "expected an object"
    if not (state.get("since") is None or is_num(state.get("since"))):
        return "since must be a number or null"
    if not map_of(state.get("last"), _vec_ok):
        return "last must map task names to {key: number}"
    for key in ring_keys:
        if not slots_ok(state.get(key)):
            return f"{key} must be a list of [start, {{task name: {{key: number}}}}]"
    return None


def hist_counts(v: Vec, size: int) -> list[float]:
    return [max(0.0, v.get(f"h{i}", 0.0)) for i in range(size)]


def top(counts: dict[str, float], n: int = 3) -> dict[str, int]:
    """The `n` largest, largest first (ties by name)."""
    best = sorted(((k, v) for k, v in counts.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))[:n]
    return {k: int(v) for k, v in best}


def queues_of(tasks: dict[str, Any], name: str) -> list[str]:
    """The queues a task name ran from, from the snapshot's series rows (sorted, deduplicated)."""
    rows = tasks.get("series")
    if not isinstance(rows, list):
        return []
    return sorted({r["queue"] for r in rows if isinstance(r, dict) and r.get("name") == name
                   and isinstance(r.get("queue"), str)})


class WindowedTaskRule(BaseRule):
    """A task rule over the recent window of one vector per task name (`pick`): its state is the
    ring of slots, advanced on every snapshot with a `tasks` section."""

    needs = ("tasks",)

    @staticmethod
    def pick(c: dict[str, Any]) -> Vec:
        raise NotImplementedError

    def initial_state(self) -> State:
        return initial_state("slots")

    def state_problem(self, state: State) -> str | None:
        return state_problem(state, "slots")

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        tasks = tasks_of(snapshot)
        if tasks is not None:
            observe(state, tasks, self.pick, now, config.thresholds.task_failure_window_seconds)
