"""The analyze engine: snapshots in, alerts out, with memory.

Rules (doorman/rules) say what is wrong *now*. The engine turns that into notifications a human
can live with:

- fingerprint: a hash of (cluster, alert_type, subject), stable across runs and processes;
- inhibition: while `redis_down` or `workers_down` holds, the alerts they cause are held back
  (`INHIBITED_BY`), so one incident pages once;
- cooldown: one fingerprint is sent at most once per `alert_cooldown_seconds`, counted from its
  last notification (also across a resolution, which damps flapping); a still-firing alert is sent
  again as a reminder when the cooldown has passed; a change of severity is sent at once;
- resolution: when a condition that was notified clears, one `resolved` alert with the same
  fingerprint and the severity that was notified. Held-back alerts resolve silently.

Time is the snapshot's `ts`, never the wall clock, so a replay gives the alerts a live run gave.
While the broker cannot be read, rules that need it are skipped: their alerts neither fire nor
resolve (unknown is not OK).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from doorman import SCHEMA_VERSION
from doorman.config import Config
from doorman.rules import RULES
from doorman.rules.base import duration
from doorman.timefmt import parse_iso

STATE_KIND = "doorman-analyze-state"
MAX_CLUSTERS = 64
MAX_ALERTS = 10000

INHIBITED_BY: dict[str, frozenset[str]] = {
    "celery_disconnected": frozenset({"redis_down", "workers_down"}),
    "backlog_explosion": frozenset({"redis_down", "workers_down"}),
    "backlog_growing": frozenset({"redis_down", "workers_down"}),
    "high_latency": frozenset({"redis_down", "workers_down"}),
    "worker_lost": frozenset({"redis_down", "workers_down", "celery_disconnected"}),
}
RULE_OF_TYPE = {t: r for r in RULES for t in r.INFO.alert_types}


def _plan(rules: tuple) -> tuple[list, list, frozenset[str]]:
    """(observe functions, evaluate functions, alert types not evaluated) for these rules."""
    return ([r.observe for r in rules if hasattr(r, "observe")], [r.evaluate for r in rules],
            frozenset(t for r in RULES if r not in rules for t in r.INFO.alert_types))


_ALL = _plan(RULES)
_BLIND = _plan(tuple(r for r in RULES if not r.INFO.needs_broker))  # the broker could not be read

_fingerprints: dict[tuple[str, str, str], str] = {}


def fingerprint(cluster: str, alert_type: str, subject: str) -> str:
    """32 hex chars naming one problem: the same across runs, processes and machines."""
    key = (cluster, alert_type, subject)
    fp = _fingerprints.get(key)
    if fp is None:
        if len(_fingerprints) > 100_000:
            _fingerprints.clear()
        raw = "\x1f".join(key).encode("utf-8", "surrogatepass")
        fp = _fingerprints[key] = hashlib.blake2b(raw, digest_size=16).hexdigest()
    return fp


def new_state() -> dict[str, Any]:
    return {"v": 1, "kind": STATE_KIND, "clusters": {}}


def _new_cluster() -> dict[str, Any]:
    return {"now": None, "workers": {}, "forgotten": {}, "heads": {}, "samples": {}, "trends": {}, "alerts": {},
            "cooldown": {}}


def _int(v: Any) -> bool:
    return type(v) is int and v >= 0


def _num(v: Any) -> bool:
    return type(v) in (int, float)


def _check_head(h: Any, where: Callable[[], str]) -> str | None:
    """`where` builds the field's path only when there is a problem to report (the hot path)."""
    if type(h) is not dict:
        return f"{where()}: expected an object"
    task_id = h.get("task_id")
    if task_id is not None and type(task_id) is not str:
        return f"{where()}.task_id: expected a string or null"
    age = h.get("age_seconds")
    if age is not None and type(age) not in (int, float):
        return f"{where()}.age_seconds: expected a number or null"
    return None


