"""Destinations for alerts: one small class per file, all behind the `Sink` protocol.

A sink turns an alert into one HTTP request and makes one attempt to send it; retries, pacing,
batching and the spool belong to `doorman.delivery`, so each sink stays a pure renderer plus a POST.
Adding a destination = adding a module here with a `SINK` class and naming it in `SINKS`.
"""

from __future__ import annotations

import datetime
import email.utils
import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import requests

from doorman.config import SEVERITIES, Config

SINKS = ("pagerduty", "webhook", "slack")
USER_AGENT = "celery-doorman/0.1 (doorman-notify)"

Alert = dict[str, Any]


@dataclass(frozen=True)
class Request:
    """Exactly what goes over the wire; `--dry-run` prints it (redacted)."""

    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One attempt's outcome: `delivered`, `retry` (transient) or `permanent` (do not retry)."""

    outcome: str
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None


class Sink(Protocol):
    name: str  # "slack" | "pagerduty" | "webhook": the `destination` of delivery records
    min_severity: str
    min_interval: float  # seconds between two posts (Slack: 1/s); 0 = unpaced

    def request(self, alert: Alert) -> Request: ...

    def send(self, alert: Alert) -> Result: ...


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


MAX_RETRY_AFTER = 86400.0  # a receiver asking for more than a day (or for 1e400 s) gets a day


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


RETRYABLE_STATUS = frozenset({408, 425, 429})


class HttpSink:
    """The shared POST: timeouts on every call, no redirects followed, errors classified and scrubbed."""

    name = "http"
    min_interval = 0.0

    def __init__(self, session: requests.Session, min_severity: str = "info",
                 timeout: tuple[float, float] = (3.05, 10.0),
                 scrub: Callable[[str], str] = lambda s: s):
        self.session = session
        self.min_severity = min_severity
        self.timeout = timeout
        self.scrub = scrub

    def request(self, alert: Alert) -> Request:
        raise NotImplementedError

    def send(self, alert: Alert) -> Result:
        return self.post(self.request(alert))

    def post(self, req: Request) -> Result:
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", **req.headers}
        # orjson, as every stage writes: the webhook gets the alert byte for byte as analyze wrote it
        body = orjson.dumps(req.body, option=orjson.OPT_NON_STR_KEYS, default=str)
        try:
            resp = self.session.post(req.url, data=body, headers=headers, timeout=self.timeout,
                                     allow_redirects=False)
        except requests.Timeout as e:
            return Result("retry", error=self.scrub(f"timed out ({type(e).__name__}: {e})"))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
            return Result("retry", error=self.scrub(f"connection failed ({type(e).__name__}: {e})"))
        except requests.RequestException as e:  # InvalidURL, InvalidHeader...: retrying will not help
            return Result("permanent", error=self.scrub(f"{type(e).__name__}: {e}"))
        status = resp.status_code
        if 200 <= status < 300:
            return Result("delivered", http_status=status)
        body = " ".join(resp.text[:200].split())
        error = self.scrub(f"HTTP {status} {resp.reason or ''}".rstrip() + (f": {body}" if body else ""))
        if status in RETRYABLE_STATUS or status >= 500:
            return Result("retry", http_status=status, error=error,
                          retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
        if 300 <= status < 400:
            error = self.scrub(f"HTTP {status}: redirect not followed (a POST must not be redirected; fix the URL)")
        return Result("permanent", http_status=status, error=error)


class UrlSink(HttpSink):
    """A destination whose secret is its URL (Slack, the generic webhook): the config names the
    URL and the minimum severity; `--dry-run` with nothing configured shows `placeholder_url`."""

    url_key = ""
    severity_key = ""
    placeholder_url = ""

    def __init__(self, session: requests.Session, url: str, **kw: Any):
        super().__init__(session, **kw)
        self.url = url

    @classmethod
    def from_config(cls, cfg: Config, session: requests.Session, timeout: tuple[float, float],
                    scrub: Callable[[str], str], placeholder: bool = False) -> UrlSink | None:
        url = getattr(cfg, cls.url_key) or (cls.placeholder_url if placeholder else None)
        if not url:
            return None
        return cls(session, url, min_severity=getattr(cfg, cls.severity_key), timeout=timeout, scrub=scrub)


def build_sinks(cfg: Config, session: requests.Session, scrub: Callable[[str], str] = lambda s: s,
                placeholders: bool = False) -> list[Any]:
    """The configured destinations, in delivery order. `placeholders`: every sink, for `--dry-run`."""
    timeout = (cfg.http_connect_timeout, cfg.http_read_timeout)
    out = []
    for name in SINKS:
        cls = importlib.import_module(f"doorman.sinks.{name}").SINK
        sink = cls.from_config(cfg, session, timeout, scrub, placeholder=placeholders)
        if sink is not None:
            out.append(sink)
    return out


def wants(sink: Any, alert: Alert) -> bool:
    """Routing: a destination takes alerts at or above its minimum severity (resolutions too)."""
    return severity_rank(alert.get("severity", "")) >= severity_rank(sink.min_severity)


def batchable(sink: Any) -> bool:
    return callable(getattr(sink, "summary_request", None))
