"""Score every delivered alert of a chaos soak against the ground-truth log. Pure functions.

Inputs: the log the driver wrote while breaking things (`{"t": epoch, "action": ..., ...}`: kill,
start, broker_kill, broker_start, pause, burst, orphan, purge, idle, and the backlog it observed
itself: over, under, drained) and the alerts the webhook received (`{"received": epoch, "alert":
{...}}`). Times of alerts are their `ts` (the snapshot that raised them); delays are measured to
their arrival at the webhook.

The rules (incidents, missed, false alarm, false all-clear, duplicate page, detection delay) are
stated in docs/reliability.md, "The chaos soak"; each function below says which one it applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from doorman.timefmt import parse_iso

PAGES = ("critical", "emergency")
Key = tuple[str, str]  # (alert_type, subject)


@dataclass(frozen=True)
class Rules:
    """The tolerances and the system's settings the score depends on."""

    interval: float = 5.0  # doorman-collect --interval
    max_wait: float = 30.0  # MAX_WAIT_TIME given to the daemon
    unconsumed_after: float = 60.0  # thresholds.unconsumed_after_seconds (its default)
    long_pause: float = 11.0  # a pause this long outlasts a check (redis_timeout 5 s + an interval)
    detect: float = 30.0  # an alert this late after its incident's start does not count
    after: float = 20.0  # an alert this long after its incident's end is still explained by it
    resolve_tolerance: float = 8.0
    alert_types: frozenset[str] = frozenset()  # the alert types the daemon has (doorman.plugins.rules())


@dataclass
class Incident:
    kind: str
    start: float
    end: float
    required: Key | None
    explains: frozenset[Key]
    label: str
    deadline: float = 0.0
    until: float | None = None  # when the condition that requires the alert ended, if before `end`
    covered: str = ""  # alerted | firing | counted | "" (missed or nothing required)
    delay: float | None = None
    pages: int = 0

    @property
    def problem_end(self) -> float:
        return self.end if self.until is None else self.until


@dataclass
class Delivery:
    received: float
    ts: float
    alert: dict[str, Any]
    verdict: str = ""  # explained | FALSE | DUPLICATE | FALSE ALL-CLEAR
    incident: Incident | None = None

    @property
    def key(self) -> Key:
        return (str(self.alert.get("alert_type")), str(self.alert.get("subject")))

    @property
    def firing(self) -> bool:
        return self.alert.get("status") == "firing"

    @property
    def flapping(self) -> tuple[float, int] | None:
        f = (self.alert.get("details") or {}).get("flapping")
        if not isinstance(f, dict):
            return None
        since: Any = f.get("since")
        try:
            t = parse_iso(since) if isinstance(since, str) else float(since)
        except (TypeError, ValueError):
            return None
        n = f.get("occurrences")
        return t, int(n) if isinstance(n, int) else 0

    @property
    def reminder(self) -> bool:
        return bool((self.alert.get("details") or {}).get("reminder"))


@dataclass
class Score:
    incidents: list[Incident]
    deliveries: list[Delivery]
    missed: list[Incident] = field(default_factory=list)
    false_alarms: list[Delivery] = field(default_factory=list)
    false_all_clears: list[Delivery] = field(default_factory=list)
    duplicate_pages: list[Delivery] = field(default_factory=list)
    delays: dict[str, list[float]] = field(default_factory=dict)
    resolution_lags: dict[str, list[float]] = field(default_factory=dict)  # alert type: resolved minus problem end
    still_firing: list[tuple[Delivery, float]] = field(default_factory=list)  # at the end, problem over since

    @property
    def ok(self) -> bool:
        return not (self.missed or self.false_alarms or self.duplicate_pages or self.false_all_clears)

    def summary(self) -> dict[str, Any]:
        required = [i for i in self.incidents if i.required]
        return {
            "incidents": len(self.incidents), "requiring_an_alert": len(required),
            "covered": {how: sum(1 for i in required if i.covered == how) for how in ("alerted", "firing", "counted")},
            "deliveries": len(self.deliveries), "missed": len(self.missed), "false_alarms": len(self.false_alarms),
            "false_all_clears": len(self.false_all_clears), "duplicate_pages": len(self.duplicate_pages),
            "detection_delay_seconds": {k: _spread(v) for k, v in sorted(self.delays.items())},
            "resolution_lag_seconds": {k: _spread(v) for k, v in sorted(self.resolution_lags.items())},
            "still_firing_at_end": [{"alert_type": d.key[0], "subject": d.key[1], "problem_over_seconds": round(s, 1)}
                                    for d, s in self.still_firing],
        }


