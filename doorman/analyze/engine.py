"""The analyze engine: snapshots in, alerts out, with memory.

Rules (doorman/rules) say what is wrong *now*. The engine turns that into notifications a human
can live with:

- fingerprint: a hash of (cluster, alert_type, subject), stable across runs and processes;
- inhibition: while an alert type named in another's `inhibited_by` fires (a broker down, every
  worker down), the alerts it causes are held back, so one incident pages once;
- cooldown: one fingerprint is sent at most once per `alert_cooldown_seconds`, counted from its
  last notification (also across a resolution, which damps flapping); a still-firing alert is sent
  again as a reminder when the cooldown has passed; a change of severity is sent at once;
- resolution: when a condition that was notified clears, one `resolved` alert with the same
  fingerprint and the severity that was notified. Held-back alerts resolve silently.

Time is the snapshot's `ts`, never the wall clock, so a replay gives the alerts a live run gave.
While the broker cannot be read, rules that need it are skipped: their alerts neither fire nor
resolve (unknown is not OK); likewise a rule whose snapshot section (`tasks`) is null or missing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from doorman.analyze import flaps
from doorman.analyze.layout import MAX_ALERTS, MAX_CLUSTERS, new_cluster, new_state
from doorman.analyze.ruleset import RuleSet, default_rules
from doorman.config.settings import Config
from doorman.contract.alert import Alert, Status, alert
from doorman.contract.severity import PAGE_AT_ONCE, rank
from doorman.contract.snapshot import Snapshot, snapshot_problem
from doorman.rules.base import Condition, duration
from doorman.timefmt import iso, parse_iso

__all__ = ["Engine", "fingerprint", "new_state", "snapshot_problem"]



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


def _make_room(alerts: dict[str, dict[str, Any]], severity: str) -> bool:
    """The open-alert table is full: a page evicts the stalest lesser alert; a warning waits."""
    if severity not in PAGE_AT_ONCE:
        return False
    lesser = [fp for fp, e in alerts.items() if max(0, rank(e.get("sent_severity") or "info")) < rank(severity)]
    if not lesser:
        return False
    del alerts[min(lesser, key=lambda fp: alerts[fp].get("last_sent") or 0.0)]
    return True


class Engine:
    """Feed snapshots with `process`; it returns the alerts to write, and keeps `state` current."""

    def __init__(self, config: Config, state: dict[str, Any] | None = None, rules: RuleSet | None = None):
        self.config = config
        self.rules = rules or default_rules()
        self.state = state if state is not None else new_state()
        self.configs = {c.cluster: c for c in config.clusters}  # `clusters:`: each one's effective config
        self.max_clusters = MAX_CLUSTERS + len(self.configs)
        self._use(config)
        self.current: list[Condition] = []  # conditions of the last snapshot, not held back
        self.last_snapshot: Snapshot | None = None
        self._seen: set[str] = set()  # clusters this engine has had a snapshot of (start-up grace)

    def _use(self, config: Config) -> Config:
        """Read the timings of the config in force (the snapshot's cluster's)."""
        self.cooldown = config.alert_cooldown_seconds
        window = config.flap_window_seconds
        self.flap_window = self.cooldown if window is None else window
        self.grace = config.thresholds.reconnect_grace_seconds
        return config

    def _cluster(self, name: str) -> dict[str, Any]:
        clusters = self.state["clusters"]
        cs = clusters.get(name)
        if cs is None:
            if len(clusters) >= self.max_clusters:
                stalest = min(clusters, key=lambda c: clusters[c]["now"] or 0.0)
                del clusters[stalest]
            cs = clusters[name] = new_cluster(self.rules)
        slices = cs["rules"]
        if len(slices) != len(self.rules.rules):  # a rule added since the state was written
            for r in self.rules.rules:
                slices.setdefault(r.name, r.initial_state())
        for key in ("flaps", "started"):
            cs.setdefault(key, {})
        return cs

    def process(self, snap: Snapshot) -> list[Alert]:
        """Alerts caused by one snapshot (already validated by `snapshot_problem`)."""
        now = parse_iso(snap["ts"])
        ts = snap["ts"]
        cluster = snap.get("cluster") or "default"
        if snap.get("queues") is None:
            snap["queues"] = {}
        cs = self._cluster(cluster)
        cs["now"] = now
        known = bool(snap["redis_connected"] and snap.get("pending_tasks") is not None)
        rules = self.rules.rules if known else self.rules.blind
        unseen, unseen_types = self.rules.unseen(snap) if self.rules.sectioned else (frozenset(), frozenset())
        if unseen:
            rules = tuple(r for r in rules if r.name not in unseen)
        slices = cs["rules"]
        config = self._use(self.configs.get(cluster, self.config)) if self.configs else self.config
        for rule in rules:
            rule.observe(snap, slices[rule.name], config, now)
        fired: dict[str, Condition] = {}
        explicit: dict[str, Condition] = {}
        for rule in rules:
            for c in rule.evaluate(snap, slices[rule.name], config, now):
                fp = fingerprint(cluster, c["alert_type"], c["subject"])
                (explicit if c["status"] == "resolved" else fired)[fp] = c
        skipped = (frozenset() if known else self.rules.needing_broker) | unseen_types
        self._grace(cs, cluster, snap, known, now, fired)
        self.last_snapshot = snap
        return self._decide(cs, cluster, ts, now, fired, explicit, skipped)

    def _grace(self, cs: dict[str, Any], cluster: str, snap: Snapshot, known: bool, now: float,
               fired: dict[str, Condition]) -> None:
        """Hold worker-side alerts while workers reconnect: after the broker comes back, and when a
        daemon starts while known workers have not answered yet. Alerts already sent go on."""
        first = cluster not in self._seen
        self._seen.add(cluster)
        if known and cs.get("broker_known") is False:
            cs["grace"] = {"until": now + self.grace, "reason": "broker_restart"}
        elif first and known and snap.get("trigger") != "once" and _connecting(snap):
            cs["grace"] = {"until": now + self.grace, "reason": "startup"}
        cs["broker_known"] = known
        grace = cs.get("grace")
        if not grace:
            return
        if now < grace["until"]:
            for fp in [fp for fp, c in fired.items() if c["alert_type"] in self.rules.grace_types
                       and not cs["alerts"].get(fp, {}).get("emitted")]:
                del fired[fp]
            return
        del cs["grace"]
        if grace["reason"] == "broker_restart":  # the workers that did not come back
            for c in fired.values():
                if c["alert_type"] in self.rules.grace_types:
                    c["message"] += f" (after the broker restarted, {self.grace:g}s ago)"
                    c["details"] = {**c["details"], "after_broker_restart": True}

    def _decide(self, cs: dict[str, Any], cluster: str, ts: str, now: float,
                fired: dict[str, Condition], explicit: dict[str, Condition],
                skipped: frozenset[str]) -> list[Alert]:
        active_types = {c["alert_type"] for c in fired.values()}
        out: list[Alert] = []
        self.current = []
        held: list[tuple[dict[str, Any], frozenset[str]]] = []
        for fp, c in fired.items():
            inhibitors = self.rules.inhibited_by.get(c["alert_type"], frozenset())
            if inhibitors & active_types:
                entry = self._open(cs["alerts"], fp, c, ts)  # remembered (its start time), but held back
                if entry is not None and c["alert_type"] in self.rules.grace_types:
                    held.append((entry, inhibitors))  # a worker-side alert: the incident tells its fate
                continue
            alert = self._fire(cs, cluster, ts, now, fp, c)
            if alert is not None:
                out.append(alert)
        sent_types = {e["alert_type"] for e in cs["alerts"].values() if e["emitted"]}
        for entry, inhibitors in held:
            if inhibitors & sent_types:
                entry["covered"] = True  # the incident that covers it was notified: never page for it
        gone = [fp for fp, e in cs["alerts"].items() if fp not in fired and e["alert_type"] not in skipped]
        for fp in gone:
            alert = self._resolve(cs, cluster, ts, now, fp, explicit.get(fp), fired)
            if alert is not None:
                out.append(alert)
        for fp, flap in flaps.settled(cs, now, self.flap_window):
            stable = now - flap["quiet_since"]
            details = {"flapping": flaps.summary(flap), "duration_seconds": round(now - flap["since"], 3)}
            message = (f"{flap['title']}: stable for {duration(stable)} after {flap['occurrences']} occurrences "
                       f"since {flaps.summary(flap)['since']}.")
            out.append(_alert(flap, ts, cluster, fp, "resolved", flap["severity"], iso(flap["since"]), details,
                              f"Resolved: {flap['title']}", message))
        flaps.expire(cs, now, self.flap_window)
        return out

    @staticmethod
    def _open(alerts: dict[str, dict[str, Any]], fp: str, c: Condition, ts: str) -> dict[str, Any] | None:
        """The open-alert entry of this fingerprint, made on first sight (None: the table is full)."""
        entry = alerts.get(fp)
        if entry is None:
            if len(alerts) >= MAX_ALERTS and not _make_room(alerts, c["severity"]):
                return None
            entry = alerts[fp] = {"alert_type": c["alert_type"], "subject": c["subject"],
                                  "started_at": ts, "emitted": False, "last_sent": None,
                                  "sent_severity": None, "peak_severity": None, "sent": 0}
        entry["title"] = c["title"]
        return entry

    def _fire(self, cs: dict[str, Any], cluster: str, ts: str, now: float, fp: str,
              c: Condition) -> Alert | None:
        """The firing alert to write for a condition that holds, or None (cooldown, flapping, covered)."""
        fresh = fp not in cs["alerts"]
        entry = self._open(cs["alerts"], fp, c, ts)
        if entry is None:
            return None
        self.current.append(c)
        if entry.get("covered"):
            return None
        flap = flaps.recur(cs, fp, entry, now, self.flap_window) if fresh else cs["flaps"].get(fp)
        if entry["emitted"]:
            due = entry["sent_severity"] != c["severity"] or (
                now - entry["last_sent"] >= self.cooldown and c["alert_type"] not in self.rules.no_reminders)
            reminder = entry["sent_severity"] == c["severity"] and not fresh
        else:
            due, reminder = True, False
        if flap is not None and fresh:
            due = c["severity"] in PAGE_AT_ONCE or flap["sent"] is None or now - flap["sent"] >= self.flap_window
            if not due:
                flaps.count(flap, entry, c["severity"])
        if not due:
            return None
        peak = entry.get("peak_severity") or c["severity"]
        if rank(c["severity"]) > rank(peak):
            peak = c["severity"]
        entry.update(emitted=True, last_sent=now, sent_severity=c["severity"], peak_severity=peak,
                     sent=entry["sent"] + 1)
        details, title = c["details"], c["title"]
        if reminder:
            details = {**details, "reminder": True}
        if flap is not None:
            flaps.sent(flap, now, c["severity"], c["title"])
            details = {**details, "flapping": flaps.summary(flap)}
            title = f"{title} (flapping)"
        return _alert(c, ts, cluster, fp, "firing", c["severity"], entry["started_at"], details, title,
                      c["message"])

    def _resolve(self, cs: dict[str, Any], cluster: str, ts: str, now: float, fp: str,
                 why: Condition | None, fired: dict[str, Condition]) -> Alert | None:
        """Close a condition that no longer holds: one `resolved` alert if it was ever sent, unless
        it flaps (then one resolution when it has been stable for the flap window)."""
        entry = cs["alerts"].pop(fp)
        if not entry["emitted"]:
            return None
        if flaps.quiet(cs, fp, entry, now):
            return None
        cs["cooldown"][fp] = now
        cs["started"][fp] = parse_iso(entry["started_at"])
        elapsed = now - parse_iso(entry["started_at"])
        details = {**(why["details"] if why else {}), "duration_seconds": round(elapsed, 3)}
        left = self._still_firing(cs, entry["alert_type"], fired)
        if left:
            details["still_firing"] = left
        message = why["message"] if why else f"{entry['title']}: resolved after {duration(elapsed)}."
        # resolved at the highest severity ever sent, so it reaches every destination the
        # problem paged (PagerDuty's min severity would otherwise skip the resolve)
        return _alert(entry, ts, cluster, fp, "resolved", entry.get("peak_severity") or entry["sent_severity"],
                      entry["started_at"], details, f"Resolved: {entry['title']}", message)

    def _still_firing(self, cs: dict[str, Any], alert_type: str,
                      fired: dict[str, Condition]) -> list[dict[str, str]]:
        """Problems this alert covered that outlive it: said in its resolution, never paged apart."""
        return [{"alert_type": e["alert_type"], "subject": e["subject"], "title": e["title"]}
                for fp, e in cs["alerts"].items()
                if e.get("covered") and fp in fired and alert_type in self.rules.inhibited_by.get(e["alert_type"], ())]


def _connecting(snap: Snapshot) -> bool:
    """Workers known to the broker but none answering yet: they may still be connecting."""
    workers = snap.get("workers") or ()
    return bool(workers) and not any(w.get("alive") is True for w in workers)


def _alert(c: Any, ts: str, cluster: str, fp: str, status: Status, severity: str,
           started_at: str, details: dict[str, Any], title: str, message: str) -> Alert:
    """`c`: the condition, open-alert entry or flap that names the problem (its type and subject)."""
    return alert(ts, cluster, c["alert_type"], c["subject"], fp, status, severity, started_at, details, title,
                 message)
