"""The discovery cache: where the incremental SCAN (`doorman.brokers.redis.discovery`) and the
workers' exchanges are kept between two `doorman-collect --once` runs (and across a daemon's restart).

One file per broker database, named by a hash of the broker URL *without* its password, the
database and `global_keyprefix`; the file holds neither the URL nor any credential, only exchange
names, a SCAN cursor and a few figures. It is a cache: a file that is missing, corrupt, older
than `discovery_cache_ttl` or written for another broker is said once on stderr (except missing)
and replaced by a fresh one. One that is another user's (or a symlink, or in a directory others
may write) is refused as the analyze state file is (`doorman.atomicfile`): never read nor written,
said once; discovery then lives in memory only. Nothing here may stop a snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping

from doorman.atomicfile import check_dir, read_private, sweep_temps, write_atomic
from doorman.bounds import MAX_QUEUES
from doorman.brokers.redis.discovery import MAX_DISCOVERED_NAME, State
from doorman.errors import UnsafePath
from doorman.redact import redact_url

KIND = "doorman-discovery"
MAX_BYTES = 4 * 1024 * 1024


def identity(broker_url: str, db: int, prefix: str, master: str = "") -> str:
    """Which broker database a cache is for: a hash, so the file name says nothing of the broker
    (`master`: the sentinel master's name, which two brokers behind the same sentinels differ by)."""
    raw = f"{redact_url(broker_url)}\0{db}\0{prefix}\0{master}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:32]


def default_path(ident: str, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "celery-doorman", f"discovery-{ident}.json")


class Cache:
    """`load()` once, `save()` when there is something worth keeping; never raises."""

    def __init__(self, path: str, ident: str, ttl: float, warn: Callable[[str], None]):
        self.path, self.ident, self.ttl, self.warn = path, ident, ttl, warn
        self.enabled = bool(path)

    def _off(self, why: str) -> None:
        self.enabled = False
        self.warn(f"discovery cache {why}; keeping discovery in memory only")

    def load(self, now: float) -> tuple[State | None, list[str]]:
        """(the saved SCAN state, the exchanges workers consume), or (None, []) when there is none usable."""
        if not self.enabled:
            return None, []
        try:
            check_dir(os.path.dirname(os.path.abspath(self.path)))
            raw = read_private(self.path, MAX_BYTES)
        except FileNotFoundError:
            return None, []
        except UnsafePath as e:
            self._off(f"refused: {e}")
            return None, []
        except OSError as e:
            self._off(f"{self.path} cannot be read ({e.strerror})")
            return None, []
        problem, state, workers = self._parse(raw, now)
        if problem:
            self.warn(f"discovery cache {self.path} {problem}; starting a fresh one")
        return state, workers

    def _parse(self, raw: bytes, now: float) -> tuple[str | None, State | None, list[str]]:
        if len(raw) > MAX_BYTES:
            return "is too large", None, []
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return "is not JSON", None, []
        if not isinstance(obj, dict) or obj.get("kind") != KIND or obj.get("v") != 1:
            return "is not a doorman-collect discovery cache", None, []
        if obj.get("broker") != self.ident:
            return "was written for another broker", None, []
        saved = obj.get("saved_at")
        if not isinstance(saved, (int, float)) or isinstance(saved, bool) or saved != saved:
            return "is malformed (saved_at)", None, []
        if not 0 <= now - saved <= self.ttl:
            return None, None, []  # stale (or from the future): silently started afresh
        state = State.of(obj.get("scan"))
        workers = obj.get("workers")
        if state is None or not isinstance(workers, list) or not all(
                isinstance(w, str) and len(w) <= MAX_DISCOVERED_NAME for w in workers):
            return "is malformed", None, []
        return None, state, workers[:MAX_QUEUES]

    def save(self, state: State, workers: list[str], now: float) -> None:
        if not self.enabled:
            return
        data = {"v": 1, "kind": KIND, "broker": self.ident, "saved_at": now, "scan": state.as_dict(),
                "workers": workers[:MAX_QUEUES]}
        try:
            write_atomic(self.path, json.dumps(data).encode())  # ASCII: odd bytes escaped
            sweep_temps(self.path)
        except UnsafePath as e:
            self._off(f"refused: {e}")
        except OSError as e:
            self._off(f"{self.path} cannot be written ({e.strerror or e})")