def _spread(values: list[float]) -> dict[str, Any]:
    s = sorted(values)
    return {"n": len(s), "median": round(s[len(s) // 2], 2), "min": round(s[0], 2), "max": round(s[-1], 2)} if s else {"n": 0}


def _since(incs: list[Incident], since: float, until: float) -> list[Incident]:
    """The incidents a flap counts: from the one Doorman's `since` was seen in (the last to start
    before it: `since` is when the first occurrence was noticed, a detection later) until `until`."""
    first = max((n for n, i in enumerate(incs) if i.start <= since + 1), default=None)
    return [] if first is None else [i for i in incs[first:] if i.start <= until]


def incidents(log: list[dict[str, Any]], rules: Rules, end_of_soak: float) -> list[Incident]:
    """The incidents of a ground-truth log, in order of start."""
    log = sorted(log, key=lambda e: e["t"])
    out: list[Incident] = []

    def next_of(i: int, actions: tuple[str, ...], match: dict[str, Any] | None = None) -> float:
        for e in log[i + 1:]:
            if e["action"] in actions and all(e.get(k) == v for k, v in (match or {}).items()):
                return float(e["t"])
        return end_of_soak

    last_kill: dict[str, float] = {}
    for i, e in enumerate(log):
        t, a = float(e["t"]), e["action"]
        if a == "kill":
            w = e["worker"]
            key = ("worker_lost", f"worker:{w}")
            repeat = w in last_kill and t - last_kill[w] < 300
            last_kill[w] = t
            out.append(Incident("worker_kill_repeat" if repeat else "worker_kill", t,
                                next_of(i, ("start",), {"worker": w}), key, frozenset({key}), f"kill -9 {w}",
                                t + rules.detect))
        elif a == "broker_kill":
            key = ("redis_down", "cluster")
            out.append(Incident("broker_restart", t, next_of(i, ("broker_start",)), key, frozenset({key}),
                                "broker killed", t + rules.detect))
        elif a == "pause":
            secs = float(e["seconds"])
            key = ("redis_down", "cluster")
            long = secs >= rules.long_pause
            out.append(Incident("pause_long" if long else "pause_short", t, t + secs, key if long else None,
                                frozenset({key}) if long else frozenset(), f"CLIENT PAUSE {secs:g}s",
                                t + secs + rules.detect))
        elif a == "burst":
            drained = next_of(i, ("drained", "broker_kill"))
            over = [x for x in log[i + 1:] if x["action"] == "over" and float(x["t"]) <= drained]
            keys = {("high_latency", "queue:celery")}
            required: Key | None = None
            start = t
            if over:
                keys |= {("backlog_explosion", "cluster"), ("backlog_growing", "cluster")}
                start = float(over[0]["t"])
                under = next((float(x["t"]) for x in log if x["action"] in ("under", "broker_kill")
                              and float(x["t"]) > start), drained)
                if under - start > rules.interval + 1:
                    required = ("backlog_explosion", "cluster")
            out.append(Incident("burst_above" if over else "burst_below", start, drained, required,
                                frozenset(keys), f"burst of {e['n']} tasks", start + rules.detect,
                                until=under if over else None))
        elif a == "orphan":
            q = e["queue"]
            end = next_of(i, ("purge", "broker_kill"))
            unconsumed, latency = ("queue_unconsumed", f"queue:{q}"), ("high_latency", f"queue:{q}")
            required = None
            if "queue_unconsumed" in rules.alert_types and end - t >= rules.unconsumed_after + rules.interval + 5:
                required = unconsumed
            elif "queue_unconsumed" not in rules.alert_types and end - t >= rules.max_wait + rules.interval + 5:
                required = latency
            out.append(Incident("unconsumed", t, end, required, frozenset({unconsumed, latency}),
                                f"{e['n']} tasks to unconsumed queue {q}", end + 5))
    return sorted(out, key=lambda i: i.start)


def deliveries(alerts: list[dict[str, Any]]) -> list[Delivery]:
    out = [Delivery(float(a["received"]), parse_iso(a["alert"]["ts"]), a["alert"]) for a in alerts]
    return sorted(out, key=lambda d: (d.ts, d.received))


def score(log: list[dict[str, Any]], alerts: list[dict[str, Any]], rules: Rules, end_of_soak: float) -> Score:
    incs = incidents(log, rules, end_of_soak)
    dels = deliveries(alerts)
    sc = Score(incs, dels)
    by_key: dict[Key, list[Delivery]] = {}
    for d in dels:
        by_key.setdefault(d.key, []).append(d)

    # missed
    for inc in incs:
        if inc.required is None:
            continue
        mine = by_key.get(inc.required, [])
        before = [d for d in mine if d.ts < inc.start]
        if before and before[-1].firing:  # the user's last word on it was still "firing"
            inc.covered = "firing"
            continue
        hit = next((d for d in mine if d.firing and inc.start - 1 <= d.ts <= inc.deadline), None)
        if hit:
            inc.covered, inc.delay = "alerted", hit.received - inc.start
            sc.delays.setdefault(inc.kind, []).append(inc.delay)
            continue
        same = [i for i in incs if i.required == inc.required]
        for d in mine:
            f = d.flapping
            if f is None or d.ts < inc.start or f[0] > inc.start + 1:
                continue
            counted = _since(same, f[0], d.ts)[: f[1]]
            if inc in counted:
                inc.covered = "counted"
                break
        if not inc.covered:
            sc.missed.append(inc)

    # false alarms, false all-clears, duplicate pages
    fired: set[str] = set()
    for d in dels:
        if not d.firing:
            if d.alert.get("fingerprint") not in fired:
                d.verdict = "FALSE (resolution of nothing sent)"
                sc.false_alarms.append(d)
                continue
            # when the user heard it: a check's `ts` is when it began, and a paused broker answers late
            ongoing = [i for i in incs if i.required == d.key and i.start <= d.received - rules.resolve_tolerance
                       and i.problem_end >= d.received]
            if ongoing:
                d.verdict, d.incident = "FALSE ALL-CLEAR", ongoing[0]
                sc.false_all_clears.append(d)
            else:
                d.verdict = "resolved"
                prior = [i for i in incs if d.key in i.explains and i.start <= d.ts]
                if prior:
                    d.incident = prior[-1]
                    sc.resolution_lags.setdefault(d.key[0], []).append(d.received - prior[-1].problem_end)
            continue
        fired.add(str(d.alert.get("fingerprint")))
        why = [i for i in incs if d.key in i.explains and i.start - 2 <= d.ts <= i.end + rules.after]
        f = d.flapping
        if not why and f is not None:
            why = _since([i for i in incs if d.key in i.explains], f[0], d.ts)
        if not why:
            d.verdict = "FALSE"
            sc.false_alarms.append(d)
            continue
        d.incident = why[-1]
        d.verdict = "explained"
        if d.alert.get("severity") in PAGES and not d.reminder:
            d.incident.pages += 1
            if d.incident.pages > 1:
                d.verdict = "DUPLICATE PAGE"
                sc.duplicate_pages.append(d)

    # the user's view at the end: alerts still firing although their problem is over
    last: dict[str, Delivery] = {}
    for d in dels:
        last[str(d.alert.get("fingerprint"))] = d
    for d in last.values():
        latest = [i for i in incs if d.key in i.explains and i.start <= end_of_soak]
        if d.firing and latest and latest[-1].problem_end < end_of_soak:
            sc.still_firing.append((d, end_of_soak - latest[-1].problem_end))
    return sc
