"""The shared HTTP POST of the built-in sinks, and the sinks whose secret is their URL.

`requests` is imported when a request is made, not when this module is: config loading imports
every sink module to read its settings, and doorman-collect must not pay for requests.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from doorman.bounds import MAX_HTTP_ANSWER_BYTES
from doorman.config.settings import Config, Setting
from doorman.redact import redact_webhook
from doorman.sinks.base import Alert, Result, SinkContext

if TYPE_CHECKING:
    import requests

    from doorman.httpcall import Response

USER_AGENT = "celery-doorman/0.1 (doorman-notify)"
MAX_RETRY_AFTER = 86400.0  # a receiver asking for more than a day (or for 1e400 s) gets a day
RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Request:
    """Exactly what goes over the wire; `--dry-run` prints it (redacted)."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date; the answer is finite and at most a day."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # the obsolete asctime form carries no zone: HTTP dates are GMT
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def classify(resp: Response, scrub: Callable[[str], str]) -> Result:
    """2xx delivered; 408/425/429/5xx worth retrying (Retry-After kept); anything else, for good."""
    status = resp.status_code
    if 200 <= status < 300:
        return Result("delivered", http_status=status)
    text = " ".join(resp.text[:200].split())
    error = scrub(f"HTTP {status} {resp.reason or ''}".rstrip() + (f": {text}" if text else ""))
    if status in RETRYABLE_STATUS or status >= 500:
        return Result("retry", http_status=status, error=error,
                      retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
    if 300 <= status < 400:
        error = scrub(f"HTTP {status}: redirect not followed (a POST must not be redirected; fix the URL)")
    return Result("permanent", http_status=status, error=error)


class HttpSink:
    """One POST per message: timeouts on every call, no redirects followed, errors classified and
    scrubbed. A subclass renders `request(alert)`; `preview` shows it with secrets redacted."""

    name = "http"
    min_interval = 0.0

    def __init__(self, session: requests.Session, min_severity: str = "info",
                 timeout: tuple[float, float] = (3.05, 10.0),
                 scrub: Callable[[str], str] = lambda s: s, placeholder: bool = False):
        self.session = session
        self.min_severity = min_severity
        self.timeout = timeout
        self.scrub = scrub
        self.placeholder = placeholder  # built with a made-up address, for --dry-run

    def request(self, alert: Alert) -> Request:
        raise NotImplementedError

    def send(self, alert: Alert) -> Result:
        return self.post(self.request(alert))

    def preview(self, alert: Alert) -> dict[str, Any]:
        return self.redacted(self.request(alert))

    def redact_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body as --dry-run may print it; a sink whose body holds a secret overrides this."""
        return body

    def redacted(self, req: Request) -> dict[str, Any]:
        return {"url": redact_webhook(req.url), "headers": req.headers, "payload": self.redact_body(req.body),
                "placeholder": self.placeholder}

    def post(self, req: Request) -> Result:
        """One POST through `doorman.httpcall`: connect within timeout[0], the whole answer within
        timeout[0] + timeout[1] (a deadline, not per read), at most `MAX_HTTP_ANSWER_BYTES` of it read."""
        from doorman import httpcall

        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", **req.headers}
        # orjson, as every stage writes: the webhook gets the alert byte for byte as analyze wrote it
        body = orjson.dumps(req.body, option=orjson.OPT_NON_STR_KEYS, default=str)
        try:
            resp = httpcall.call(self.session, "POST", req.url, data=body, headers=headers,
                                 deadline=self.timeout[0] + self.timeout[1], connect_timeout=self.timeout[0],
                                 max_bytes=MAX_HTTP_ANSWER_BYTES, over="cut")
        except httpcall.HttpError as e:  # InvalidURL, InvalidHeader...: retrying will not help
            return Result("retry" if e.retryable else "permanent", error=self.scrub(str(e)))
        return classify(resp, self.scrub)


def url_settings(url_key: str, url_doc: str, severity_key: str, default_severity: str,
                 where: str) -> tuple[Setting, Setting]:
    """The two keys of a destination whose secret is its URL; each key's environment variable is
    its name in capitals."""
    return (Setting(url_key, "webhook", None, (url_key.upper(),), url_doc, secret=True),
            Setting(severity_key, "severity", default_severity, (severity_key.upper(),),
                    f"Lowest severity sent to {where}."))


class UrlSink(HttpSink):
    """A destination whose secret is its URL (Slack, the generic webhook): the config names the
    URL (`enabled_by`) and the minimum severity; `--dry-run` with nothing configured shows
    `placeholder_url`."""

    enabled_by = ""
    severity_key = ""
    placeholder_url = ""

    def __init__(self, session: requests.Session, url: str, **kw: Any):
        super().__init__(session, **kw)
        self.url = url

    @classmethod
    def from_config(cls, cfg: Config, ctx: SinkContext) -> UrlSink | None:
        url = getattr(cfg, cls.enabled_by)
        if not url and not ctx.placeholder:
            return None
        return cls(ctx.session, url or cls.placeholder_url, min_severity=getattr(cfg, cls.severity_key),
                   timeout=ctx.timeout, scrub=ctx.scrub, placeholder=not url)
