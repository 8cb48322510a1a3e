"""The terminal view of a snapshot. Text only ever replaces the NDJSON stream, never mixes into it."""

from __future__ import annotations

from typing import Any


def render(snap: dict[str, Any], number: int | None = None) -> str:
    n = number if number is not None else snap.get("seq", "?")
    lines = [f"--- Health Check #{n} --- {snap.get('ts', '')} [{snap.get('cluster', '')}]"]
    if not snap.get("redis_connected"):
        lines.append(f"   Redis:          ❌ {snap.get('error') or 'unreachable'}")
        return "\n".join(lines)
    workers = snap.get("workers") or []
    lines += [
        f"   Pending tasks:  {snap.get('pending_tasks')}",
        f"   Alive workers:  {snap.get('alive_workers')}/{len(workers)}",
        f"   Active tasks:   {snap.get('active_tasks')}",
        "   Redis:          ✅",
    ]
    for name, q in sorted((snap.get("queues") or {}).items()):
        oldest = q.get("oldest") or {}
        age = oldest.get("age_seconds")
        age_txt = f", oldest {age:.0f}s" if isinstance(age, (int, float)) else ""
        lines.append(f"     queue {name}: {q.get('pending')}{age_txt}")
    for w in workers:
        lines.append(f"     worker {w['name']}: {'up' if w.get('alive') else 'DOWN'}, active {w.get('active')}")
    return "\n".join(lines)
