"""Generic webhook: the alert JSON exactly as `doorman-analyze` wrote it.

The `Idempotency-Key` header is the same for every attempt and every run that sends this alert
(fingerprint, status and a hash of its `ts`), so a receiver can drop the duplicates that retries
after a lost answer can cause.
"""

from __future__ import annotations

import hashlib
from typing import Any

from doorman.sinks import Alert, HttpSink, Request

PLACEHOLDER_URL = "https://webhook.example.invalid/doorman"


def idempotency_key(alert: Alert) -> str:
    ts_hash = hashlib.sha256(str(alert.get("ts", "")).encode()).hexdigest()[:12]
    return f"{alert['fingerprint']}-{alert['status']}-{ts_hash}"


class WebhookSink(HttpSink):
    name = "webhook"

    def __init__(self, session: Any, url: str, **kw: Any):
        super().__init__(session, **kw)
        self.url = url

    @classmethod
    def from_config(cls, cfg: Any, session: Any, timeout: tuple[float, float], scrub: Any,
                    placeholder: bool = False) -> WebhookSink | None:
        url = cfg.generic_webhook_url or (PLACEHOLDER_URL if placeholder else None)
        if not url:
            return None
        return cls(session, url, min_severity=cfg.generic_webhook_min_severity, timeout=timeout, scrub=scrub)

    def request(self, alert: Alert) -> Request:
        return Request(self.url, alert, {"Idempotency-Key": idempotency_key(alert)})


SINK = WebhookSink
