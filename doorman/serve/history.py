"""The dashboard's history: one SQLite file (stdlib sqlite3, WAL), bounded by the retention.

One row per snapshot in `samples`, one per (snapshot, queue) in `queue_samples` for the
`HISTORY_QUEUES` queues with the most pending tasks at that moment (a broker with thousands of
queues must not blow the file up), one per alert episode in `alerts` (firing → resolved). Rows are
keyed by time, so reading the same line twice (a restart re-reads the end of a file) is harmless.
Queries downsample: a range is cut into at most `MAX_POINTS` buckets, each keeping its maximum,
so a 7-day chart reads ~600 points whatever the snapshot rate. To keep long ranges fast, every
write also folds the snapshot into rollups of `ROLLUPS` seconds (maxima; `broker_up`: minimum),
and a query reads the coarsest table whose resolution is finer than its bucket.

Task outcomes (doorman.serve.task_history): `task_samples` holds, per snapshot and task name (the
`HISTORY_TASKS` busiest, the rest as "(other)"), what that snapshot added to the runs, failures,
retries and runtime histogram buckets; `task_roll` their sums per rollup period; `task_status`
whether the snapshot carried task events at all (`EVENTS_CODE`, 0: no `tasks` section). A chart
bucket of task figures is the **sum** of its increments, so failures are never lost to a maximum.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import Any

from doorman.atomicfile import FILE_MODE, make_parent, open_private
from doorman.errors import DoormanError, UnsafePath
from doorman.serve.state import as_dict, name, num
from doorman.serve.task_history import CODE_EVENTS, EVENTS_CODE, HIST_SIZE, HISTORY_TASKS, Increments, p95

HISTORY_QUEUES = 20
MAX_POINTS = 600
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
MAX_ALERT_ROWS = 10_000  # alert episodes kept whatever the retention (the oldest go first)
PRUNE_EVERY = 300.0  # seconds of snapshot time between retention sweeps
ROLLUPS = (60, 600)  # seconds per rollup row
HCOLS = tuple(f"h{i}" for i in range(HIST_SIZE))  # the runtime histogram's buckets (not cumulative)
TASK_FIGURES = ("runs", "failed", "retried", *HCOLS)
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
CREATE TABLE IF NOT EXISTS task_status (
  cluster TEXT NOT NULL, ts REAL NOT NULL, events INTEGER, PRIMARY KEY (cluster, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS task_status_roll (
  cluster TEXT NOT NULL, res INTEGER NOT NULL, ts REAL NOT NULL, events INTEGER,
  PRIMARY KEY (cluster, res, ts)) WITHOUT ROWID;
"""


def _task_table(table: str, rollup: bool) -> str:
    cols = ", ".join(f"{c} INTEGER" for c in TASK_FIGURES)
    res, key = ("res INTEGER NOT NULL, ", "res, ") if rollup else ("", "")
    return (f"CREATE TABLE IF NOT EXISTS {table} (cluster TEXT NOT NULL, {res}ts REAL NOT NULL, name TEXT NOT NULL, "
            f"{cols}, PRIMARY KEY (cluster, {key}ts, name)) WITHOUT ROWID;\n")


SCHEMA += _task_table("task_samples", False) + _task_table("task_roll", True)



def _keep(col: str, pick: str = ">") -> str:
    """An upsert's SET for a rollup column: the larger (or smaller) of old and new, NULL meaning none."""
    return (f"{col} = CASE WHEN excluded.{col} IS NULL THEN {col} WHEN {col} IS NULL OR excluded.{col} {pick} {col} "
            f"THEN excluded.{col} ELSE {col} END")


ROLL_SAMPLE = ("INSERT INTO samples_roll VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (cluster, res, ts) DO UPDATE SET "
               + ", ".join(_keep(c, "<" if c == "broker_up" else ">") for c in FIGURES))
ROLL_QUEUE = ("INSERT INTO queue_roll VALUES (?,?,?,?,?,?) ON CONFLICT (cluster, res, ts, queue) DO UPDATE SET "
              + ", ".join(_keep(c) for c in ("pending", "oldest_age")))
ROLL_TASK = (f"INSERT INTO task_roll VALUES ({', '.join('?' * (4 + len(TASK_FIGURES)))}) "
             "ON CONFLICT (cluster, res, ts, name) DO UPDATE SET "
             + ", ".join(f"{c} = {c} + excluded.{c}" for c in TASK_FIGURES))