def snapshot_problem(obj: dict[str, Any]) -> str | None:
    """Why `obj` is not a snapshot the rules can read (None: it is). Checks every field they use."""
    v = obj.get("v")
    if type(v) is not int or v != SCHEMA_VERSION:
        return "missing v" if v is None else f"v must be {SCHEMA_VERSION}, got {v!r}"
    if obj.get("kind") != "snapshot":
        return f"kind must be 'snapshot', got {obj.get('kind')!r}"
    ts = obj.get("ts")
    if not isinstance(ts, str):
        return "missing ts" if ts is None else "ts must be an RFC 3339 string"
    try:
        parse_iso(ts)
    except (ValueError, OverflowError, OSError):
        return f"ts is not an RFC 3339 time: {ts[:40]!r}"
    if not isinstance(obj.get("cluster", ""), str):
        return "cluster must be a string"
    if type(obj.get("redis_connected")) is not bool:
        return "redis_connected must be true or false"
    for name in ("pending_tasks", "alive_workers"):
        if obj.get(name) is not None and not _int(obj[name]):
            return f"{name} must be a non-negative integer or null"
    for name in ("error", "broker"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            return f"{name} must be a string or null"
    queues = obj.get("queues")
    if queues is not None:
        if not isinstance(queues, dict):
            return "queues must be an object"
        for qn, q in queues.items():
            if not isinstance(q, dict):
                return f"queues.{qn}: expected an object"
            if not _int(q.get("pending")):
                return f"queues.{qn}.pending must be a non-negative integer"
            heads = q.get("heads")
            if heads is not None:
                if not isinstance(heads, list):
                    return f"queues.{qn}.heads must be a list"
                for i, h in enumerate(heads):
                    problem = _check_head(h, lambda qn=qn, i=i: f"queues.{qn}.heads[{i}]")
                    if problem:
                        return problem
            if q.get("oldest") is not None:
                problem = _check_head(q["oldest"], lambda qn=qn: f"queues.{qn}.oldest")
                if problem:
                    return problem
    for name in ("workers", "active"):
        items = obj.get(name)
        if items is not None and not isinstance(items, list):
            return f"{name} must be a list"
        for i, item in enumerate(items or ()):
            if not isinstance(item, dict):
                return f"{name}[{i}]: expected an object"
    for i, w in enumerate(obj.get("workers") or ()):
        if not isinstance(w.get("name"), str):
            return f"workers[{i}].name must be a string"
        if type(w.get("alive")) is not bool:
            return f"workers[{i}].alive must be true or false"
    for i, t in enumerate(obj.get("active") or ()):
        if t.get("runtime_seconds") is not None and not _num(t["runtime_seconds"]):
            return f"active[{i}].runtime_seconds must be a number or null"
    return None


PAGE_AT_ONCE = frozenset({"critical", "emergency"})
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2, "emergency": 3}


def _make_room(alerts: dict[str, dict[str, Any]], severity: str) -> bool:
    """The open-alert table is full: a page evicts the stalest lesser alert; a warning waits."""
    if severity not in PAGE_AT_ONCE:
        return False
    lesser = [fp for fp, e in alerts.items()
              if SEVERITY_RANK.get(e.get("sent_severity") or "info", 0) < SEVERITY_RANK[severity]]
    if not lesser:
        return False
    del alerts[min(lesser, key=lambda fp: alerts[fp].get("last_sent") or 0.0)]
    return True


