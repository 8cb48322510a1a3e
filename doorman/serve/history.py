"""The dashboard's history: one SQLite file (stdlib sqlite3, WAL), bounded by the retention.

One row per snapshot in `samples`, one per (snapshot, queue) in `queue_samples` for the
`HISTORY_QUEUES` queues with the most pending tasks at that moment (a broker with thousands of
queues must not blow the file up), one per alert episode in `alerts` (firing → resolved). Rows are
keyed by time, so reading the same line twice (a restart re-reads the end of a file) is harmless.
Queries downsample: a range is cut into at most `MAX_POINTS` buckets, each keeping its maximum,
so a 7-day chart reads ~600 points whatever the snapshot rate. To keep long ranges fast, every
write also folds the snapshot into rollups of `ROLLUPS` seconds (maxima; `broker_up`: minimum),
and a query reads the coarsest table whose resolution is finer than its bucket.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import Any

from doorman.atomicfile import FILE_MODE, make_parent, open_private
from doorman.errors import DoormanError, UnsafePath
from doorman.serve.state import as_dict, name, num

HISTORY_QUEUES = 20
MAX_POINTS = 600
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
MAX_ALERT_ROWS = 10_000  # alert episodes kept whatever the retention (the oldest go first)
PRUNE_EVERY = 300.0  # seconds of snapshot time between retention sweeps
ROLLUPS = (60, 600)  # seconds per rollup row
FIGURES = ("broker_up", "workers_alive", "workers_known", "pending", "active", "unacked", "oldest_age")

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
  cluster TEXT NOT NULL, ts REAL NOT NULL, broker_up INTEGER, workers_alive INTEGER,
  workers_known INTEGER, pending INTEGER, active INTEGER, unacked INTEGER, oldest_age REAL,
  PRIMARY KEY (cluster, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue_samples (
  cluster TEXT NOT NULL, queue TEXT NOT NULL, ts REAL NOT NULL, pending INTEGER, oldest_age REAL,
  PRIMARY KEY (cluster, ts, queue)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
  cluster TEXT NOT NULL, fingerprint TEXT NOT NULL, started_at REAL NOT NULL, alert_type TEXT,
  severity TEXT, subject TEXT, title TEXT, resolved_at REAL,
  PRIMARY KEY (cluster, fingerprint, started_at));
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (cluster, started_at);
CREATE TABLE IF NOT EXISTS samples_roll (
  cluster TEXT NOT NULL, res INTEGER NOT NULL, ts REAL NOT NULL, broker_up INTEGER, workers_alive INTEGER,
  workers_known INTEGER, pending INTEGER, active INTEGER, unacked INTEGER, oldest_age REAL,
  PRIMARY KEY (cluster, res, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue_roll (
  cluster TEXT NOT NULL, res INTEGER NOT NULL, ts REAL NOT NULL, queue TEXT NOT NULL, pending INTEGER,
  oldest_age REAL, PRIMARY KEY (cluster, res, ts, queue)) WITHOUT ROWID;
"""


def _keep(col: str, pick: str = ">") -> str:
    """An upsert's SET for a rollup column: the larger (or smaller) of old and new, NULL meaning none."""
    return (f"{col} = CASE WHEN excluded.{col} IS NULL THEN {col} WHEN {col} IS NULL OR excluded.{col} {pick} {col} "
            f"THEN excluded.{col} ELSE {col} END")


ROLL_SAMPLE = ("INSERT INTO samples_roll VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (cluster, res, ts) DO UPDATE SET "
               + ", ".join(_keep(c, "<" if c == "broker_up" else ">") for c in FIGURES))
ROLL_QUEUE = ("INSERT INTO queue_roll VALUES (?,?,?,?,?,?) ON CONFLICT (cluster, res, ts, queue) DO UPDATE SET "
              + ", ".join(_keep(c) for c in ("pending", "oldest_age")))


class BadHistory(DoormanError):
    exit_code = 2


def default_path(env: dict[str, str]) -> str:
    base = env.get("XDG_STATE_HOME") or os.path.join(env.get("HOME") or ".", ".local", "state")
    return os.path.join(base, "doorman", "history.sqlite3")


