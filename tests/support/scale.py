"""A small queueing model of workers serving one queue, writing the snapshots doorman-collect would:
the scaling policy's tests, doorman-scale's CLI tests and the scale benchmark drive it."""

from __future__ import annotations

from collections import deque

import orjson

from doorman.timefmt import iso

T0 = 1_800_000_000.0

class Model:
    """Workers serving one FIFO queue at `pace` tasks/s each; snapshots as doorman-collect writes them."""

    def __init__(self, workers: int = 1, pace: float = 1.0):
        self.t = 0.0
        self.pace = pace
        self.processed: dict[str, int] = {}
        self.alive: list[str] = []
        self.waiting: deque[list[float]] = deque()  # [arrival time, count]
        self.credit: dict[str, float] = {}
        self.scale_to(workers)

    def scale_to(self, n: int) -> None:
        while len(self.alive) < n:
            name = f"w{len(self.processed) + 1}@host"
            self.alive.append(name)
            self.processed[name] = 0
            self.credit[name] = 0.0
        del self.alive[n:]

    def crash(self, name: str) -> None:
        self.alive.remove(name)

    @property
    def pending(self) -> int:
        return int(sum(c for _, c in self.waiting))

    def advance(self, dt: float, rate: float = 0.0, burst: int = 0) -> None:
        """dt seconds of `rate` arrivals/s (plus `burst` at once), served one second at a time."""
        if burst:
            self.waiting.append([self.t, burst])
        for _ in range(int(dt)):
            self.t += 1
            if rate:
                self.waiting.append([self.t, rate])
            for w in self.alive:
                self.credit[w] += self.pace
                while self.credit[w] >= 1 and self.waiting:
                    head = self.waiting[0]
                    take = min(head[1], 1.0)
                    head[1] -= take
                    self.credit[w] -= take
                    self.processed[w] += 1
                    if head[1] <= 1e-9:
                        self.waiting.popleft()
                self.credit[w] = min(self.credit[w], 1.0)

    def snapshot(self) -> dict:
        ts = T0 + self.t
        oldest = ({"task_id": "x", "task_name": "demo.sleep", "priority": 0, "published_at": None,
                   "age_seconds": self.t - self.waiting[0][0]} if self.waiting else None)
        return {"v": 1, "kind": "snapshot", "ts": iso(ts), "cluster": "prod", "redis_connected": True,
                "error": None, "pending_tasks": self.pending,
                "queues": {"celery": {"pending": self.pending, "oldest": oldest, "heads": []}},
                "alive_workers": len(self.alive),
                "workers": [{"name": w, "alive": True, "processed": self.processed[w],
                             "last_heartbeat": iso(ts)} for w in self.alive]}


def burst_lines(n: int = 12, burst_at: int = 2, burst: int = 100) -> list[bytes]:
    """Snapshots 5 s apart of one worker meeting a burst: the pool grows at the 4th line."""
    m = Model(workers=1)
    out = []
    for i in range(n):
        m.advance(5, burst=burst if i == burst_at else 0)
        out.append(orjson.dumps(m.snapshot()) + b"\n")
    return out
