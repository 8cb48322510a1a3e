"""Slack incoming webhook: Block Kit with a plain `text` fallback, severity visible at a glance.

Slack takes about one message per second per webhook, so the dispatcher paces this sink
(`min_interval`) and turns a burst of more than `SUMMARY_OVER` alerts into one summary message
listing them (`summarize`, the `Summarizing` capability) instead of a flood.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from doorman.contract.severity import rank as severity_rank
from doorman.sinks.base import Alert, Result, SinkClass
from doorman.sinks.http import Request, UrlSink, url_settings
from doorman.textsafe import printable

EMOJI = {"info": "ℹ️", "warning": "⚠️", "critical": "🔴", "emergency": "🚨"}
RESOLVED = "✅"
SUMMARY_OVER = 3  # a batch of more Slack-bound alerts than this becomes one summary
SUMMARY_MAX = 50  # alerts listed in one summary message
MAX_FIELDS = 10  # Block Kit: at most 10 fields per section
PLACEHOLDER_URL = "https://hooks.slack.com/services/T00000000/B00000000/PLACEHOLDER"


def esc(text: Any) -> str:
    """Slack mrkdwn treats &, < and > as control characters: escaped, `<!channel>`, `<@U123>` and
    `<https://x|y>` from a broker name arrive as inert text. Control characters are shown escaped."""
    return printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: Any) -> str:
    """For `plain_text` objects, which show entities literally: look-alike angle brackets instead."""
    return printable(text).replace("<", "\u2039").replace(">", "\u203a")


def cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def flatten(details: Any, prefix: str = "") -> list[tuple[str, str]]:
    """`{"queues": {"payments": 2000}}` → `[("queues.payments", "2000")]`, in the alert's order."""
    if not isinstance(details, dict):
        return [(prefix or "value", fmt(details))]
    out: list[tuple[str, str]] = []
    for k, v in details.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out += flatten(v, key)
        else:
            out.append((key, fmt(v)))
    return out


def fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower() if v is not None else "–"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else str(round(v, 2))
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v) or "–"
    return str(v)


def badge(alert: Alert) -> str:
    if alert.get("status") == "resolved":
        return f"{RESOLVED} RESOLVED"
    return f"{EMOJI.get(alert['severity'], '❔')} {alert['severity'].upper()}"


def title(alert: Alert) -> str:
    """The title without a "Resolved: " prefix, which the ✅ RESOLVED badge already says."""
    t: str = alert["title"]
    if alert.get("status") == "resolved" and t.lower().startswith("resolved: "):
        return t[len("resolved: "):]
    return t


def one_line(alert: Alert) -> str:
    """The top-level `text` (notifications, fallback): mrkdwn too, so escaped like the blocks."""
    return esc(f"{badge(alert)}: {title(alert)} — {alert.get('message', '')} [{alert.get('cluster', '')}]")


class SlackSink(UrlSink):
    name = "slack"
    min_interval = 1.0
    summary_over = SUMMARY_OVER
    summary_max = SUMMARY_MAX

    enabled_by = "slack_webhook_url"
    severity_key = "slack_min_severity"
    settings = url_settings(enabled_by, "Slack incoming webhook.", severity_key, "warning", "Slack")
    placeholder_url = PLACEHOLDER_URL

    def request(self, alert: Alert) -> Request:
        fields = flatten(alert.get("details") or {})
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                        "text": cut(plain(f"{badge(alert)} · {title(alert)}"), 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(esc(alert.get("message", "")), 3000)}},
        ]
        if fields:
            blocks.append({"type": "section", "fields": [
                {"type": "mrkdwn", "text": cut(f"*{esc(k)}*\n{esc(v)}", 2000)} for k, v in fields[:MAX_FIELDS]]})
        context = [f"cluster *{esc(alert.get('cluster', ''))}*", esc(alert.get("subject", "")),
                   f"`{esc(alert['alert_type'])}`"]
        if alert.get("status") == "resolved":
            context.append(f"was {esc(alert['severity'])}")
        if alert.get("started_at"):
            context.append(f"since {esc(alert['started_at'])}")
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(" · ".join(context), 3000)}]})
        if len(fields) > MAX_FIELDS:
            rest = " · ".join(f"{k} {v}" for k, v in fields[MAX_FIELDS:])
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": cut(esc(rest), 3000)}]})
        return Request(self.url, {"text": cut(one_line(alert), 3000), "blocks": blocks})

    def summary_request(self, alerts: Sequence[Alert]) -> Request:
        """One message listing a burst of alerts, worst first, each on its own line."""
        worst = max(alerts, key=lambda a: (a.get("status") != "resolved", severity_rank(a["severity"])))
        clusters = ", ".join(dict.fromkeys(a.get("cluster", "") for a in alerts))
        firing = sum(a.get("status") != "resolved" for a in alerts)
        head = (f"{EMOJI.get(worst['severity'], '❔') if firing else RESOLVED} {len(alerts)} alerts · {clusters}"
                f" ({firing} firing, {len(alerts) - firing} resolved)")
        lines = [cut(f"{badge(a)} *{esc(title(a))}* — {esc(a.get('message', ''))} ({esc(a.get('subject', ''))})",
                     400) for a in alerts]
        blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                                    "text": cut(plain(head), 150)}}]
        chunk: list[str] = []
        for line in lines:
            if chunk and len("\n".join([*chunk, line])) > 3000:
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
                chunk = []
            chunk.append(line)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(chunk)}})
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                       f"{len(alerts)} alerts arrived at once: one summary instead of {len(alerts)} messages."}]})
        text = esc(head) + "\n" + "\n".join(one_line(a) for a in alerts)
        return Request(self.url, {"text": cut(text, 3000), "blocks": blocks})

    def summarize(self, alerts: Sequence[Alert]) -> Result:
        return self.post(self.summary_request(alerts))

    def preview_summary(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        return self.redacted(self.summary_request(alerts))


SINK: SinkClass = SlackSink  # what the registry loads; mypy checks it is a complete sink plugin
