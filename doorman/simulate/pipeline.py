"""The real pipeline, three processes: doorman-collect | doorman-analyze | doorman-notify --dry-run.

The stages are joined as doorman-run joins them (`doorman.run.chain`), with a tee on both pipes:
each snapshot line is shown as the human view and handed to analyze at once; each alert line is
printed and handed to notify at once. Nothing waits for EOF,
exactly as in a daemon. When collect ends (after --count checks, or on SIGTERM) its EOF flows down
the chain and every stage finishes what it holds.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from typing import IO, Any

import orjson

from doorman.collect.human import Memory, render
from doorman.run.chain import Chain, Stage, lines
from doorman.simulate.procs import command, spawn, stop
from doorman.simulate.stopping import wait_proc

STAGES = ("doorman-collect", "doorman-analyze", "doorman-notify")


class View:
    """Where things are shown. `alerts` gets only alert lines (NDJSON); `human` everything else."""

    def __init__(self, alerts: IO[str], human: IO[str]):
        self.alerts, self.human = alerts, human
        self.lock = threading.Lock()
        self.checks = 0
        self.alert_lines: list[dict[str, Any]] = []
        self.deliveries = 0
        self.memory = Memory()  # one --human memory for the demo's run: each hint said once

    def _write(self, stream: IO[str], text: str) -> None:
        with self.lock:
            try:
                stream.write(text if text.endswith("\n") else text + "\n")
                stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def note(self, text: str) -> None:
        self._write(self.human, text)

    def snapshot(self, snap: dict[str, Any]) -> None:
        self.checks += 1
        self._write(self.human, render(snap, memory=self.memory))

    def alert(self, line: bytes, obj: dict[str, Any] | None) -> None:
        if obj is not None:
            self.alert_lines.append(obj)
        self._write(self.alerts, line.decode("utf-8", "replace").rstrip("\n"))

    def delivery(self, rec: dict[str, Any]) -> None:
        self.deliveries += 1
        types = {a.get("fingerprint"): a.get("alert_type") for a in self.alert_lines}
        fps = rec.get("fingerprints") or [rec.get("fingerprint")]
        what = ", ".join(str(rec.get("alert_type") or types.get(f, f)) for f in fps if f)
        why = f" via {rec['url']}" if rec.get("url") else f" ({rec['error']})" if rec.get("error") else ""
        self._write(self.human, f"   -> {rec.get('destination', '?')} {rec.get('result', '?')}: {what}{why}")


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


class Pipeline:
    def __init__(self, env: dict[str, str], view: View, interval: float, count: int | None,
                 state_path: str, config_path: str | None = None,
                 on_snapshot: Callable[[dict[str, Any]], None] | None = None):
        cfg = ["--config", config_path] if config_path else []
        count_args = ["--count", str(count)] if count else []
        self.argv = {
            "doorman-collect": [*command("doorman-collect"), "--interval", str(interval), *count_args, *cfg],
            "doorman-analyze": [*command("doorman-analyze"), "--state", state_path, *cfg],
            "doorman-notify": [*command("doorman-notify"), "--dry-run", *cfg],
        }
        self.shown = (f"doorman-collect --interval {interval:g}{' --count ' + str(count) if count else ''}"
                      " | doorman-analyze | doorman-notify --dry-run")
        self.env, self.view, self.on_snapshot = env, view, on_snapshot
        self.procs: dict[str, subprocess.Popen] = {}
        self.chain: Chain | None = None
        self.seen_snapshot = False

    def start(self) -> Pipeline:
        """The three stages joined by OS pipes (doorman-run's `Chain`), with a view on each joint."""
        self.chain = Chain([Stage(name, self.argv[name]) for name in STAGES], self.env,
                           taps=[lines(self._snapshot), lines(self._alert)], out=lines(self._delivery),
                           stdin=subprocess.DEVNULL, spawn=spawn, tap_first=True).start()
        self.procs = self.chain.procs
        return self

    def _snapshot(self, line: bytes) -> None:
        obj = _parse(line)
        if obj is not None and obj.get("kind") == "snapshot":
            self.view.snapshot(obj)
            if not self.seen_snapshot and self.on_snapshot:
                self.seen_snapshot = True
                self.on_snapshot(obj)

    def _alert(self, line: bytes) -> None:
        if line.strip():
            self.view.alert(line, _parse(line))

    def _delivery(self, line: bytes) -> None:
        obj = _parse(line)
        if obj is not None:
            self.view.delivery(obj)

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        """Exit code of every stage, once all three ended and every line was shown."""
        for name in STAGES:
            wait_proc(self.procs[name], timeout)  # a stop signal ends the wait (stopping.Stopped)
        if self.chain is not None:
            self.chain.join(timeout)
        return {name: self.procs[name].returncode for name in STAGES}

    def stop(self) -> None:
        """Ask collect to finish (SIGTERM ends it after the snapshot in hand); the rest drain and exit."""
        collect = self.procs.get("doorman-collect")
        if collect is not None and collect.poll() is None:
            collect.terminate()
        for name in STAGES:
            p = self.procs.get(name)
            if p is not None:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                stop(p, timeout=1)
        if self.chain is not None:
            self.chain.join(2)
