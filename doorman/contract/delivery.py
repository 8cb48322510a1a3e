"""The delivery record (`kind: delivery`, docs/contract.md#delivery-record): one line per (alert,
destination), the only thing doorman-notify writes to stdout; and its `--dry-run` form.

Read by people and their tools (`jq`, a log shipper) and by doorman-run's summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, TypedDict

from doorman.contract.alert import Alert
from doorman.contract.compat import NotRequired
from doorman.contract.version import SCHEMA_VERSION, version_problem

Result = Literal["delivered", "failed", "spooled", "skipped", "dry_run"]
RESULTS: tuple[Result, ...] = ("delivered", "failed", "spooled", "skipped", "dry_run")
UNDELIVERED: tuple[Result, ...] = ("spooled", "failed")


class Delivery(TypedDict):
    """What became of one alert at one destination. A dry run's record (`result: dry_run`) has no
    `cluster`, `subject`, `http_status`, `attempts`, `error` nor `from_spool`, and the preview's
    fields instead."""

    v: int
    kind: Literal["delivery"]
    ts: str
    fingerprint: str | None
    alert_type: str | None
    status: str | None
    severity: str | None
    cluster: NotRequired[str | None]
    subject: NotRequired[str | None]
    destination: str
    result: Result
    http_status: NotRequired[int | None]
    attempts: NotRequired[int]
    error: NotRequired[str | None]
    from_spool: NotRequired[bool]
    summary_of: int | None
    # --dry-run only
    fingerprints: NotRequired[list[str]]
    url: NotRequired[str]
    headers: NotRequired[dict[str, str]]
    payload: NotRequired[object]
    placeholder: NotRequired[bool]


def delivery(ts: str, alert: Alert, destination: str, result: Result, http_status: int | None = None,
             attempts: int = 0, error: str | None = None, from_spool: bool = False,
             summary_of: int | None = None) -> Delivery:
    """The record of one outcome."""
    return {
        "v": SCHEMA_VERSION, "kind": "delivery", "ts": ts,
        "fingerprint": alert.get("fingerprint"), "alert_type": alert.get("alert_type"),
        "status": alert.get("status"), "severity": alert.get("severity"), "cluster": alert.get("cluster"),
        "subject": alert.get("subject"), "destination": destination, "result": result,
        "http_status": http_status, "attempts": attempts, "error": error,
        "from_spool": from_spool, "summary_of": summary_of,
    }


def dry_run(ts: str, destination: str, group: Sequence[Alert], preview: Mapping[str, object]) -> Delivery:
    """`--dry-run`: one record per message that would be sent (a summary lists its alerts' fingerprints)."""
    one = group[0] if len(group) == 1 else None
    record: Delivery = {
        "v": SCHEMA_VERSION, "kind": "delivery", "ts": ts,
        "fingerprint": one["fingerprint"] if one else None, "alert_type": one["alert_type"] if one else None,
        "status": one["status"] if one else None, "severity": one["severity"] if one else None,
        "destination": destination, "result": "dry_run", "summary_of": len(group) if len(group) > 1 else None,
        "fingerprints": [a["fingerprint"] for a in group],
    }
    record.update(preview)  # type: ignore[typeddict-item]  # url, headers, payload, placeholder
    return record


def delivery_problem(obj: Mapping[str, object]) -> str | None:
    """Why `obj` is not a delivery record doorman-notify wrote (None: it is)."""
    problem = version_problem(obj)
    if problem:
        return problem
    if obj.get("kind") != "delivery":
        return f"kind must be 'delivery', got {obj.get('kind')!r}"
    for k in ("ts", "destination"):
        if not isinstance(obj.get(k), str):
            return f"field {k!r} missing or not a string"
    if obj.get("result") not in RESULTS:
        return f"result must be one of {', '.join(RESULTS)}"
    return None
