"""task_events_off / task_events_lost: the task rules are blind, or were for a while.

task_events_off: `tasks.events` is "off" (workers run tasks, their heartbeats' `processed` rises,
and none sends task events) or "partial" (the workers in `tasks.silent_workers` send none). Told
once, no reminders: a standing setting, not an incident. The message says how to turn events on.

task_events_lost: over `task_failure_window_seconds` the reader missed events: it was unsubscribed
(`lost.unsubscribed_seconds` or `lost.gaps` rose: a dropped connection, or Redis cutting a
subscriber whose output buffer filled), or `lost.total` (heartbeat `processed` increments no event
accounts for) rose by more than `task_events_lost_margin`: a few are events in flight when a
heartbeat is read, more are events the broker dropped. What an outage of the broker itself cost is
told by redis_down: the first increments read after the broker comes back are not counted.
"""

from __future__ import annotations

from typing import Any

from doorman.config.settings import THRESHOLDS, Config, Setting
from doorman.contract.shapes import finite
from doorman.rules import taskwindow as tw
from doorman.rules.base import (
    OUTAGE,
    AlertType,
    BaseRule,
    Condition,
    Snapshot,
    State,
    condition,
    duration,
    plural,
)
from doorman.textsafe import printable

MAX_NAMED = 10  # silent workers named in a message (all of them, capped by the reader, in details)
HOW = ("start the workers with -E (celery -A app worker -E), or set worker_send_task_events = True; "
       "for task-sent events and queue wait, also set task_send_sent_event = True in the app that "
       "publishes. Doorman never turns events on itself (that changes what every worker does).")


class TaskEvents(BaseRule):
    name = "task_events"
    needs = ("tasks",)
    needs_broker = False  # it sees the outage, to leave what the outage cost to redis_down
    alert_types = (
        AlertType("task_events_off", ("warning",), "cluster",
                  "Workers run tasks but send no task events (or some do not): the task rules are blind.",
                  inhibited_by=OUTAGE, reminders=False),
        AlertType("task_events_lost", ("warning",), "cluster",
                  "Over the window the event reader was cut off, or missed more events than "
                  "task_events_lost_margin.", inhibited_by=OUTAGE),
    )
    settings = (
        Setting("task_events_lost_margin", "int", 10, ("TASK_EVENTS_LOST_MARGIN",),
                "task_events_lost fires when, over the window, more task runs than this went unseen "
                "(heartbeat `processed` increments no task event accounts for).", section=THRESHOLDS),
    )

    def initial_state(self) -> State:
        return {"since": None, "last": {}, "slots": [], "down": False}

    def state_problem(self, state: State) -> str | None:
        if not isinstance(state, dict) or type(state.get("down")) is not bool:
            return "down must be true or false"
        return tw.state_problem(state, "slots")

    def observe(self, snapshot: Snapshot, state: State, config: Config, now: float) -> None:
        tasks = tw.tasks_of(snapshot)
        if tasks is None:
            return
        if not snapshot.get("redis_connected"):
            state["down"] = True
            return
        lost: dict[str, Any] = tasks["lost"] if isinstance(tasks.get("lost"), dict) else {}
        vec = {"unsub": finite(lost.get("unsubscribed_seconds")) or 0.0, "gaps": float(tw.count(lost.get("gaps"))),
               "total": float(tw.count(lost.get("total")))}
        delta = tw.advance(state, {"*": {k: max(0.0, x) for k, x in vec.items()}}, float(tasks["since"]))
        if state.get("down"):  # the broker's outage, which redis_down told: what the reader lost to it
            delta = {}           # is not counted, up to the snapshot that sees the reader back
            reader = tasks.get("reader")
            state["down"] = not (isinstance(reader, dict) and reader.get("subscribed") is True)
        window = config.thresholds.task_failure_window_seconds
        state["slots"] = tw.record(state.get("slots", []), now, delta, window / tw.SLOTS, window)

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        tasks = tw.tasks_of(snapshot)
        if tasks is None:
            return []
        out = []
        events = tasks.get("events")
        silent = [w for w in tasks.get("silent_workers") or () if isinstance(w, str)][:100]
        if events == "off":
            out.append(condition(
                "task_events_off", "warning", "cluster", "Task events are off",
                f"Workers run tasks but none sends task events, so Doorman cannot see task outcomes. To turn "
                f"them on: {HOW}", {"events": "off", "silent_workers": silent}))
        elif events == "partial" and silent:
            names = ", ".join(printable(w) for w in silent[:MAX_NAMED])
            more = f" and {len(silent) - MAX_NAMED} more" if len(silent) > MAX_NAMED else ""
            out.append(condition(
                "task_events_off", "warning", "cluster", "Task events off on some workers",
                f"{plural(len(silent), 'worker')} run tasks but send no task events ({names}{more}), so their "
                f"tasks are not counted. To turn them on: {HOW}", {"events": "partial", "silent_workers": silent}))
        window = config.thresholds.task_failure_window_seconds
        v = tw.total(state.get("slots", []), now, window).get("*", {})
        unsub, gaps, missed = v.get("unsub", 0.0), int(v.get("gaps", 0)), int(v.get("total", 0))
        margin = config.thresholds.task_events_lost_margin
        if unsub > 0 or gaps or missed > margin:
            parts = []
            if unsub > 0 or gaps:
                parts.append(f"the event reader was cut off {plural(max(gaps, 1), 'time')} for {unsub:.0f} s")
            if missed > margin:
                parts.append(f"{plural(missed, 'task run')} went without any event (margin {margin})")
            out.append(condition(
                "task_events_lost", "warning", "cluster", "Task events lost",
                f"In the last {duration(window)} {' and '.join(parts)}: task counts are short. A reader cut off "
                f"for a full output buffer needs a larger client-output-buffer-limit pubsub on Redis.",
                {"unsubscribed_seconds": round(unsub, 3), "gaps": gaps, "missed": missed, "margin": margin,
                 "window_seconds": window, "reader": _reader(tasks)}))
        return out


def _reader(tasks: dict[str, Any]) -> dict[str, Any] | None:
    r = tasks.get("reader")
    if not isinstance(r, dict):
        return None
    return {k: r.get(k) for k in ("broker", "subscribed", "events", "messages", "bad")}


RULE = TaskEvents()
