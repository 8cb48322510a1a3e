"""One line of a followed stream in, state and history updated; bad lines named, never fatal.

Snapshots and alerts are taken; every other `kind` (delivery records, a future kind) is ignored.
A line that is not JSON, not an object, or a snapshot or alert that does not fit the contract is
reported on stderr with its file and line number, as doorman-analyze does, and skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import orjson

from doorman.contract.alert import Alert, alert_problem
from doorman.contract.snapshot import Snapshot, snapshot_problem
from doorman.serve.history import History
from doorman.serve.state import State, name
from doorman.timefmt import parse_iso

MAX_FUTURE_SECONDS = 300.0  # a line dated further ahead of serve's clock is refused


class Ingest:
    def __init__(self, state: State, history: History | None, warn: Callable[[str], None],
                 clock: Callable[[], float] = time.time):
        self.state, self.history, self.warn, self.clock = state, history, warn, clock
        self.bad_lines = 0
        self.said_clusters: set[str] = set()
        self.future_lines = 0  # refused: dated over MAX_FUTURE_SECONDS ahead (said once)

    def _future(self, where: str, obj: dict[str, Any]) -> bool:
        """Whether `obj` is dated too far ahead: one such line would freeze the state (every real
        snapshot after it looks older) and the retention would wipe the history. Said once."""
        ahead = parse_iso(obj["ts"]) - self.clock()
        if ahead <= MAX_FUTURE_SECONDS:
            return False
        self.future_lines += 1
        if self.future_lines == 1:
            self.warn(f"{where}: {obj.get('kind')} dated {ahead:.0f} s ahead of this clock; lines dated over "
                      f"{MAX_FUTURE_SECONDS:.0f} s ahead are skipped (said once)")
        return True

    def _bad(self, where: str, why: str) -> None:
        self.bad_lines += 1
        self.warn(f"{where}: {why}; skipped")

    def line(self, source: str, lineno: int, raw: bytes) -> None:
        text = raw.strip()
        if not text:
            return
        where = f"{source}:{lineno}"
        try:
            obj: Any = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            return self._bad(where, f"not valid JSON ({e})")
        if not isinstance(obj, dict):
            return self._bad(where, f"expected a JSON object, got {type(obj).__name__}")
        kind = obj.get("kind")
        try:
            if kind == "snapshot":
                self._snapshot(where, obj)
            elif kind == "alert":
                self._alert(where, obj)
        except (TypeError, ValueError, KeyError, OverflowError) as e:  # hostile shapes past the checks
            self._bad(where, f"unreadable {kind} ({type(e).__name__})")

    def _snapshot(self, where: str, obj: dict[str, Any]) -> None:
        problem = snapshot_problem(obj)
        if problem:
            return self._bad(where, f"not a snapshot: {problem}")
        if self._future(where, obj):
            return None
        if not self.state.snapshot(cast(Snapshot, obj)):  # checked
            return self._refused(obj)
        if self.history is not None:
            cluster = name(obj.get("cluster") or "default")
            c = self.state.clusters[cluster]
            self.history.snapshot(cluster, parse_iso(obj["ts"]), obj, len(c.workers) + c.workers_omitted)

    def _alert(self, where: str, obj: dict[str, Any]) -> None:
        problem = alert_problem(obj)
        if problem:
            return self._bad(where, f"not an alert: {problem}")
        if self._future(where, obj):
            return None
        if not self.state.alert(cast(Alert, obj)):  # checked
            return self._refused(obj)
        if self.history is not None:
            cluster = name(obj.get("cluster") or "default")
            ts = parse_iso(obj["ts"])
            try:
                started = parse_iso(obj["started_at"]) if isinstance(obj.get("started_at"), str) else ts
            except (ValueError, OverflowError, OSError):
                started = ts
            self.history.alert(cluster, obj, ts, started)

    def _refused(self, obj: dict[str, Any]) -> None:
        cluster = name(obj.get("cluster") or "default")
        if cluster in self.state.clusters_refused and cluster not in self.said_clusters and len(self.said_clusters) < 10:
            self.said_clusters.add(cluster)
            self.warn(f"cluster {cluster!r} ignored: over the cap of {self.state.limits.max_clusters} clusters")
