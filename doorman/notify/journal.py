"""The spool: a write-ahead journal of the alerts a destination has not taken yet.

One NDJSON entry per (alert, destination), in arrival order, so a replay sends them in order and a
destination that already took an alert never gets it again. Every change rewrites the file with
`atomicfile.write_atomic` under a `FileLock` on `<spool>.lock`, so a crash leaves the old or the
new spool, never half of one, and two runs never replay the same entry. Permanent failures go to
a dead-letter file beside it instead: kept for a human, never retried.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from doorman.atomicfile import (
    FileLock,
    append_durable,
    make_parent,
    open_private,
    read_private,
    sweep_temps,
    write_atomic,
)
from doorman.contract.alert import Alert
from doorman.timefmt import iso, parse_iso

Entry = dict[str, Any]


def default_path(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "celery-doorman", "spool.ndjson")


def dead_letter_path(spool_path: str) -> str:
    p = Path(spool_path)
    return str(p.with_name(p.stem + ".dead.ndjson"))


def entry_id(destination: str, alert: Alert) -> str:
    """Same alert, same destination, same id: adding it twice keeps one entry."""
    raw = f"{destination}|{alert.get('fingerprint')}|{alert.get('status')}|{alert.get('ts')}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def new_entry(destination: str, alert: Alert, attempts: int, error: str | None,
              http_status: int | None, next_attempt_at: float | None, now: float) -> Entry:
    return {"v": 1, "kind": "spooled", "id": entry_id(destination, alert), "destination": destination,
            "spooled_at": iso(now), "attempts": attempts, "http_status": http_status, "error": error,
            "next_attempt_at": iso(next_attempt_at) if next_attempt_at else None, "alert": alert}


def due_at(entry: Entry) -> float:
    """When the entry may be tried again (0: now); a receiver's Retry-After can push it back."""
    try:
        return parse_iso(entry["next_attempt_at"]) if entry.get("next_attempt_at") else 0.0
    except ValueError:
        return 0.0


class Spool:
    """The spool file, its lock and its dead-letter file."""

    def __init__(self, path: str, on_error: Callable[[str], None] = lambda msg: None,
                 dead_path: str | None = None):
        self.path = path
        self.dead_path = dead_path or dead_letter_path(path)
        self.on_error = on_error
        self.lock = FileLock(path + ".lock")
        self._cache: tuple[tuple[int, int, int], Counter[str]] | None = None

    def check(self) -> None:
        """At start: create the directory 0700 (or check it), and refuse (`UnsafePath`, one line) a
        spool, dead-letter or lock file another user could have planted, forged or linked."""
        make_parent(self.path)
        for path in (self.path, self.dead_path, self.lock.path):
            try:
                os.close(open_private(path, os.O_RDONLY))
            except FileNotFoundError:
                pass
        sweep_temps(self.path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes; re-entrant within this one."""
        with self.lock.held():
            yield

    def load(self) -> list[Entry]:
        """Entries in order. An unreadable line is moved to the dead-letter file, never dropped."""
        out, bad = self._parse(report=False)
        if bad:
            with self.locked():  # re-read under the lock: never rewrite from a stale read
                out, bad = self._parse(report=True)
                if bad:
                    self.dead(bad)
                    self.save(out)
        return out

    def _parse(self, report: bool) -> tuple[list[Entry], list[Entry]]:
        try:
            data = read_private(self.path)
        except FileNotFoundError:
            return [], []
        out, bad = [], []
        for n, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
                if not isinstance(entry, dict) or not isinstance(entry.get("alert"), dict) \
                        or not isinstance(entry.get("destination"), str):
                    raise ValueError("not a spool entry")
            except (orjson.JSONDecodeError, ValueError) as e:
                if report:
                    self.on_error(f"{self.path}:{n}: unreadable spool entry ({e}); moved to {self.dead_path}")
                bad.append({"v": 1, "kind": "dead_letter", "reason": "unreadable spool entry",
                            "raw": line.decode("utf-8", "replace")})
                continue
            out.append(entry)
        return out, bad

    def save(self, entries: list[Entry]) -> None:
        """Replace the spool atomically: readers see the old or the new file, never a mix."""
        write_atomic(self.path, b"".join(orjson.dumps(e) + b"\n" for e in entries))
        self._cache = None

    def add(self, new: list[Entry]) -> None:
        with self.locked():
            entries = self.load()
            known = {e.get("id") for e in entries}
            entries += [e for e in new if e["id"] not in known]
            self.save(entries)

    def dead(self, records: list[dict[str, Any]]) -> None:
        """Append to the dead-letter file (append-only: nothing there is ever rewritten)."""
        append_durable(self.dead_path, b"".join(orjson.dumps(r, default=str) + b"\n" for r in records))

    def counts(self) -> Counter[str]:
        """Entries per destination; re-read only when the file changed (cheap to ask per alert)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return Counter()
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache is None or self._cache[0] != sig:
            self._cache = (sig, Counter(e["destination"] for e in self.load()))
        return self._cache[1]
