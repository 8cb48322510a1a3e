"""The daemon line a user runs, as real processes: `doorman-collect --interval N | doorman-analyze | doorman-notify`.

Used by tests/test_detection.py and the detection benchmark. Between collect and analyze sits
`tee`, which copies each snapshot line as it passes (no buffering), so a test can see which
snapshot raised an alert without touching the three stages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tests.support.process import BIN


class DaemonPipeline:
    def __init__(self, redis_url: str, webhook_url: str, interval: float = 30, workdir: str | None = None,
                 tee_alerts: bool = False):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="doorman-daemon-"))
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.snapshots_path = self.dir / "snapshots.ndjson"
        self.alerts_path = self.dir / "alerts.ndjson" if tee_alerts else None  # analyze's output, as it passes
        self.deliveries_path = self.dir / "deliveries.ndjson"
        self.log_path = self.dir / "stderr.log"
        self.interval = interval
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("REDIS_URL", "CELERY_BROKER", "DOORMAN_", "SLACK_", "PAGERDUTY_",
                                         "GENERIC_WEBHOOK", "CHECK_INTERVAL"))}
        self.env.update({
            "REDIS_URL": redis_url, "GENERIC_WEBHOOK_URL": webhook_url, "DOORMAN_CONFIG": "",
            "XDG_STATE_HOME": str(self.dir / "xdg"), "DOORMAN_SPOOL": str(self.dir / "spool.ndjson"),
        })
        self.procs: list[subprocess.Popen] = []

    def start(self) -> DaemonPipeline:
        """Each stage reads the previous one's stdout; all share one process group for teardown."""
        log = open(self.log_path, "ab")
        stages = [
            [str(BIN / "doorman-collect"), "--interval", f"{self.interval:g}"],
            ["tee", str(self.snapshots_path)],
            [str(BIN / "doorman-analyze"), "--state", str(self.dir / "state.json")],
            *([["tee", "-a", str(self.alerts_path)]] if self.alerts_path else []),
            [str(BIN / "doorman-notify")],
        ]
        stdin: Any = subprocess.DEVNULL
        try:
            for i, argv in enumerate(stages):
                last = i == len(stages) - 1
                out = open(self.deliveries_path, "wb") if last else subprocess.PIPE
                group = self.procs[0].pid if self.procs else 0
                p = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=log, env=self.env,
                                     process_group=group)
                if last:
                    out.close()
                if stdin is not subprocess.DEVNULL:
                    stdin.close()  # the next stage holds it now; a closed pipe must reach EOF
                stdin = p.stdout
                self.procs.append(p)
        finally:
            log.close()
        return self

    def snapshots(self) -> list[dict[str, Any]]:
        return _read(self.snapshots_path)

    def alerts(self) -> list[dict[str, Any]]:
        """What analyze wrote (with `tee_alerts`), across restarts on the same workdir."""
        return _read(self.alerts_path) if self.alerts_path else []

    def deliveries(self) -> list[dict[str, Any]]:
        return _read(self.deliveries_path)

    def wait_heartbeat(self, worker: str, timeout: float = 15) -> dict[str, Any]:
        """Until a snapshot shows `worker` alive with a heartbeat: the collector now follows it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for snap in self.snapshots():
                for w in snap.get("workers") or ():
                    if w["name"] == worker and w.get("alive") and w.get("last_heartbeat"):
                        return snap
            self.check_running()
            time.sleep(0.1)
        raise RuntimeError(f"no snapshot showed {worker} heartbeating within {timeout} s: {self.stderr()}")

    def check_running(self) -> None:
        dead = [(p.args[0], p.returncode) for p in self.procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"pipeline stage(s) exited: {dead}: {self.stderr()}")

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to collect: its EOF flows down the line and every stage finishes what it holds."""
        if not self.procs:
            return
        if self.procs[0].poll() is None:
            self.procs[0].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
        if any(p.poll() is None for p in self.procs):
            try:
                os.killpg(self.procs[0].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait()
            if p.stdout:
                p.stdout.close()


def _read(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: a line still being written is read next time."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [orjson.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines() if line.strip()]
