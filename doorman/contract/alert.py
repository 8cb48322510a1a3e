"""The alert record (`kind: alert`, docs/contract.md#alert): its type, its builder and its check.

doorman-analyze builds alerts (`alert`); doorman-notify and doorman-serve read them, both through
`alert_problem`, so a line one takes the other takes too. The generic webhook's body is an alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypedDict

from doorman.contract.compat import NotRequired
from doorman.contract.severity import SEVERITIES
from doorman.contract.version import SCHEMA_VERSION, version_problem
from doorman.timefmt import parse_iso

Status = Literal["firing", "resolved"]
STATUSES: tuple[Status, ...] = ("firing", "resolved")
REQUIRED = ("fingerprint", "alert_type", "severity", "status", "ts", "title")  # non-empty strings


class Alert(TypedDict):
    """One alert. What analyze always writes is here; a reader is sure only of what
    `alert_problem` checks (`REQUIRED`), so the rest is `NotRequired`."""

    v: NotRequired[int]
    kind: Literal["alert"]
    ts: str
    cluster: NotRequired[str]
    alert_type: str
    severity: str
    status: Status
    title: str
    message: NotRequired[str]
    subject: NotRequired[str]
    fingerprint: str
    details: NotRequired[dict[str, object]]  # the figures behind it, per alert type (docs/analyze.md)
    started_at: NotRequired[str]


def alert(ts: str, cluster: str, alert_type: str, subject: str, fingerprint: str, status: Status,
          severity: str, started_at: str, details: dict[str, object], title: str, message: str) -> Alert:
    """The record doorman-analyze writes."""
    return {"v": SCHEMA_VERSION, "kind": "alert", "ts": ts, "cluster": cluster,
            "alert_type": alert_type, "severity": severity, "status": status, "title": title,
            "message": message, "subject": subject, "fingerprint": fingerprint, "details": details,
            "started_at": started_at}


def alert_problem(obj: Mapping[str, object]) -> str | None:
    """Why `obj` (a `kind: alert` object) is not an alert Doorman can deliver or count (None: it is)."""
    problem = version_problem(obj, required=False)
    if problem:
        return problem
    if obj.get("kind") != "alert":
        return f"kind must be 'alert', got {obj.get('kind')!r}"
    for k in REQUIRED:
        value = obj.get(k)
        if not isinstance(value, str) or not value:
            return f"field {k!r} missing or not a string"
    severity, status, ts = obj["severity"], obj["status"], str(obj["ts"])
    if severity not in SEVERITIES:
        return f"severity {severity!r} is not one of {', '.join(SEVERITIES)}"
    if status not in STATUSES:
        return f"status {status!r} is not firing or resolved"
    if "details" in obj and not isinstance(obj["details"], dict):
        return "details must be an object"
    for k in ("message", "cluster", "subject"):
        if k in obj and not isinstance(obj[k], str):
            return f"field {k!r} must be a string"
    try:
        parse_iso(ts)
    except (ValueError, OverflowError, OSError):
        return f"ts is not an RFC 3339 time: {ts[:40]!r}"
    return None
