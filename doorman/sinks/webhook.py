"""Generic webhook: the alert JSON exactly as `doorman-analyze` wrote it.

The `Idempotency-Key` header is the same for every attempt and every run that sends this alert
(fingerprint, status and a hash of its `ts`), so a receiver can drop the duplicates that retries
after a lost answer can cause.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

from doorman.sinks.base import Alert, SinkClass
from doorman.sinks.http import Request, UrlSink, url_settings

PLACEHOLDER_URL = "https://webhook.example.invalid/doorman"


def idempotency_key(alert: Alert) -> str:
    ts_hash = hashlib.sha256(str(alert.get("ts", "")).encode()).hexdigest()[:12]
    return f"{alert['fingerprint']}-{alert['status']}-{ts_hash}"


class WebhookSink(UrlSink):
    name = "webhook"

    enabled_by = "generic_webhook_url"
    severity_key = "generic_webhook_min_severity"
    settings = url_settings(enabled_by, "Any HTTP endpoint; receives the alert JSON as is.", severity_key, "info",
                            "the generic webhook")
    placeholder_url = PLACEHOLDER_URL

    def request(self, alert: Alert) -> Request:
        return Request(self.url, cast("dict[str, Any]", alert), {"Idempotency-Key": idempotency_key(alert)})  # as is


SINK: SinkClass = WebhookSink  # what the registry loads; mypy checks it is a complete sink plugin
