"""Alerts and settings shared by the doorman-notify tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

SLACK_PATH = "/services/T000/B000/SECRETXYZslack"
PD_PATH = "/v2/enqueue-PDPATHSECRET"
HOOK_PATH = "/hooks/WEBHOOKSECRET123"
ROUTING_KEY = "R0UTINGKEYSECRET0123456789abcdef"
SECRETS = ("SECRETXYZslack", "PDPATHSECRET", "WEBHOOKSECRET123", ROUTING_KEY)


def alert(n: int = 1, severity: str = "critical", status: str = "firing", **over: Any) -> dict[str, Any]:
    """A schema-v1 alert like doorman-analyze writes; `n` makes a distinct problem."""
    fp = hashlib.md5(f"default|backlog_explosion|queue:q{n}".encode()).hexdigest()
    a = {
        "v": 1, "kind": "alert", "ts": f"2026-11-28T01:{n % 60:02d}:25.318Z", "cluster": "default",
        "alert_type": "backlog_explosion", "severity": severity, "status": status,
        "title": f"Backlog explosion on q{n}", "message": f"{5000 + n} tasks pending in q{n} (threshold 1000).",
        "subject": f"queue:q{n}", "fingerprint": fp,
        "details": {"total_pending": 5000 + n, "threshold": 1000, "queues": {f"q{n}": 5000 + n}},
        "started_at": "2026-11-28T01:00:25.318Z",
    }
    a.update(over)
    return a


def ndjson(*alerts: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(a) + b"\n" for a in alerts)


def notify_env(tmp: Path, slack: str | None = None, pd: str | None = None, hook: str | None = None,
               **extra: str) -> dict[str, str]:
    """Environment for a `doorman-notify` run: only the given destinations, small timeouts, a private spool."""
    env = {
        "SLACK_WEBHOOK_URL": slack or "", "GENERIC_WEBHOOK_URL": hook or "",
        "PAGERDUTY_ROUTING_KEY": ROUTING_KEY if pd else "", "PAGERDUTY_EVENTS_URL": pd or "",
        "DOORMAN_CONFIG": "", "XDG_STATE_HOME": str(tmp / "state"), "DOORMAN_SPOOL": str(tmp / "spool.ndjson"),
        "DOORMAN_HTTP_CONNECT_TIMEOUT": "0.5", "DOORMAN_HTTP_READ_TIMEOUT": "0.5",
        "DOORMAN_DELIVERY_BACKOFF_SECONDS": "0.05", "DOORMAN_DELIVERY_MAX_SECONDS": "2",
        "SLACK_MIN_SEVERITY": "", "PAGERDUTY_MIN_SEVERITY": "", "GENERIC_WEBHOOK_MIN_SEVERITY": "",
    }
    env.update(extra)
    return env


def read_ndjson(path: Path | str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]
