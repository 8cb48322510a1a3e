"""doorman-analyze's state file: cooldowns, firing alerts, first-seen times, rate samples.

One run holds an exclusive `flock` on `<file>.lock` from load to exit, so two cron runs at once
cannot both alert: the second waits, then reads what the first wrote. Writes go to `<file>.tmp`
and are moved into place with `os.replace`, so a kill never leaves half a file. A file that is not
JSON, or not ours, or not in the shape we write, is reported on stderr and replaced by a fresh
state: never a crash. Sizes are capped by the rules and the engine, so the file stays small.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Callable
from typing import Any

import orjson

from doorman.analyze import MAX_ALERTS, MAX_CLUSTERS, RULE_OF_TYPE, STATE_KIND, new_state
from doorman.config import SEVERITIES
from doorman.errors import DoormanError
from doorman.timefmt import parse_iso

MAX_STATE_BYTES = 64 * 1024 * 1024


def _num(v: Any) -> bool:
    return type(v) in (int, float)


def _map_of(v: Any, check: Callable[[Any], bool]) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def _entry_ok(e: Any) -> bool:
    if not isinstance(e, dict) or e.get("alert_type") not in RULE_OF_TYPE:
        return False
    if not isinstance(e.get("subject"), str) or not isinstance(e.get("title"), str):
        return False
    if type(e.get("emitted")) is not bool or type(e.get("sent")) is not int:
        return False
    if e["emitted"] and (not _num(e.get("last_sent")) or e.get("sent_severity") not in SEVERITIES):
        return False
    if e.get("peak_severity") is not None and e["peak_severity"] not in SEVERITIES:
        return False
    try:
        parse_iso(e.get("started_at"))
    except (ValueError, OverflowError, OSError):
        return False
    return True


def _cluster_ok(c: Any) -> bool:
    return (
        isinstance(c, dict)
        and (c.get("now") is None or _num(c.get("now")))
        and _map_of(c.get("workers"), _num)
        and _map_of(c.get("forgotten"), _num)
        and _map_of(c.get("cooldown"), _num)
        and _map_of(c.get("heads"), lambda h: _map_of(h, _num))
        and _map_of(c.get("samples"), lambda s: isinstance(s, list) and all(
            isinstance(p, list) and len(p) == 2 and _num(p[0]) and _num(p[1]) for p in s))
        and _map_of(c.get("trends"), lambda t: isinstance(t, list) and len(t) == 2 and _num(t[0]) and _num(t[1]))
        and _map_of(c.get("alerts"), _entry_ok)
        and len(c["alerts"]) <= MAX_ALERTS
    )


def state_problem(obj: Any) -> str | None:
    """Why `obj` is not a state this version wrote (None: it is)."""
    if not isinstance(obj, dict) or obj.get("kind") != STATE_KIND:
        return "not a doorman-analyze state file"
    if obj.get("v") != 1:
        return f"unknown state version {obj.get('v')!r}"
    clusters = obj.get("clusters")
    if not isinstance(clusters, dict) or len(clusters) > MAX_CLUSTERS:
        return "malformed clusters"
    for name, c in clusters.items():
        if not _cluster_ok(c):
            return f"malformed state of cluster {name!r}"
    return None


class StateLocked(DoormanError):
    """Another process holds the state file."""


class StateFile:
    """Open with `load()` (takes the lock), `save()` after each snapshot, `close()` at exit.

    `save(urgent=False)` writes at most every `flush_interval` seconds (wall clock; it only paces
    I/O, never decisions); `urgent=True` writes now. The CLI saves urgently right after writing
    alerts, so a cooldown is never forgotten; at worst a kill between the two repeats an alert.
    """

    def __init__(self, path: str, warn: Callable[[str], None], flush_interval: float = 1.0,
                 lock_timeout: float = 30.0):
        self.path = path
        self.lock_timeout = lock_timeout
        self.warn = warn
        self.flush_interval = flush_interval
        self.lock_fd: int | None = None
        self.enabled = True
        self.last_write = 0.0
        self.write_failed = False

    def load(self) -> dict[str, Any]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            self.warn(f"state file {self.path}: {e.strerror}; keeping state in memory only")
            self.enabled = False
            return new_state()
        if st is not None and not stat.S_ISREG(st.st_mode):
            if self.path != os.devnull:
                self.warn(f"state file {self.path} is not a regular file; keeping state in memory only")
            self.enabled = False
            return new_state()
        self._lock()
        return self._read()

    def _lock(self) -> None:
        """Wait for a concurrent run (a cron overlap lasts a moment), but not forever: a daemon
        holds its state for life, and a second analyzer on the same file must say so, not hang."""
        try:
            self.lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            self.warn(f"cannot lock {self.path}.lock ({e.strerror}); going on without the lock")
            self.lock_fd = None
            return
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.lock_fd)
                    self.lock_fd = None
                    raise StateLocked(
                        f"state file {self.path} is still locked by another doorman-analyze after "
                        f"{self.lock_timeout:g} s (a daemon keeps its state file for life: give each "
                        f"analyzer its own --state)") from None
                time.sleep(0.05)
            except OSError as e:
                self.warn(f"cannot lock {self.path}.lock ({e.strerror}); going on without the lock")
                return

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return new_state()
        except OSError as e:
            self.warn(f"cannot read state file {self.path} ({e.strerror}); starting fresh")
            return new_state()
        if not raw.strip():
            return new_state()
        problem = None
        if len(raw) > MAX_STATE_BYTES:
            problem = "too large"
        else:
            try:
                obj = orjson.loads(raw)
                problem = state_problem(obj)
            except orjson.JSONDecodeError:
                problem = "not valid JSON"
        if problem:
            self.warn(f"state file {self.path}: {problem}; starting with a fresh state (the file will be replaced)")
            return new_state()
        return obj

    def save(self, state: dict[str, Any], urgent: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not urgent and now - self.last_write < self.flush_interval:
            return
        self.last_write = now
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(orjson.dumps(state))
            os.replace(tmp, self.path)
        except OSError as e:
            if not self.write_failed:
                self.warn(f"cannot write state file {self.path} ({e.strerror}); cooldowns will not survive this run")
            self.write_failed = True

    def close(self, state: dict[str, Any] | None = None) -> None:
        if state is not None:
            self.save(state, urgent=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