ROLL_STATUS = ("INSERT INTO task_status_roll VALUES (?,?,?,?) ON CONFLICT (cluster, res, ts) DO UPDATE SET "
               + _keep("events"))


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
        self.increments = Increments()
        self.task_last: dict[str, float] = {}  # per cluster, the newest snapshot time with task rows
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
        tasks = snap.get("tasks")
        added = self.increments.add(cluster, tasks)
        last = self.task_last.get(cluster)
        if last is None:
            last = self.task_last[cluster] = db.execute(
                "SELECT max(ts) FROM task_status WHERE cluster = ?", (cluster,)).fetchone()[0] or float("-inf")
        new_tasks = ts > last  # a line read again (serve restarted) only primes the increments
        events = EVENTS_CODE.get(str(tasks.get("events")), 1) if isinstance(tasks, dict) else 0
        task_rows = [(cluster, ts, n, *v) for n, v in sorted((added or {}).items())] if new_tasks else []
        db.execute("BEGIN")
        try:
            db.execute("INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?,?,?,?,?)", (cluster, ts, *figures))
            db.executemany("INSERT OR REPLACE INTO queue_samples VALUES (?,?,?,?,?)",
                           [(cluster, qn, ts, p, age) for p, qn, age in top])
            if new_tasks:
                db.execute("INSERT OR REPLACE INTO task_status VALUES (?,?,?)", (cluster, ts, events))
                db.executemany(f"INSERT OR REPLACE INTO task_samples VALUES ({', '.join('?' * (3 + len(TASK_FIGURES)))})",
                               task_rows)
            for res in ROLLUPS:
                at = ts - ts % res
                db.execute(ROLL_SAMPLE, (cluster, res, at, *figures))
                db.executemany(ROLL_QUEUE, [(cluster, res, at, qn, p, age) for p, qn, age in top])
                if new_tasks:
                    db.execute(ROLL_STATUS, (cluster, res, at, events))
                    db.executemany(ROLL_TASK, [(c, res, at, *rest) for c, _t, *rest in task_rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if new_tasks:
            self.task_last[cluster] = ts
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
        for table in ("task_samples", "task_status"):
            self.db.execute(f"DELETE FROM {table} WHERE ts < ?", (cut,))
        for table in ("task_roll", "task_status_roll"):
            self.db.execute(f"DELETE FROM {table} WHERE ts < ? - res", (cut,))
        self.db.execute("DELETE FROM alerts WHERE coalesce(resolved_at, started_at) < ?", (cut,))
        self.alert_rows = self.db.execute("SELECT count(*) FROM alerts").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def _round(q: float | None) -> float | None:
    return round(q, 6) if q is not None else None


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
        self._tasks(out, cluster, res, start, step, end, index)
        return out

    def _tasks(self, out: dict[str, Any], cluster: str, res: int, start: float, step: float, end: float,
               index: dict[int, int]) -> None:
        """Per task name and bucket: runs, failures and retries added (sums; 0 where task events were
        read and nothing ran, null where no snapshot carried them) and the p95 runtime of the runs
        that ended there. `task_totals` sums the range; `task_events` is each bucket's best state."""
        status_t, tasks_t = ("task_status_roll", "task_roll") if res else ("task_status", "task_samples")
        where = f"cluster = ? AND res = {res} AND ts > ? - {res}" if res else "cluster = ? AND ts >= ? - 0"
        bucket = "max(0, min(CAST((ts - ?) / ? AS INTEGER), ?))"
        args = (start, step, MAX_POINTS - 1, cluster, start, end)
        n = len(index)
        events: list[str | None] = [None] * n
        for b, code in self.db.execute(f"SELECT {bucket} AS b, max(events) FROM {status_t} WHERE {where} AND ts <= ? "
                                       "GROUP BY b", args):
            at = index.get(b)
            if at is not None:
                events[at] = CODE_EVENTS.get(code)  # 0 (no section) -> None
        sums = ", ".join(f"sum({c})" for c in TASK_FIGURES)
        rows = self.db.execute(f"SELECT {bucket} AS b, name, {sums} FROM {tasks_t} WHERE {where} AND ts <= ? "
                               "GROUP BY b, name", args).fetchall()
        totals: dict[str, list[int]] = {}
        for _b, task, *figs in rows:
            t = totals.setdefault(task, [0] * len(TASK_FIGURES))
            for i, v in enumerate(figs):
                t[i] += v or 0
        keep = sorted(totals, key=lambda k: (-totals[k][1], -totals[k][0], k))[:HISTORY_TASKS * 2]
        read = [0 if e is not None else None for e in events]
        series: dict[str, dict[str, list[Any]]] = {
            k: {"runs": list(read), "failed": list(read), "retried": list(read), "p95_runtime": [None] * n}
            for k in keep}
        for b, task, runs, failed, retried, *hist in rows:
            s, at = series.get(task), index.get(b)
            if s is None or at is None:
                continue
            s["runs"][at], s["failed"][at], s["retried"][at] = runs or 0, failed or 0, retried or 0
            s["p95_runtime"][at] = _round(p95([h or 0 for h in hist]))
        out["tasks"] = dict(sorted(series.items()))
        out["task_events"] = events
        out["task_totals"] = {k: {"runs": totals[k][0], "failed": totals[k][1], "retried": totals[k][2],
                                  "p95_runtime": _round(p95(totals[k][3:]))} for k in sorted(keep)}

    def alerts(self, cluster: str, start: float, end: float, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT fingerprint, alert_type, severity, subject, title, started_at, resolved_at FROM alerts "
            "WHERE cluster = ? AND started_at <= ? AND (resolved_at IS NULL OR resolved_at >= ?) "
            "ORDER BY started_at DESC LIMIT ?", (cluster, end, start, limit)).fetchall()
        keys = ("fingerprint", "alert_type", "severity", "subject", "title", "started_at", "resolved_at")
        return [dict(zip(keys, r, strict=True)) for r in reversed(rows)]

    def close(self) -> None:
        self.db.close()
