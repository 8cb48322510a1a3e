"""Delivery records (`doorman.contract.delivery`): one NDJSON line per (alert, destination), the
only thing notify writes to stdout.

The ledger also counts what was not delivered (`spooled`, `failed`), which decides the exit status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from doorman.contract.alert import Alert
from doorman.contract.delivery import UNDELIVERED, Delivery, Result, delivery, dry_run
from doorman.timefmt import iso


class Ledger:
    """Writes the records through `emit`, stamped with the wall clock."""

    def __init__(self, emit: Callable[[Delivery], None], wall: Callable[[], float]):
        self.emit, self.wall = emit, wall
        self.undelivered = 0  # records this run that were not `delivered` (spooled, failed)

    def delivery(self, destination: str, alert: Alert, result: Result, http_status: int | None = None,
                 attempts: int = 0, error: str | None = None, from_spool: bool = False,
                 summary_of: int | None = None) -> None:
        if result in UNDELIVERED:
            self.undelivered += 1
        self.emit(delivery(iso(self.wall()), alert, destination, result, http_status, attempts, error,
                           from_spool, summary_of))

    def dry_run(self, destination: str, group: Sequence[Alert], preview: Mapping[str, object]) -> None:
        """`--dry-run`: one record per message (a summary lists its alerts' fingerprints)."""
        self.emit(dry_run(iso(self.wall()), destination, group, preview))
