"""Delivery records: one NDJSON line per (alert, destination), the only thing notify writes to stdout.

The ledger also counts what was not delivered (`spooled`, `failed`), which decides the exit status.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from doorman.sinks.base import Alert
from doorman.timefmt import iso

UNDELIVERED = ("spooled", "failed")


class Ledger:
    """Writes the records through `emit`, stamped with the wall clock."""

    def __init__(self, emit: Callable[[dict[str, Any]], None], wall: Callable[[], float]):
        self.emit, self.wall = emit, wall
        self.undelivered = 0  # records this run that were not `delivered` (spooled, failed)

    def delivery(self, destination: str, alert: Alert, result: str, http_status: int | None = None,
                 attempts: int = 0, error: str | None = None, from_spool: bool = False,
                 summary_of: int | None = None) -> None:
        if result in UNDELIVERED:
            self.undelivered += 1
        self.emit({
            "v": 1, "kind": "delivery", "ts": iso(self.wall()),
            "fingerprint": alert.get("fingerprint"), "alert_type": alert.get("alert_type"),
            "status": alert.get("status"), "severity": alert.get("severity"), "cluster": alert.get("cluster"),
            "subject": alert.get("subject"), "destination": destination, "result": result,
            "http_status": http_status, "attempts": attempts, "error": error,
            "from_spool": from_spool, "summary_of": summary_of,
        })

    def dry_run(self, destination: str, group: Sequence[Alert], preview: dict[str, Any]) -> None:
        """`--dry-run`: one record per message (a summary lists its alerts' fingerprints)."""
        one = group[0] if len(group) == 1 else {}
        self.emit({
            "v": 1, "kind": "delivery", "ts": iso(self.wall()), "fingerprint": one.get("fingerprint"),
            "alert_type": one.get("alert_type"), "status": one.get("status"), "severity": one.get("severity"),
            "destination": destination, "result": "dry_run", "summary_of": len(group) if len(group) > 1 else None,
            "fingerprints": [a["fingerprint"] for a in group], **preview,
        })
