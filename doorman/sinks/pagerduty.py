"""PagerDuty Events API v2: one event per alert, deduplicated by the alert's fingerprint.

`dedup_key` = fingerprint, so a retry or a second run updates the same incident and a resolution
closes it. PagerDuty has no `emergency`: emergency and critical both page as `critical`.
"""

from __future__ import annotations

from typing import Any

from doorman.config import PAGERDUTY_EVENTS_URL
from doorman.sinks import Alert, HttpSink, Request

SEVERITY = {"emergency": "critical", "critical": "critical", "warning": "warning", "info": "info"}
SUMMARY_MAX = 1024
PLACEHOLDER_KEY = "R0UTINGKEY-PLACEHOLDER-00000000"


def summary(alert: Alert) -> str:
    text = f"{alert['title']}: {alert['message']}" if alert.get("message") else alert["title"]
    return text if len(text) <= SUMMARY_MAX else text[:SUMMARY_MAX - 1] + "…"


class PagerDutySink(HttpSink):
    name = "pagerduty"

    def __init__(self, session: Any, routing_key: str, url: str = PAGERDUTY_EVENTS_URL, **kw: Any):
        super().__init__(session, **kw)
        self.routing_key, self.url = routing_key, url

    @classmethod
    def from_config(cls, cfg: Any, session: Any, timeout: tuple[float, float], scrub: Any,
                    placeholder: bool = False) -> PagerDutySink | None:
        key = cfg.pagerduty_routing_key or (PLACEHOLDER_KEY if placeholder else None)
        if not key:
            return None
        return cls(session, key, cfg.pagerduty_events_url, min_severity=cfg.pagerduty_min_severity,
                   timeout=timeout, scrub=scrub)

    def request(self, alert: Alert) -> Request:
        body: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "resolve" if alert["status"] == "resolved" else "trigger",
            "dedup_key": alert["fingerprint"],
        }
        if body["event_action"] == "trigger":
            body["client"] = "Celery Doorman"
            body["payload"] = {
                "summary": summary(alert),
                "source": alert.get("cluster") or "celery",
                "severity": SEVERITY.get(alert["severity"], "error"),
                "timestamp": alert["ts"],
                "component": alert.get("subject") or "cluster",
                "group": alert.get("cluster") or "celery",
                "class": alert["alert_type"],
                "custom_details": alert.get("details") or {},
            }
        return Request(self.url, body)


SINK = PagerDutySink
