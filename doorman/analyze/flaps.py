"""Flapping: a problem that comes back soon after it resolved is told, never silenced.

A fingerprint that fires again within `flap_window_seconds` of its resolution starts to flap. Its
next firing is delivered at once, with `details.flapping` (occurrences so far, since when) and a
title that says so. While it flaps, its resolutions are withheld and further occurrences are
counted; at most one firing goes out per window (pages at once, always). When it has stayed
resolved for a whole window, one resolution reports the total. State lives in the cluster's
`flaps` (open flaps), `cooldown` (fingerprint -> when it last resolved) and `started`
(fingerprint -> when that occurrence began), all pruned after the window.
"""

from __future__ import annotations

from typing import Any

from doorman.analyze.layout import MAX_FLAPS
from doorman.contract.severity import rank
from doorman.timefmt import iso


def recur(cs: dict[str, Any], fp: str, entry: dict[str, Any], now: float, window: float) -> dict[str, Any] | None:
    """A new occurrence of `fp`: its flap record (bumped, or begun if it resolved within the
    window), or None when it is simply a new problem."""
    flap = cs["flaps"].get(fp)
    if flap is not None:
        flap["occurrences"] += 1
        flap["quiet_since"] = None
        return flap
    resolved = cs["cooldown"].get(fp)
    if resolved is None or not (0 <= now - resolved < window) or len(cs["flaps"]) >= MAX_FLAPS:
        return None
    flap = cs["flaps"][fp] = {"occurrences": 2, "since": cs["started"].get(fp, resolved), "sent": None,
                              "quiet_since": None, "alert_type": entry["alert_type"], "subject": entry["subject"],
                              "title": entry["title"], "severity": None}
    return flap


def count(flap: dict[str, Any], entry: dict[str, Any], severity: str) -> None:
    """An occurrence counted, not sent: the user's last word is still the flapping firing."""
    entry.update(emitted=True, last_sent=flap["sent"], sent_severity=flap["severity"] or severity,
                 peak_severity=flap["severity"] or severity)


def sent(flap: dict[str, Any], now: float, severity: str, title: str) -> None:
    flap["sent"] = now
    flap["title"] = title
    if flap["severity"] is None or rank(severity) > rank(flap["severity"]):
        flap["severity"] = severity


def quiet(cs: dict[str, Any], fp: str, entry: dict[str, Any], now: float) -> bool:
    """The flapping problem cleared: withhold the resolution (True) until it stays clear."""
    flap = cs["flaps"].get(fp)
    if flap is None:
        return False
    flap["quiet_since"] = now
    flap["title"] = entry["title"]
    flap["severity"] = entry.get("peak_severity") or flap["severity"] or entry["sent_severity"]
    return True


def settled(cs: dict[str, Any], now: float, window: float) -> list[tuple[str, dict[str, Any]]]:
    """Flaps that have stayed resolved for a whole window: each gets one resolution now."""
    done = [(fp, f) for fp, f in cs["flaps"].items()
            if f["quiet_since"] is not None and now - f["quiet_since"] >= window]
    for fp, _ in done:
        del cs["flaps"][fp]
    return done


def summary(flap: dict[str, Any]) -> dict[str, Any]:
    return {"occurrences": flap["occurrences"], "since": iso(flap["since"])}


def expire(cs: dict[str, Any], now: float, window: float) -> None:
    for key in ("cooldown", "started"):
        table = cs[key]
        if table:
            for fp in [fp for fp, t in table.items() if not (0 <= now - (cs["cooldown"].get(fp, t)) < window)]:
                del table[fp]