class Engine:
    """Feed snapshots with `process`; it returns the alerts to write, and keeps `state` current."""

    def __init__(self, config: Config, state: dict[str, Any] | None = None):
        self.config = config
        self.state = state if state is not None else new_state()
        self.cooldown = config.alert_cooldown_seconds
        self.current: list[dict[str, Any]] = []  # conditions of the last snapshot, not held back
        self.last_snapshot: dict[str, Any] | None = None

    def _cluster(self, name: str) -> dict[str, Any]:
        clusters = self.state["clusters"]
        cs = clusters.get(name)
        if cs is None:
            if len(clusters) >= MAX_CLUSTERS:
                stalest = min(clusters, key=lambda c: clusters[c]["now"] or 0.0)
                del clusters[stalest]
            cs = clusters[name] = _new_cluster()
        return cs

    def process(self, snap: dict[str, Any]) -> list[dict[str, Any]]:
        """Alerts caused by one snapshot (already validated by `snapshot_problem`)."""
        now = parse_iso(snap["ts"])
        ts = snap["ts"]
        cluster = snap.get("cluster") or "default"
        if snap.get("queues") is None:
            snap["queues"] = {}
        cs = self._cluster(cluster)
        cs["now"] = now
        known = snap["redis_connected"] and snap.get("pending_tasks") is not None
        cfg = self.config
        if known:
            observers, evaluators, skipped = _ALL
        else:
            observers, evaluators, skipped = _BLIND
        for observe in observers:
            observe(snap, cs, cfg)
        fired: dict[str, dict[str, Any]] = {}
        explicit: dict[str, dict[str, Any]] = {}
        for evaluate in evaluators:
            for c in evaluate(snap, cs, cfg):
                fp = fingerprint(cluster, c["alert_type"], c["subject"])
                (explicit if c["status"] == "resolved" else fired)[fp] = c
        self.last_snapshot = snap
        return self._decide(cs, cluster, ts, now, fired, explicit, skipped)

    def _decide(self, cs: dict[str, Any], cluster: str, ts: str, now: float,
                fired: dict[str, dict[str, Any]], explicit: dict[str, dict[str, Any]],
                skipped: frozenset[str]) -> list[dict[str, Any]]:
        alerts = cs["alerts"]
        cooldown = cs["cooldown"]
        active_types = {c["alert_type"] for c in fired.values()}
        out: list[dict[str, Any]] = []
        current = []
        for fp, c in fired.items():
            entry = alerts.get(fp)
            if entry is None:
                if len(alerts) >= MAX_ALERTS and not _make_room(alerts, c["severity"]):
                    continue
                entry = alerts[fp] = {"alert_type": c["alert_type"], "subject": c["subject"],
                                      "started_at": ts, "emitted": False, "last_sent": None,
                                      "sent_severity": None, "peak_severity": None, "sent": 0}
            entry["title"] = c["title"]
            if INHIBITED_BY.get(c["alert_type"], frozenset()) & active_types:
                continue
            current.append(c)
            if entry["emitted"]:
                due = entry["sent_severity"] != c["severity"] or now - entry["last_sent"] >= self.cooldown
                reminder = entry["sent_severity"] == c["severity"]
            else:
                # A problem back soon after its resolution: a warning waits out the cooldown (flap
                # damping), but a page never does — a resolved incident must not hide a live one.
                last = cooldown.get(fp)
                due = (last is None or c["severity"] in PAGE_AT_ONCE
                       or not (0 <= now - last < self.cooldown))
                reminder = False
            if not due:
                continue
            peak = entry.get("peak_severity") or c["severity"]
            if SEVERITY_RANK[c["severity"]] > SEVERITY_RANK[peak]:
                peak = c["severity"]
            entry.update(emitted=True, last_sent=now, sent_severity=c["severity"], peak_severity=peak,
                         sent=entry["sent"] + 1)
            details = {**c["details"], "reminder": True} if reminder else c["details"]
            out.append(_alert(c, ts, cluster, fp, "firing", c["severity"], entry["started_at"], details,
                              c["title"], c["message"]))
        for fp in [fp for fp, e in alerts.items() if fp not in fired and e["alert_type"] not in skipped]:
            entry = alerts.pop(fp)
            if not entry["emitted"]:
                continue
            cooldown[fp] = entry["last_sent"]
            c = explicit.get(fp)
            elapsed = now - parse_iso(entry["started_at"])
            details = c["details"] if c else {}
            details = {**details, "duration_seconds": round(elapsed, 3)}
            message = c["message"] if c else f"{entry['title']}: resolved after {duration(elapsed)}."
            # resolved at the highest severity ever sent, so it reaches every destination the
            # problem paged (PagerDuty's min severity would otherwise skip the resolve)
            out.append(_alert(entry, ts, cluster, fp, "resolved", entry.get("peak_severity") or entry["sent_severity"],
                              entry["started_at"], details, f"Resolved: {entry['title']}", message))
        if cooldown:
            for fp in [fp for fp, t in cooldown.items() if not (0 <= now - t < self.cooldown)]:
                del cooldown[fp]
        self.current = current
        return out


def _alert(c: dict[str, Any], ts: str, cluster: str, fp: str, status: str, severity: str,
           started_at: str, details: dict[str, Any], title: str, message: str) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "kind": "alert", "ts": ts, "cluster": cluster,
            "alert_type": c["alert_type"], "severity": severity, "status": status, "title": title,
            "message": message, "subject": c["subject"], "fingerprint": fp, "details": details,
            "started_at": started_at}
