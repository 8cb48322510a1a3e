"""doorman-analyze's state file: cooldowns, firing alerts, first-seen times, rate samples.

One run holds an exclusive `flock` on `<file>.lock` from load to exit, so two cron runs at once
cannot both alert: the second waits, then reads what the first wrote. Writes go through
`doorman.atomicfile` (a temporary file, fsync, rename, fsync of the directory), so a kill never
leaves half a file. A file that is not
JSON, or not ours, or not in the shape we write, is reported on stderr and replaced by a fresh
state: never a crash. Sizes are capped by the rules and the engine, so the file stays small.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from typing import Any

import orjson

from doorman.analyze.engine import MAX_ALERTS, MAX_CLUSTERS, STATE_KIND, new_state
from doorman.analyze.ruleset import RuleSet, default_rules
from doorman.atomicfile import FileLock, check_dir, make_parent, read_private, sweep_temps, write_atomic
from doorman.contract.severity import SEVERITIES
from doorman.contract.shapes import is_num, map_of
from doorman.errors import StateLocked, StateUnavailable, UnsafePath
from doorman.timefmt import parse_iso

__all__ = ["StateFile", "StateLocked", "StateUnavailable", "state_problem"]

MAX_STATE_BYTES = 64 * 1024 * 1024


def _entry_ok(e: Any, alert_types: tuple[str, ...]) -> bool:
    if not isinstance(e, dict) or e.get("alert_type") not in alert_types:
        return False
    if not isinstance(e.get("subject"), str) or not isinstance(e.get("title"), str):
        return False
    if type(e.get("emitted")) is not bool or type(e.get("sent")) is not int:
        return False
    if e["emitted"] and (not is_num(e.get("last_sent")) or e.get("sent_severity") not in SEVERITIES):
        return False
    if e.get("peak_severity") is not None and e["peak_severity"] not in SEVERITIES:
        return False
    try:
        parse_iso(e["started_at"])
    except (ValueError, OverflowError, OSError, TypeError, KeyError):
        return False
    return True


def _flap_ok(f: Any) -> bool:
    return (isinstance(f, dict) and type(f.get("occurrences")) is int and is_num(f.get("since"))
            and (f.get("sent") is None or is_num(f["sent"])) and (f.get("quiet_since") is None or is_num(f["quiet_since"]))
            and all(isinstance(f.get(k), str) for k in ("alert_type", "subject", "title"))
            and (f.get("severity") is None or f["severity"] in SEVERITIES))


def _upgrade(c: dict[str, Any], rules: RuleSet) -> None:
    """A cluster written before rules had slices kept their keys at the top: move them in."""
    if "rules" in c:
        return
    legacy = {k: c.pop(k) for k in list(c) if k not in ("now", "alerts", "cooldown")}
    c["rules"] = {}
    for r in rules.rules:  # each old key goes to the first rule whose whole state it makes up
        mine = r.initial_state()
        if mine and all(k in legacy for k in mine):
            mine = {k: legacy.pop(k) for k in mine}
        c["rules"][r.name] = mine


def _cluster_problem(c: Any, rules: RuleSet) -> str | None:
    if not isinstance(c, dict) or not (c.get("now") is None or is_num(c.get("now"))):
        return "malformed"
    _upgrade(c, rules)
    if not (map_of(c.get("cooldown"), is_num) and isinstance(c.get("rules"), dict)
            and map_of(c.setdefault("started", {}), is_num) and map_of(c.setdefault("flaps", {}), _flap_ok)):
        return "malformed cooldowns, flaps or rules"
    if not map_of(c.get("alerts"), lambda e: _entry_ok(e, rules.alert_types)) or len(c["alerts"]) > MAX_ALERTS:
        return "malformed alerts"
    for rule in rules.rules:
        mine = c["rules"].setdefault(rule.name, rule.initial_state())
        problem = rule.state_problem(mine) if isinstance(mine, dict) else "expected an object"
        if problem:
            return f"rule {rule.name}: {problem}"
    return None


def state_problem(obj: Any, rules: RuleSet | None = None) -> str | None:
    """Why `obj` is not a state this version wrote (None: it is). Upgrades older layouts in place."""
    if not isinstance(obj, dict) or obj.get("kind") != STATE_KIND:
        return "not a doorman-analyze state file"
    if obj.get("v") != 1:
        return f"unknown state version {obj.get('v')!r}"
    clusters = obj.get("clusters")
    if not isinstance(clusters, dict) or len(clusters) > MAX_CLUSTERS:
        return "malformed clusters"
    rules = rules or default_rules()
    for name, c in clusters.items():
        problem = _cluster_problem(c, rules)
        if problem:
            return f"malformed state of cluster {name!r} ({problem})"
    return None


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
        self.lock = FileLock(path + ".lock", mkdirs=False)  # the same lock and file rules as the spool
        self.enabled = True
        self.last_write = 0.0
        self.write_failed = False

    def load(self) -> dict[str, Any]:
        """Refuses (`UnsafePath`) a state another user could plant or swap: see doorman.atomicfile."""
        if self.path == os.devnull:
            self.enabled = False
            return new_state()
        self._make_dir()
        check_dir(os.path.dirname(os.path.abspath(self.path)))
        try:
            st = os.lstat(self.path)  # a symlink is refused below, never followed
        except FileNotFoundError:
            st = None
        except OSError as e:
            self.warn(f"state file {self.path}: {e.strerror}; keeping state in memory only")
            self.enabled = False
            return new_state()
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise UnsafePath(self.path, "is a symbolic link; refusing to follow it")
        if st is not None and not stat.S_ISREG(st.st_mode):
            if self.path != os.devnull:
                self.warn(f"state file {self.path} is not a regular file; keeping state in memory only")
            self.enabled = False
            return new_state()
        if st is not None and st.st_uid != os.geteuid():
            raise UnsafePath(self.path, f"belongs to another user (uid {st.st_uid}); refusing to trust it")
        self._lock()
        sweep_temps(self.path)
        return self._read()

    def _make_dir(self) -> None:
        """A fresh machine has no /var/lib/doorman: create it 0700. One that cannot be created
        stops the run (StateUnavailable), for a state kept in memory only would let every cron
        run alert again."""
        parent = os.path.dirname(os.path.abspath(self.path))
        if os.path.isdir(parent):
            return
        try:
            make_parent(self.path)
        except OSError as e:
            raise StateUnavailable(
                f"cannot create the state directory {parent} ({e.strerror}); create it (mode 0700, "
                f"owned by the user running doorman-analyze) or choose another --state") from None

    def _lock(self) -> None:
        """Wait for a concurrent run (a cron overlap lasts a moment), but not forever: a daemon
        holds its state for life, and a second analyzer on the same file must say so, not hang."""
        try:
            got = self.lock.acquire(timeout=self.lock_timeout)
        except UnsafePath:
            raise
        except OSError as e:
            self.warn(f"cannot lock {self.path}.lock ({e.strerror}); going on without the lock")
            return
        if not got:
            raise StateLocked(
                f"state file {self.path} is still locked by another doorman-analyze after "
                f"{self.lock_timeout:g} s (a daemon keeps its state file for life: give each "
                f"analyzer its own --state)")

    def _read(self) -> dict[str, Any]:
        try:
            raw = read_private(self.path, MAX_STATE_BYTES)
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
        try:  # temp file, fsync, rename, fsync the directory: a crash leaves the old or the new state
            write_atomic(self.path, orjson.dumps(state), mkdirs=False)
        except OSError as e:
            if not self.write_failed:
                self.warn(f"cannot write state file {self.path} ({e.strerror}); cooldowns will not survive this run")
            self.write_failed = True

    def close(self, state: dict[str, Any] | None = None) -> None:
        if state is not None:
            self.save(state, urgent=True)
        self.lock.release()
