"""PagerDuty Events API v2: one event per alert, deduplicated by the alert's fingerprint.

`dedup_key` = fingerprint, so a retry or a second run updates the same incident and a resolution
closes it. PagerDuty has no `emergency`: emergency and critical both page as `critical`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from doorman.config.settings import Config, Setting
from doorman.redact import redact_key
from doorman.sinks.base import Alert, SinkClass, SinkContext
from doorman.sinks.http import HttpSink, Request
from doorman.textsafe import one_line

if TYPE_CHECKING:
    import requests

SEVERITY = {"emergency": "critical", "critical": "critical", "warning": "warning", "info": "info"}
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024
PLACEHOLDER_KEY = "R0UTINGKEY-PLACEHOLDER-00000000"


def summary(alert: Alert) -> str:
    """One line, control characters shown escaped (the title and message quote broker names)."""
    text = one_line(f"{alert['title']}: {alert['message']}" if alert.get("message") else alert["title"])
    return text if len(text) <= SUMMARY_MAX else text[:SUMMARY_MAX - 1] + "…"


class PagerDutySink(HttpSink):
    name = "pagerduty"
    enabled_by = "pagerduty_routing_key"
    settings = (
        Setting("pagerduty_routing_key", "str", None, ("PAGERDUTY_ROUTING_KEY",),
                "PagerDuty Events v2 integration (routing) key.", secret=True),
        Setting("pagerduty_events_url", "webhook", PAGERDUTY_EVENTS_URL, ("PAGERDUTY_EVENTS_URL",),
                "PagerDuty Events v2 endpoint.", secret=True),
        Setting("pagerduty_min_severity", "severity", "critical", ("PAGERDUTY_MIN_SEVERITY",),
                "Lowest severity sent to PagerDuty."),
    )

    def __init__(self, session: requests.Session, routing_key: str, url: str = PAGERDUTY_EVENTS_URL,
                 **kw: Any):
        super().__init__(session, **kw)
        self.routing_key, self.url = routing_key, url

    @classmethod
    def from_config(cls, cfg: Config, ctx: SinkContext) -> PagerDutySink | None:
        key = cfg.pagerduty_routing_key
        if not key and not ctx.placeholder:
            return None
        return cls(ctx.session, key or PLACEHOLDER_KEY, cfg.pagerduty_events_url,
                   min_severity=cfg.pagerduty_min_severity, timeout=ctx.timeout, scrub=ctx.scrub,
                   placeholder=not key)

    def redact_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The routing key is the credential: --dry-run shows its last four characters only."""
        return {**body, "routing_key": redact_key(body["routing_key"])}

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
                "source": one_line(alert.get("cluster") or "celery")[:SUMMARY_MAX],
                "severity": SEVERITY.get(alert["severity"], "error"),
                "timestamp": alert["ts"],
                "component": one_line(alert.get("subject") or "cluster")[:SUMMARY_MAX],
                "group": alert.get("cluster") or "celery",
                "class": alert["alert_type"],
                "custom_details": alert.get("details") or {},
            }
        return Request(self.url, body)


SINK: SinkClass = PagerDutySink  # what the registry loads; mypy checks it is a complete sink plugin
