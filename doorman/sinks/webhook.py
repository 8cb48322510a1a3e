"""Generic webhook: the alert JSON exactly as `doorman-analyze` wrote it.

The `Idempotency-Key` header is the same for every attempt and every run that sends this alert
(fingerprint, status and a hash of its `ts`), so a receiver can drop the duplicates that retries
after a lost answer can cause.
"""

from __future__ import annotations

import hashlib

from doorman.sinks import Alert, Request, UrlSink

PLACEHOLDER_URL = "https://webhook.example.invalid/doorman"


def idempotency_key(alert: Alert) -> str:
    ts_hash = hashlib.sha256(str(alert.get("ts", "")).encode()).hexdigest()[:12]
    return f"{alert['fingerprint']}-{alert['status']}-{ts_hash}"


class WebhookSink(UrlSink):
    name = "webhook"

    url_key = "generic_webhook_url"
    severity_key = "generic_webhook_min_severity"
    placeholder_url = PLACEHOLDER_URL

    def request(self, alert: Alert) -> Request:
        return Request(self.url, alert, {"Idempotency-Key": idempotency_key(alert)})


SINK = WebhookSink