def prepare(path: str) -> None:
    """Checked as the analyze state is (`doorman.atomicfile`): the directory 0700 (created so) and
    ours or root's, never writable by others; the file a regular file of ours, 0600, opened without
    following a symlink; SQLite's side files (-wal, -shm, -journal) regular files of ours too.
    Anything else is one line and exit 2 (`BadHistory`); then SQLite opens it by name."""
    try:
        make_parent(path)
        os.close(open_private(path, os.O_RDWR | os.O_CREAT))
        for suffix in ("-wal", "-shm", "-journal"):
            try:
                st = os.lstat(path + suffix)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise UnsafePath(path + suffix, "is not a regular file of ours; refusing to let SQLite use it")
    except UnsafePath as e:
        raise BadHistory(f"--history {e}") from None
    except OSError as e:
        raise BadHistory(f"--history {path}: {e.strerror or e}") from None


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class History:
    """The writer: used by the one thread that reads the streams."""

    def __init__(self, path: str, retention: float):
        self.path, self.retention = path, retention
        prepare(path)
        try:
            self.db = connect(path)
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise BadHistory(f"--history {path}: not a usable SQLite file ({e})") from None
        for suffix in ("-wal", "-shm"):
            try:
                os.chmod(path + suffix, FILE_MODE, follow_symlinks=False)
            except OSError:
                pass
        self.last_prune = 0.0
        self.alert_rows = self.db.execute("SELECT count(*) FROM alerts").fetchone()[0]

    def snapshot(self, cluster: str, ts: float, snap: dict[str, Any], workers_known: int) -> None:
        queues = as_dict(snap.get("queues"))
        rows = []
        for qn, q in queues.items():
            if isinstance(q, dict) and isinstance(q.get("pending"), int):
                oldest = as_dict(q.get("oldest"))
                rows.append((q["pending"], name(qn), num(oldest.get("age_seconds"))))
        rows.sort(key=lambda r: (-r[0], r[1]))
        ages = [r[2] for r in rows if r[2] is not None]
        unacked = as_dict(snap.get("unacked"))
        db = self.db
        figures = (1 if snap.get("redis_connected") else 0, snap.get("alive_workers"), workers_known,
                   snap.get("pending_tasks"), _int(snap.get("active_tasks")), _int(unacked.get("count")),
                   max(ages) if ages else None)
        top = rows[:HISTORY_QUEUES]
        db.execute("BEGIN")
        try:
            db.execute("INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?,?,?,?,?)", (cluster, ts, *figures))
            db.executemany("INSERT OR REPLACE INTO queue_samples VALUES (?,?,?,?,?)",
                           [(cluster, qn, ts, p, age) for p, qn, age in top])
            for res in ROLLUPS:
                at = ts - ts % res
                db.execute(ROLL_SAMPLE, (cluster, res, at, *figures))
                db.executemany(ROLL_QUEUE, [(cluster, res, at, qn, p, age) for p, qn, age in top])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if ts - self.last_prune > PRUNE_EVERY:
            self.prune(ts)

    def alert(self, cluster: str, alert: dict[str, Any], ts: float, started_at: float) -> None:
        fp = name(alert["fingerprint"])[:64]
        if alert["status"] == "resolved":
            self.db.execute("UPDATE alerts SET resolved_at = ? WHERE cluster = ? AND fingerprint = ? "
                            "AND resolved_at IS NULL", (ts, cluster, fp))
            return
        self.db.execute(
            "INSERT INTO alerts VALUES (?,?,?,?,?,?,?,NULL) ON CONFLICT (cluster, fingerprint, started_at) "
            "DO UPDATE SET severity = excluded.severity, title = excluded.title",
            (cluster, fp, started_at, name(alert["alert_type"])[:64], alert["severity"],
             name(alert.get("subject") or ""), name(alert.get("title") or "")))
        self.alert_rows += 1
        if self.alert_rows > MAX_ALERT_ROWS:  # a flood of distinct alerts cannot grow the file past the cap
            self.db.execute("DELETE FROM alerts WHERE rowid IN (SELECT rowid FROM alerts ORDER BY started_at "
                            "LIMIT max(0, (SELECT count(*) FROM alerts) - ?))", (MAX_ALERT_ROWS,))
            self.alert_rows = MAX_ALERT_ROWS

    def prune(self, now: float) -> None:
        cut = now - self.retention
        self.last_prune = now
        self.db.execute("DELETE FROM samples WHERE ts < ?", (cut,))
        self.db.execute("DELETE FROM queue_samples WHERE ts < ?", (cut,))
        self.db.execute("DELETE FROM samples_roll WHERE ts < ? - res", (cut,))
        self.db.execute("DELETE FROM queue_roll WHERE ts < ? - res", (cut,))
        self.db.execute("DELETE FROM alerts WHERE coalesce(resolved_at, started_at) < ?", (cut,))
        self.alert_rows = self.db.execute("SELECT count(*) FROM alerts").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class Reader:
    """The queries behind the JSON API; one per HTTP thread (WAL lets reads run beside the writer)."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)

    def clusters(self, limit: int = 100) -> list[str]:
        """Cluster names, one index seek each (DISTINCT would scan every row)."""
        out: list[str] = []
        name = self.db.execute("SELECT min(cluster) FROM samples").fetchone()[0]
        while name is not None and len(out) < limit:
            out.append(name)
            name = self.db.execute("SELECT min(cluster) FROM samples WHERE cluster > ?", (name,)).fetchone()[0]
        return out

    def series(self, cluster: str, start: float, end: float) -> dict[str, Any]:
        """Aligned arrays for the charts: bucket start times, then per figure and per queue the
        bucket's maximum (null where nothing was recorded)."""
        step = max(1.0, (end - start) / MAX_POINTS)
        res = max([r for r in ROLLUPS if r <= step], default=0)
        if res:  # rows of the rollup whose own span starts before `start` still count
            samples, queues_t, where = "samples_roll", "queue_roll", f"cluster = ? AND res = {res} AND ts > ? - {res}"
        else:
            samples, queues_t, where = "samples", "queue_samples", "cluster = ? AND ts >= ? - 0"
        bucket = "max(0, min(CAST((ts - ?) / ? AS INTEGER), ?))"
        args = (start, step, MAX_POINTS - 1, cluster, start, end)
        rows = self.db.execute(
            f"SELECT {bucket} AS b, max(workers_alive), max(workers_known), max(pending), max(active), "
            f"max(unacked), max(oldest_age), min(broker_up) FROM {samples} WHERE {where} AND ts <= ? "
            "GROUP BY b ORDER BY b", args).fetchall()
        buckets = [r[0] for r in rows]
        index = {b: i for i, b in enumerate(buckets)}
        out: dict[str, Any] = {
            "cluster": cluster, "from": start, "to": end, "step": step,
            "ts": [round(start + b * step, 3) for b in buckets],
        }
        for i, key in enumerate(("workers_alive", "workers_known", "pending", "active", "unacked", "oldest_age",
                                 "broker_up"), start=1):
            out[key] = [r[i] for r in rows]
        queues: dict[str, dict[str, list[Any]]] = {}
        for b, qn, pending, age in self.db.execute(
                f"SELECT {bucket} AS b, queue, max(pending), max(oldest_age) FROM {queues_t} "
                f"WHERE {where} AND ts <= ? GROUP BY b, queue", args):
            q = queues.get(qn)
            if q is None:
                if len(queues) >= HISTORY_QUEUES * 2:
                    continue
                q = queues[qn] = {"pending": [None] * len(buckets), "oldest_age": [None] * len(buckets)}
            at = index.get(b)
            if at is not None:
                q["pending"][at], q["oldest_age"][at] = pending, age
        out["queues"] = dict(sorted(queues.items()))
        return out

    def alerts(self, cluster: str, start: float, end: float, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT fingerprint, alert_type, severity, subject, title, started_at, resolved_at FROM alerts "
            "WHERE cluster = ? AND started_at <= ? AND (resolved_at IS NULL OR resolved_at >= ?) "
            "ORDER BY started_at DESC LIMIT ?", (cluster, end, start, limit)).fetchall()
        keys = ("fingerprint", "alert_type", "severity", "subject", "title", "started_at", "resolved_at")
        return [dict(zip(keys, r, strict=True)) for r in reversed(rows)]

    def close(self) -> None:
        self.db.close()
