"""Prometheus Alertmanager (API v2): every alert POSTed to `/api/v2/alerts` of each listed instance.

Alertmanager, not Doorman, then groups, silences, inhibits and routes; an HA pair of Doorman
replicas sending the same alert gives ONE alert there, because Alertmanager identifies an alert by
its label set: `alertname` (the alert type), `severity`, `cluster`, `subject`, the same in both.

Alertmanager ends an alert at its `endsAt`, or `resolve_timeout` (default 5 min) after the last
post when there is none. doorman-analyze re-sends a firing alert only as a reminder, once per
`alert_cooldown_seconds`, so a firing alert carries `endsAt` = its snapshot time +
2 × (alert_cooldown_seconds + check_interval), which each reminder pushes further. Alert types
without reminders (told once while they hold) get `STANDING_HOLD`. A resolution carries
`endsAt` = its snapshot time. Why this and not a resolve_timeout recipe: docs/notify.md.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

import orjson

from doorman.config.settings import Config, Setting
from doorman.errors import BadConfig
from doorman.redact import Scrubber, redact_webhook, webhook_secrets
from doorman.sinks.base import Alert, Result, SinkClass, SinkContext
from doorman.sinks.http import HttpSink, Request
from doorman.timefmt import iso, parse_iso

if TYPE_CHECKING:
    import requests

API_PATH = "/api/v2/alerts"
PLACEHOLDER_URL = "https://alertmanager.example.invalid:9093"
STANDING_HOLD = 7 * 86400.0  # seconds an alert type without reminders stays up without news
LABEL_MAX = 1024  # label values quote broker names: bounded, as Alertmanager's UI shows them


def split_urls(value: str | None) -> list[str]:
    """`http://am1:9093, http://am2:9093` as a list (an Alertmanager cluster: post to each)."""
    return [u.strip() for u in (value or "").split(",") if u.strip()]


def urls_problem(value: str) -> str | None:
    """Each URL checked exactly as a `webhook` key is (urllib3's parser, one truth about the host)."""
    from doorman.config.values import _check_webhook

    urls = split_urls(value)
    if not urls:
        return None  # `ALERTMANAGER_URL=` (an env file's blank line): the destination is off
    for n, url in enumerate(urls, 1):
        try:
            _check_webhook(url, "", "")
        except BadConfig as e:
            return e.problem if len(urls) == 1 else f"URL {n} of {len(urls)}: {e.problem}"
    return None


def generator_problem(value: str) -> str | None:
    if not value.strip():
        return None
    try:
        p = urlsplit(value)
    except ValueError:
        return "malformed URL"
    return None if p.scheme in ("http", "https") and p.hostname else "must be an http:// or https:// URL"


def endpoint(url: str) -> str:
    """The alerts endpoint of one instance: a base URL (with any --web.route-prefix) gets API_PATH."""
    p = urlsplit(url)
    path = p.path.rstrip("/")
    if not path.endswith(API_PATH):
        path += API_PATH
    return urlunsplit((p.scheme, p.netloc, path, p.query, ""))


def _time(value: Any, default: float) -> float:
    try:
        return parse_iso(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _label(value: Any) -> str:
    text = str(value) if value is not None else ""
    return text if len(text) <= LABEL_MAX else text[:LABEL_MAX - 1] + "…"


class AlertmanagerSink(HttpSink):
    name = "alertmanager"
    enabled_by = "alertmanager_url"
    settings = (
        Setting("alertmanager_url", "str", None, ("ALERTMANAGER_URL",),
                "Alertmanager base URL (http://am:9093); several, comma separated, for an Alertmanager cluster: "
                "each gets every alert. http:// only to loopback unless allow_insecure_webhooks.",
                secret=True, check=urls_problem),
        Setting("alertmanager_min_severity", "severity", "info", ("ALERTMANAGER_MIN_SEVERITY",),
                "Lowest severity sent to Alertmanager."),
        Setting("alertmanager_generator_url", "str", None, ("ALERTMANAGER_GENERATOR_URL",),
                "Link each Alertmanager alert carries (generatorURL): your doorman-serve dashboard.",
                check=generator_problem),
    )

    def __init__(self, sessions: Sequence[requests.Session], urls: Sequence[str], hold: float,
                 generator_url: str | None = None, standing: frozenset[str] = frozenset(), **kw: Any):
        super().__init__(sessions[0], **kw)
        self.sessions, self.urls = list(sessions), [endpoint(u) for u in urls]
        self.hold, self.generator_url, self.standing = hold, generator_url, standing
        # errors name host:port only, but an answer's text could quote a URL's secret path
        own = Scrubber([s for u in urls for s in webhook_secrets(u)])
        outer = self.scrub
        self.scrub = lambda text: outer(own(text))

    @classmethod
    def from_config(cls, cfg: Config, ctx: SinkContext) -> AlertmanagerSink | None:
        from doorman import httpcall, plugins
        from doorman.config.values import plain_http_problem

        urls = split_urls(cfg.alertmanager_url)
        if not urls and not ctx.placeholder:
            return None
        if not cfg.allow_insecure_webhooks:
            for url in urls:
                problem = plain_http_problem(url)
                if problem:
                    raise BadConfig("config", "alertmanager_url", problem)
        # one session per instance: the posts to an Alertmanager cluster run side by side
        sessions = [ctx.session] + [httpcall.session(trust_env=True) for _ in urls[1:]]
        hold = 2 * (cfg.alert_cooldown_seconds + cfg.check_interval)
        standing = frozenset(t.name for r in plugins.rules() for t in r.alert_types if not t.reminders)
        return cls(sessions, urls or [PLACEHOLDER_URL], hold, cfg.alertmanager_generator_url, standing,
                   min_severity=cfg.alertmanager_min_severity, timeout=ctx.timeout, scrub=ctx.scrub,
                   placeholder=not urls)

    def body(self, alert: Alert) -> list[dict[str, Any]]:
        """One postable alert (Alertmanager takes a list). Alertmanager refuses a start after the
        end, so a hand-made alert's odd times are clamped rather than dead-lettered."""
        at = _time(alert["ts"], time.time())
        if alert["status"] == "resolved":
            ends = at
        else:
            ends = at + (STANDING_HOLD if alert["alert_type"] in self.standing else self.hold)
        started = _time(alert.get("started_at"), ends + 1)
        # the alert's own strings where they are valid: iso(parse_iso(t)) may lose a millisecond
        starts_at = alert["started_at"] if started <= ends else iso(min(at, ends))
        ends_at = alert["ts"] if ends == at and _time(alert["ts"], -1.0) == at else iso(ends)
        details = orjson.dumps(alert.get("details") or {}, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS,
                               default=str).decode()
        item: dict[str, Any] = {
            "labels": {"alertname": _label(alert["alert_type"]), "severity": alert["severity"],
                       "cluster": _label(alert.get("cluster") or "default"),
                       "subject": _label(alert.get("subject") or "cluster")},
            "annotations": {"title": alert["title"], "message": alert.get("message") or "", "details": details},
            "startsAt": starts_at,
            "endsAt": ends_at,
        }
        if self.generator_url:
            item["generatorURL"] = self.generator_url
        return [item]

    def request(self, alert: Alert) -> Request:
        """What goes to the first instance (every instance gets the same)."""
        return Request(self.urls[0], cast(Any, self.body(alert)))

    def preview(self, alert: Alert) -> dict[str, Any]:
        return {"url": ",".join(redact_webhook(u) or "" for u in self.urls), "headers": {},
                "payload": self.body(alert), "placeholder": self.placeholder}

    def send(self, alert: Alert) -> Result:
        """Posted to every instance at once; delivered when at least one accepts (they gossip)."""
        items = self.body(alert)
        if len(self.urls) == 1:
            return self._post(self.session, self.urls[0], items)
        with concurrent.futures.ThreadPoolExecutor(len(self.urls)) as pool:
            results = list(pool.map(self._post, self.sessions, self.urls, [items] * len(self.urls)))
        return combine(results)

    def _post(self, session: requests.Session, url: str, items: list[dict[str, Any]]) -> Result:
        """The shared POST (timeouts, no redirects, classified and scrubbed errors) to one instance.
        Its body is a JSON list, Alertmanager's postable alerts; with several instances each error
        names its instance."""
        r = HttpSink(session, self.min_severity, self.timeout, self.scrub).post(Request(url, cast(Any, items)))
        if r.error and len(self.urls) > 1:
            r = dataclasses.replace(r, error=f"{redact_webhook(url)}: {r.error}")
        return r


def combine(results: Sequence[Result]) -> Result:
    """Delivered if any instance accepted; else retry if any failure is transient; else permanent."""
    for r in results:
        if r.outcome == "delivered":
            return r
    errors = "; ".join(r.error for r in results if r.error)
    if any(r.outcome == "retry" for r in results):
        waits = [r.retry_after for r in results if r.retry_after is not None]
        return Result("retry", next((r.http_status for r in results if r.outcome == "retry"), None), errors,
                      min(waits) if waits else None)
    return Result("permanent", results[-1].http_status, errors)


SINK: SinkClass = AlertmanagerSink  # what the registry loads; mypy checks it is a complete sink plugin
