"""The soak's score as people read it: a few summary lines, and a timeline of events and alerts."""

from __future__ import annotations

from typing import Any

from bench.chaos.score import Score


def timeline(sc: Score, log: list[dict[str, Any]], t0: float) -> list[str]:
    """One line per event and per delivered alert, in time order, with the verdicts."""
    rows: list[tuple[float, int, str]] = []
    for e in log:
        args = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "action"))
        rows.append((float(e["t"]), 0, f"EVENT  {e['action']} {args}".rstrip()))
    for inc in sc.incidents:
        if inc.required and not inc.covered:
            rows.append((inc.deadline, 2, f"MISSED {inc.label}: no {inc.required[0]} for {inc.required[1]} "
                                          f"(incident at +{inc.start - t0:.1f}s)"))
    for d in sc.deliveries:
        a = d.alert
        extra = ""
        if d.flapping:
            extra += f" flapping×{d.flapping[1]}"
        if d.reminder:
            extra += " reminder"
        cause = f" ← {d.incident.label} (+{d.received - d.incident.start:.1f}s)" if d.incident else ""
        rows.append((d.ts, 1, f"ALERT  {a.get('status')} {a.get('alert_type')} {a.get('subject')} "
                              f"({a.get('severity')}){extra} [{d.verdict}]{cause}"))
    return [f"{t - t0:+8.1f}s  {text}" for t, _, text in sorted(rows, key=lambda r: (r[0], r[1]))]


def report(sc: Score) -> list[str]:
    """The score as a few human lines."""
    s = sc.summary()
    lines = [f"incidents: {s['incidents']} ({s['requiring_an_alert']} requiring an alert; covered: "
             + ", ".join(f"{k} {v}" for k, v in s["covered"].items()) + f"); deliveries: {s['deliveries']}",
             f"missed: {s['missed']}   false alarms: {s['false_alarms']}   duplicate pages: "
             f"{s['duplicate_pages']}   false all-clears: {s['false_all_clears']}"]
    for kind, sp in s["detection_delay_seconds"].items():
        if sp["n"]:
            lines.append(f"detection delay {kind}: median {sp['median']} s ({sp['min']}–{sp['max']}), n={sp['n']}")
    for kind, sp in s["resolution_lag_seconds"].items():
        if sp["n"]:
            lines.append(f"resolved after the problem ended, {kind}: median {sp['median']} s "
                         f"({sp['min']}–{sp['max']}), n={sp['n']}")
    for f in s["still_firing_at_end"]:
        lines.append(f"still firing at the end: {f['alert_type']} {f['subject']}, its problem over for "
                     f"{f['problem_over_seconds']} s (flapping alerts resolve after a stable flap window)")
    return lines
