"""doorman-scale's loop: snapshots in, one decision line per pool when its size changes (and every
`every` snapshots), each change handed to the `--exec` command.

Each line is acted on as it arrives. A bad line is named on stderr and skipped. Streams of several
clusters may be merged: each (cluster, pool) has its own state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import IO, Any

from doorman.contract.snapshot import snapshot_problem
from doorman.contract.version import SCHEMA_VERSION
from doorman.ndjson import read_objects
from doorman.process import Stop
from doorman.scale.actuate import Executor, Job
from doorman.scale.policy import Decision, Hold, Policy, State, step
from doorman.scale.settings import Pool
from doorman.timefmt import iso

MAX_CLUSTERS = 100  # states kept for merged streams; more clusters than this are not followed
MAX_LABEL = 200  # a cluster name from the stream, as copied into records


def record(d: Decision, cluster: str, reason: str | None = None) -> dict[str, Any]:
    """The decision as the NDJSON line docs/scale.md documents."""
    return {"v": SCHEMA_VERSION, "kind": "scale", "ts": iso(d.ts), "cluster": cluster, "pool": d.pool,
            "queues": list(d.queues), "current_workers": d.current, "desired_workers": d.desired,
            "reason": reason or d.reason, "inputs": d.inputs}


class Stage:
    """The state of every (cluster, pool), fed one snapshot at a time."""

    def __init__(self, pools: list[Pool], policy: Policy, write: Callable[[dict[str, Any]], None],
                 say: Callable[[str], None], executor: Executor | None = None, every: int = 0):
        self.pools, self.policy, self.write, self.say = pools, policy, write, say
        self.executor, self.every = executor, every
        self.states: dict[tuple[str, str], State] = {}
        self.holds: dict[tuple[str, str], str] = {}  # last reason said, so stderr is not flooded
        self.seen = 0

    def feed(self, snap: dict[str, Any]) -> None:
        self.seen += 1
        cluster = str(snap.get("cluster") or "default")[:MAX_LABEL]
        for pool in self.pools:
            key = (cluster, pool.name)
            if key not in self.states and len(self.states) >= MAX_CLUSTERS * len(self.pools):
                continue
            state, out = step(self.states.get(key, State()), snap, pool, self.policy)
            self.states[key] = state
            if isinstance(out, Hold):
                if self.holds.get(key) != out.reason:
                    self.say(f"pool {pool.name} ({cluster}): no decision: {out.reason}")
                self.holds[key] = out.reason
                continue
            self.holds.pop(key, None)
            self._act(out, cluster)

    def _act(self, d: Decision, cluster: str) -> None:
        retry = self.executor is not None and self.executor.failed(d.pool)
        periodic = self.every > 0 and self.seen % self.every == 0
        if not (d.changed or retry or periodic):
            return
        reason = f"retry after a failed command; {d.reason}" if retry and not d.changed else None
        self.write(record(d, cluster, reason))
        if self.executor is not None and (d.changed or retry):
            self.executor.submit(Job(d.pool, d.desired, d.ts, cluster))


def run(stage: Stage, stream: IO[bytes], label: str, say: Callable[[str], None], stop: Stop | None = None) -> None:
    """Feed every snapshot of `stream` to `stage` as it arrives; a `stop` ends it after the
    snapshot in hand (its decision written)."""
    for lineno, snap in read_objects(stream, "snapshot", label, say, snapshot_problem):
        try:
            stage.feed(snap)
        except (BrokenPipeError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - one odd snapshot must not end the stage
            say(f"{label}:{lineno}: cannot decide on this snapshot ({type(e).__name__}: {e}); skipped")
        if stop is not None and stop.is_set():
            break


def locked(write: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """One writer for the reading loop and the command thread: whole lines, never interleaved."""
    lock = threading.Lock()

    def out(obj: dict[str, Any]) -> None:
        with lock:
            write(obj)

    return out
