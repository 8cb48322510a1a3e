"""The task part of the terminal view: one row per task name (runs, failures, retries, p95 runtime,
top exception class) since the collector started counting, or one plain line saying why there is
none (events off, partial, none yet, or a view that cannot see events)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from doorman.contract.shapes import finite, is_count
from doorman.contract.tasks import RUNTIME_BUCKETS, quantile
from doorman.textsafe import printable

MAX_ROWS = 15  # task names shown; the rest summed in a last line
NAME_WIDTH = 40
HOW = "start workers with -E (or worker_send_task_events = True)"
NULL_HINT = ("   Task outcomes: not read here (a one-shot check sees no task events, or task_events is off): "
             "run the daemon (doorman-collect without --once) for task outcomes")


def _n(c: dict[str, Any], key: str) -> int:
    v = c.get(key)
    return v if type(v) is int and v >= 0 else 0


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def p95(h: Any) -> float | None:
    """The p95 of a runtime histogram (seconds), None when it has no runs or is malformed."""
    if not isinstance(h, dict) or not isinstance(h.get("counts"), list):
        return None
    counts = h["counts"]
    if len(counts) != len(RUNTIME_BUCKETS) + 1 or not all(is_count(c) for c in counts):
        return None
    return quantile(0.95, [float(c) for c in counts], RUNTIME_BUCKETS)


def _p95_text(h: Any) -> str:
    q = p95(h)
    if q is None:
        return "-"
    text = f"{q * 1000:.0f} ms" if q < 1 else f"{q:.2f} s"
    return f">{text}" if q >= RUNTIME_BUCKETS[-1] else text


def _top_exception(c: dict[str, Any]) -> str:
    exc = c.get("exceptions")
    if not isinstance(exc, dict):
        return "-"
    best = sorted(((k, v) for k, v in exc.items() if isinstance(k, str) and is_count(v) and v),
                  key=lambda kv: (-kv[1], kv[0]))
    return f"{_cut(printable(best[0][0]), 30)} ×{best[0][1]}" if best else "-"


def _events_line(tasks: dict[str, Any]) -> str | None:
    events = tasks.get("events")
    silent = [w for w in tasks.get("silent_workers") or () if isinstance(w, str)] \
        if isinstance(tasks.get("silent_workers"), list) else []
    if events == "off":
        return f"   Task events: OFF: workers run tasks but send no task events; {HOW}"
    if events == "partial":
        names = ", ".join(_cut(printable(w), 60) for w in silent[:5])
        more = f" and {len(silent) - 5} more" if len(silent) > 5 else ""
        return f"   Task events: PARTIAL: no task events from {names or 'some workers'}{more}; {HOW}"
    if events == "unknown":
        return "   Task events: unknown yet (no task has run since counting began)"
    return None


def lines(snap: dict[str, Any], once: Callable[[str], list[str]]) -> list[str]:
    """The task lines of one snapshot's view. `once(hint)` gives a hint the first time only."""
    tasks = snap.get("tasks")
    if not isinstance(tasks, dict):
        return once(NULL_HINT)
    out: list[str] = []
    since = finite(tasks.get("since"))
    head = f"   Tasks since {time.strftime('%H:%M:%S', time.gmtime(since))} UTC:" if since is not None else "   Tasks:"
    events = _events_line(tasks)
    if events:
        out.append(events)
    by_name = tasks.get("by_name")
    rows = [(k, c) for k, c in by_name.items() if isinstance(k, str) and isinstance(c, dict)] \
        if isinstance(by_name, dict) else []
    if not rows:
        return out
    rows.sort(key=lambda kc: (-_n(kc[1], "failed"), -(_n(kc[1], "succeeded") + _n(kc[1], "failed")), kc[0]))
    out.append(head)
    out.append(f"     {'task':<{NAME_WIDTH}} {'runs':>8} {'failed':>8} {'retried':>8} {'p95':>9}  top exception")
    for name, c in rows[:MAX_ROWS]:
        runs = _n(c, "succeeded") + _n(c, "failed")
        out.append(f"     {_cut(printable(name), NAME_WIDTH):<{NAME_WIDTH}} {runs:>8} {_n(c, 'failed'):>8} "
                   f"{_n(c, 'retried'):>8} {_p95_text(c.get('runtime')):>9}  {_top_exception(c)}")
    if len(rows) > MAX_ROWS:
        rest = rows[MAX_ROWS:]
        out.append(f"     (+{len(rest)} more task names: {sum(_n(c, 'succeeded') + _n(c, 'failed') for _, c in rest)} "
                   f"runs, {sum(_n(c, 'failed') for _, c in rest)} failed)")
    return out
