"""Reading alerts: validate each NDJSON line, and gather the lines that arrive together into batches.

A reading thread feeds a bounded queue, so the dispatcher can wait for input with a timeout (a
spool replay may be due) and a burst of lines becomes one batch (Slack gets one summary).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, cast

from doorman.contract.alert import Alert
from doorman.contract.alert import alert_problem as contract_problem
from doorman.contract.tick import Tick, tick_problem
from doorman.ndjson import json_type, read_records

BATCH_WINDOW = 0.2  # seconds to gather lines that arrive together into one batch
BATCH_MAX = 500
INTAKE_MAX = 1000


class Intake:
    """Reads items on a thread so the dispatcher can wait with a timeout and gather bursts."""

    EOF = object()

    def __init__(self, items: Iterable[Any]):
        # bounded: a flood waits in the pipe (back-pressure) rather than in this process's memory
        self.q: queue.Queue[Any] = queue.Queue(maxsize=INTAKE_MAX)
        self.thread = threading.Thread(target=self._pump, args=(items,), daemon=True)
        self.thread.start()

    def _pump(self, items: Iterable[Any]) -> None:
        try:
            for item in items:
                self.q.put(item)
        finally:
            self.q.put(self.EOF)

    def wake(self) -> None:
        """End a wait in `batch` now (a stop was requested). Never blocks."""
        try:
            self.q.put_nowait(None)
        except queue.Full:
            pass

    def batch(self, timeout: float | None, window: float = BATCH_WINDOW,
              limit: int = BATCH_MAX) -> tuple[list[Any], bool]:
        """(items, eof): wait up to `timeout` for one item, then take what arrives within `window`."""
        try:
            first = self.q.get(timeout=timeout)
        except queue.Empty:
            return [], False
        if first is self.EOF:
            return [], True
        if first is None:
            return [], False
        out = [first]
        deadline = time.monotonic() + window
        while len(out) < limit:
            left = deadline - time.monotonic()
            try:
                item = self.q.get(timeout=left) if left > 0 else self.q.get_nowait()
            except queue.Empty:
                break
            if item is self.EOF:
                return out, True
            if item is not None:
                out.append(item)
        return out, False

    def drain(self) -> list[Any]:
        """What was read but not handled yet (on stop: it goes to the spool)."""
        out: list[Any] = []
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                return out
            if item is not None and item is not self.EOF:
                out.append(item)


def stream_alerts(stream: IO[bytes], report: Callable[[str], None],
                  name: str = "<stdin>", ticks: bool = False) -> Iterator[Alert | Tick]:
    """Good alerts from an NDJSON stream; each bad line is reported with its number and skipped.
    With `ticks`, doorman-analyze's `tick` records (a cycle went through: `doorman.contract.tick`) come
    through too, in stream order, for the heartbeat; they never reach a destination."""
    for lineno, obj in read_records(stream, name, report, what="alert"):
        if ticks and isinstance(obj, dict) and obj.get("kind") == "tick":
            problem = tick_problem(obj)
            if problem:
                report(f"{name}:{lineno}: {problem}; skipped")
            else:
                yield cast(Tick, obj)  # checked
            continue
        problem = alert_problem(obj)
        if problem:
            report(f"{name}:{lineno}: {problem}; skipped")
            continue
        yield cast(Alert, obj)  # checked


def alert_problem(obj: Any) -> str | None:
    """Why this line is not an alert we can deliver (None: it is): the contract's check
    (`doorman.contract.alert`), said as doorman-notify says it."""
    if not isinstance(obj, dict):
        return f"expected a JSON object (an alert), got {json_type(obj)}"
    if obj.get("kind") != "alert":
        return f"not an alert (kind is {obj.get('kind')!r})"
    problem = contract_problem(obj)
    return f"invalid alert: {problem}" if problem else None
