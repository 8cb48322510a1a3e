"""The terminal view of a snapshot. Text only ever replaces the NDJSON stream, never mixes into it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from doorman.collect import human_tasks
from doorman.textsafe import printable as safe
from doorman.timefmt import parse_iso

HOOK_HINT = ("   * no publish time on these tasks, so their waiting time is unknown here: add "
             "`import doorman.hook; doorman.hook.install(app)` to the Celery app that publishes them")
PIDBOX_HINT = ("   DOWN workers are listed while kombu's pidbox binding for them stays in the broker (a kill -9 "
               "leaves it; Doorman never removes it). To clean one up: redis-cli SREM "
               "_kombu.binding.celery.pidbox $'\\x06\\x16\\x06\\x16NAME.celery.pidbox' (with your "
               "global_keyprefix in front of the key, if any)")


@dataclass
class Memory:
    """What the view remembers across the snapshots of one run: when each worker was last seen
    alive, when the run started, and which hints it has already given (each is said once).
    A worker down for longer than `forget_after` seconds is no longer listed."""

    forget_after: float = 3600.0
    started: float | None = None
    seen: dict[str, float] = field(default_factory=dict)
    said: set[str] = field(default_factory=set)

    def once(self, hint: str) -> list[str]:
        if hint in self.said:
            return []
        self.said.add(hint)
        return [hint]


def _ts(text: object) -> float | None:
    try:
        return parse_iso(text) if isinstance(text, str) else None
    except (ValueError, OverflowError):
        return None


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(t))


def _worker(w: dict[str, Any], now: float, memory: Memory) -> str | None:
    """One worker's line; None when it has been down longer than `forget_after`."""
    name = safe(w.get("name"))
    if w.get("alive"):
        active = w.get("active")
        return f"     worker {name}: up, active {active if isinstance(active, int) else 'unknown'}"
    beat = _ts(w.get("last_heartbeat"))
    last = max((t for t in (beat, memory.seen.get(str(w.get("name")))) if t is not None), default=None)
    if last is not None:
        if now - last > memory.forget_after:
            return None
        return f"     worker {name}: DOWN since {_clock(last)} UTC ({now - last:.0f} s ago)"
    if memory.started is not None and now > memory.started:
        if now - memory.started > memory.forget_after:
            return None
        return (f"     worker {name}: DOWN, not seen alive since this watch started at "
                f"{_clock(memory.started)} UTC ({now - memory.started:.0f} s ago)")
    return f"     worker {name}: DOWN, last seen unknown (it does not answer, and this run has not seen it alive)"


def render(snap: dict[str, Any], number: int | None = None, memory: Memory | None = None) -> str:
    """The health check as text. Pass the same `memory` for every snapshot of a run: workers'
    last-seen times and the once-only hints carry over."""
    memory = memory if memory is not None else Memory()
    now = _ts(snap.get("ts")) or time.time()
    if memory.started is None:
        memory.started = now
    n = number if number is not None else snap.get("seq", "?")
    lines = [f"--- Health Check #{safe(n)} --- {safe(snap.get('ts', ''))} [{safe(snap.get('cluster', ''))}]"]
    if not snap.get("redis_connected"):
        lines.append(f"   {_server(snap)}:{' ' * (15 - len(_server(snap)))}❌ {safe(snap.get('error') or 'unreachable')}")
        return "\n".join(lines)
    workers = snap.get("workers") or []
    unacked = snap.get("unacked") or {}
    held = unacked.get("count")
    oldest_held = unacked.get("oldest_age_seconds")
    lines += [
        f"   Pending tasks:  {snap.get('pending_tasks')}",
        f"   Held by workers (unacked): {held if isinstance(held, int) else 'unknown'}"
        + (f", oldest {oldest_held:.0f} s" if held and isinstance(oldest_held, (int, float)) else ""),
        f"   Alive workers:  {snap.get('alive_workers')}/{len(workers)}",
        f"   Active tasks:   {snap.get('active_tasks')}",
        f"   {_server(snap)}:{' ' * (15 - len(_server(snap)))}✅",
    ]
    no_hook = False
    for name, q in sorted((snap.get("queues") or {}).items()):
        oldest = q.get("oldest") or {}
        age = oldest.get("age_seconds")
        age_txt = f", oldest {age:.0f} s" if isinstance(age, (int, float)) else ""
        if not age_txt and q.get("pending") and oldest:
            age_txt, no_hook = ", oldest: waiting time unknown*", True
        lines.append(f"     queue {safe(name)}: {q.get('pending')}{age_txt}{_consumers(q)}")
    down = hidden = 0
    for w in workers:
        if w.get("alive"):
            memory.seen[str(w.get("name"))] = now
        line = _worker(w, now, memory)
        if line is None:
            hidden += 1
            continue
        down += not w.get("alive")
        lines.append(line)
    if hidden:
        lines.append(f"     ({hidden} more worker(s) down for over {memory.forget_after:g} s, no longer listed)")
    lines += human_tasks.lines(snap, memory.once)
    if no_hook:
        lines += memory.once(HOOK_HINT)
    if down and str(snap.get("broker", "")).startswith(("redis", "rediss", "unix", "sentinel")):
        lines += memory.once(PIDBOX_HINT)
    return "\n".join(lines)


def _consumers(q: dict[str, Any], shown: int = 5) -> str:
    """`, consumers 2 (w1@h, w2@h)`; `, NO CONSUMER` when known to be none; nothing when unknown."""
    n, by = q.get("consumers"), q.get("consumed_by")
    if not isinstance(n, int):
        return ""
    if n == 0:
        return ", NO CONSUMER"
    names = [safe(str(w)[:60]) for w in (by or [])[:shown]]
    more = f", +{len(by) - shown}" if by and len(by) > shown else ""
    return f", consumers {n} ({', '.join(names)}{more})" if names else f", consumers {n}"


def _server(snap: dict[str, Any]) -> str:
    """The broker's kind, for the status line: RabbitMQ for amqp URLs, else Redis."""
    broker = snap.get("broker")
    return "RabbitMQ" if isinstance(broker, str) and broker.startswith(("amqp://", "amqps://", "pyamqp://")) else "Redis"
