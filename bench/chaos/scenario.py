"""A seeded random plan of chaos: what to break, when, and for how long. Pure: no processes, no clock.

The plan is a list of `Step`s at offsets (seconds from the soak's start), built from episodes laid
end to end with a quiet settle after each, so every alert has one cause and time to resolve:

- `kill`: kill -9 one worker, restart it 8–20 s later;
- `flap`: the same worker killed 3–5 times, a few seconds down and up each time;
- `broker_restart`: kill -9 the redis-server, start it again on the same port 6–10 s later;
- `pause_short` / `pause_long`: `CLIENT PAUSE` of 1–2 s (must stay silent) / 12–15 s (a broker
  that does not answer its check: `redis_down`);
- `burst_below` / `burst_above`: tasks enqueued at once, well under / four times the backlog
  threshold, slow enough (1 s each) that the backlog outlives a check interval;
- `unconsumed`: a few tasks routed to a queue no worker consumes, left there 60–150 s, then purged;
- `idle`: nothing at all.

The first episodes cover every kind once, in a seeded order (so even a short soak mixes them);
after that kinds are drawn at random. Nothing starts in the first `WARMUP` seconds (the daemon's
start-up grace) and the last episode ends `TAIL` seconds before the end, so its alerts arrive.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

KINDS = ("kill", "flap", "broker_restart", "pause_long", "burst_above", "unconsumed",
         "burst_below", "pause_short", "idle")
WEIGHTS = {"kill": 4, "flap": 2, "broker_restart": 2, "pause_long": 1, "burst_above": 2,
           "unconsumed": 1, "burst_below": 2, "pause_short": 1, "idle": 2}
WARMUP = 30.0
TAIL = 20.0
ORPHAN = "orphan"  # the queue no worker consumes


@dataclass(frozen=True)
class Step:
    at: float  # seconds from the soak's start
    action: str  # kill | start | broker_kill | broker_start | pause | burst | orphan | purge | idle
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    """What the plan must know of the system under test."""

    workers: tuple[str, ...] = ("w1@chaos", "w2@chaos", "w3@chaos")
    threshold: int = 20  # MAX_QUEUE_SIZE given to the daemon
    settle: float = 15.0  # quiet after an episode
    broker_settle: float = 35.0  # quiet after a broker episode: workers reconnect, the grace runs out


def _episode(kind: str, t: float, rng: random.Random, p: Params) -> tuple[list[Step], float]:
    """The steps of one episode starting at t, and when it ends (before its settle)."""
    r = lambda a, b: round(rng.uniform(a, b), 1)  # noqa: E731 - local shorthand
    if kind == "kill":
        w = rng.choice(p.workers)
        down = r(8, 20)
        steps = [Step(t, "kill", {"worker": w})]
        if rng.random() < 0.5:  # a burst while it is dead: the others must cope, nothing else fires
            steps.append(Step(t + 3, "burst", {"n": rng.randint(4, p.threshold // 2), "seconds": 0.5}))
        return steps + [Step(t + down, "start", {"worker": w})], t + down
    if kind == "flap":
        w = rng.choice(p.workers)
        steps = []
        for _ in range(rng.randint(3, 5)):
            down, up = r(6, 10), r(10, 16)
            steps += [Step(t, "kill", {"worker": w}), Step(t + down, "start", {"worker": w})]
            t += down + up
        return steps, t
    if kind == "broker_restart":
        down = r(6, 10)
        return [Step(t, "broker_kill"), Step(t + down, "broker_start")], t + down
    if kind in ("pause_short", "pause_long"):
        seconds = r(1, 2) if kind == "pause_short" else r(12, 15)
        return [Step(t, "pause", {"seconds": seconds})], t + seconds
    if kind == "burst_below":
        return [Step(t, "burst", {"n": rng.randint(4, p.threshold // 2), "seconds": 0.5})], t + 5
    if kind == "burst_above":
        n = 4 * p.threshold  # workers prefetch 4 each: the queue stays over the threshold ~15 s
        return [Step(t, "burst", {"n": n, "seconds": 1.0})], t + n / len(p.workers) + 5
    if kind == "unconsumed":
        hold = r(60, 150)
        return [Step(t, "orphan", {"queue": ORPHAN, "n": 3}), Step(t + hold, "purge", {"queue": ORPHAN})], t + hold
    if kind == "idle":
        seconds = r(20, 90)
        return [Step(t, "idle", {"seconds": seconds})], t + seconds
    raise ValueError(kind)


def plan(seed: int, duration: float, p: Params = Params(), first: tuple[str, ...] | None = None) -> list[Step]:
    """Episodes from WARMUP until duration - TAIL; one that would not fit is skipped. `first`: the
    kinds to begin with, in this order (default: every kind once, shuffled)."""
    rng = random.Random(seed)
    if first is None:
        order = list(KINDS)
        rng.shuffle(order)
    else:
        order = list(first)
    steps: list[Step] = []
    t = WARMUP
    misses = 0
    while misses < 20:
        kind = order.pop(0) if order else rng.choices(list(WEIGHTS), list(WEIGHTS.values()))[0]
        episode, end = _episode(kind, t, rng, p)
        settle = p.broker_settle if kind in ("broker_restart", "pause_long") else p.settle
        if end + settle > duration - TAIL:
            misses += 1
            continue
        steps += episode
        t = end + settle
    return steps


def kinds(steps: list[Step]) -> dict[str, int]:
    """How many steps of each action: a one-line summary of a plan."""
    out: dict[str, int] = {}
    for s in steps:
        out[s.action] = out.get(s.action, 0) + 1
    return out
