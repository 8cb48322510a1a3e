"""Each sink's payload, field by field, as a real HTTP receiver gets it; and how answers are classified."""

from __future__ import annotations

import json
from email.utils import formatdate
from pathlib import Path

import jsonschema
import pytest

from doorman.redact import Scrubber
from doorman.sinks import retry_after_seconds
from doorman.sinks.pagerduty import PagerDutySink
from doorman.sinks.slack import SlackSink, flatten
from doorman.sinks.webhook import WebhookSink, idempotency_key
from tests.support.notify import HOOK_PATH, PD_PATH, ROUTING_KEY, SLACK_PATH, alert
from tests.support.process import free_port
from tests.support.receiver import Reply

PD_SCHEMA = json.loads((Path(__file__).parent / "data" / "pagerduty-events-v2.schema.json").read_text())


def test_slack_message_has_fallback_text_title_message_and_a_details_table(receiver, session):
    sink = SlackSink(session, receiver.url(SLACK_PATH))
    a = alert(3, severity="critical", details={"total_pending": 5000, "threshold": 1000,
                                                "queues": {"payments": 2000}, "ratio": 0.3333})
    assert sink.send(a).outcome == "delivered"
    [got] = receiver.at(SLACK_PATH)
    body = got.json
    assert body["text"] == "🔴 CRITICAL: Backlog explosion on q3 — 5003 tasks pending in q3 (threshold 1000). [default]"
    header, message, table, context = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                 "text": "🔴 CRITICAL · Backlog explosion on q3"}}
    assert message["text"] == {"type": "mrkdwn", "text": "5003 tasks pending in q3 (threshold 1000)."}
    assert [f["text"] for f in table["fields"]] == ["*total_pending*\n5000", "*threshold*\n1000",
                                                     "*queues.payments*\n2000", "*ratio*\n0.33"]
    assert context["elements"][0]["text"] == ("cluster *default* · queue:q3 · `backlog_explosion` · "
                                              "since 2026-11-28T01:00:25.318Z")
    assert got.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("severity,emoji", [("info", "ℹ️"), ("warning", "⚠️"), ("critical", "🔴"),
                                            ("emergency", "🚨")])
def test_slack_shows_severity_at_a_glance(session, severity, emoji):
    body = SlackSink(session, "http://x.invalid/").request(alert(severity=severity)).body
    assert body["text"].startswith(f"{emoji} {severity.upper()}: ")
    assert body["blocks"][0]["text"]["text"].startswith(f"{emoji} {severity.upper()} · ")


def test_slack_resolution_reads_as_resolved(session):
    body = SlackSink(session, "http://x.invalid/").request(alert(severity="critical", status="resolved")).body
    assert body["text"].startswith("✅ RESOLVED: Backlog explosion on q1")
    assert body["blocks"][0]["text"]["text"] == "✅ RESOLVED · Backlog explosion on q1"
    assert "was critical" in body["blocks"][-1]["elements"][0]["text"]


def test_slack_escapes_control_characters_and_spills_extra_details(session):
    details = {f"k{i}": i for i in range(12)}
    body = SlackSink(session, "http://x.invalid/").request(alert(message="a < b & c > d", details=details)).body
    assert body["blocks"][1]["text"]["text"] == "a &lt; b &amp; c &gt; d"
    assert len(body["blocks"][2]["fields"]) == 10
    assert body["blocks"][-1]["elements"][0]["text"] == "k10 10 · k11 11"


def test_flatten_uses_dotted_keys():
    assert flatten({"a": {"b": {"c": 1}, "d": [1, 2]}, "e": None, "f": True}) == [
        ("a.b.c", "1"), ("a.d", "1, 2"), ("e", "–"), ("f", "true")]


def test_slack_summary_lists_every_alert_worst_first_in_the_header(receiver, session):
    sink = SlackSink(session, receiver.url(SLACK_PATH))
    alerts = [alert(i, severity="warning") for i in range(1, 10)] + [alert(10, severity="emergency")]
    alerts[2] = alert(3, status="resolved")
    assert sink.summarize(alerts).outcome == "delivered"
    body = receiver.at(SLACK_PATH)[0].json
    assert body["blocks"][0]["text"]["text"] == "🚨 10 alerts · default (9 firing, 1 resolved)"
    listed = "\n".join(b["text"]["text"] for b in body["blocks"] if b["type"] == "section")
    for i in range(1, 11):
        assert f"*Backlog explosion on q{i}*" in listed
    assert "✅ RESOLVED *Backlog explosion on q3*" in listed
    assert body["text"].count("\n") == 10


def test_pagerduty_trigger_event_field_by_field(receiver, session):
    sink = PagerDutySink(session, ROUTING_KEY, receiver.url(PD_PATH))
    receiver.script(PD_PATH, Reply(202, '{"status":"success"}'))
    a = alert(2, severity="emergency")
    assert sink.send(a).outcome == "delivered"
    body = receiver.at(PD_PATH)[0].json
    jsonschema.validate(body, PD_SCHEMA)
    assert body == {
        "routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": a["fingerprint"],
        "client": "Celery Doorman",
        "payload": {
            "summary": "Backlog explosion on q2: 5002 tasks pending in q2 (threshold 1000).",
            "source": "default", "severity": "critical", "timestamp": a["ts"], "component": "queue:q2",
            "group": "default", "class": "backlog_explosion", "custom_details": a["details"],
        },
    }


def test_pagerduty_resolve_closes_the_incident_by_fingerprint(session):
    a = alert(2, status="resolved")
    body = PagerDutySink(session, ROUTING_KEY).request(a).body
    jsonschema.validate(body, PD_SCHEMA)
    assert body == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": a["fingerprint"]}


@pytest.mark.parametrize("ours,theirs", [("emergency", "critical"), ("critical", "critical"),
                                         ("warning", "warning"), ("info", "info")])
def test_pagerduty_severity_mapping(session, ours, theirs):
    body = PagerDutySink(session, ROUTING_KEY).request(alert(severity=ours)).body
    jsonschema.validate(body, PD_SCHEMA)
    assert body["payload"]["severity"] == theirs


def test_pagerduty_summary_is_truncated_to_1024_characters(session):
    body = PagerDutySink(session, ROUTING_KEY).request(alert(message="x" * 5000)).body
    jsonschema.validate(body, PD_SCHEMA)
    assert len(body["payload"]["summary"]) == 1024
    assert body["payload"]["summary"].endswith("x…")


def test_webhook_gets_the_alert_as_is_with_a_stable_idempotency_key(receiver, session):
    sink = WebhookSink(session, receiver.url(HOOK_PATH))
    a, resolved = alert(4), alert(4, status="resolved", ts="2026-11-28T02:00:00.000Z")
    assert sink.send(a).outcome == "delivered"
    assert sink.send(a).outcome == "delivered"
    assert sink.send(resolved).outcome == "delivered"
    first, again, res = receiver.at(HOOK_PATH)
    assert first.json == a
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"] == idempotency_key(a)
    assert first.headers["Idempotency-Key"].startswith(a["fingerprint"] + "-firing-")
    assert res.headers["Idempotency-Key"].startswith(a["fingerprint"] + "-resolved-")
    assert first.headers["User-Agent"].startswith("celery-doorman/")


@pytest.mark.parametrize("reply,outcome", [
    (Reply(200), "delivered"), (Reply(202), "delivered"), (Reply(204, ""), "delivered"),
    (Reply(500, "rollup_error"), "retry"), (Reply(503), "retry"), (Reply(408), "retry"),
    (Reply(429, "slow down", {"Retry-After": "7"}), "retry"),
    (Reply(400, "invalid_payload"), "permanent"), (Reply(403, "action_prohibited"), "permanent"),
    (Reply(404, "channel_not_found"), "permanent"), (Reply(410, "channel_is_archived"), "permanent"),
    (Reply(301, "", {"Location": "http://127.0.0.1:1/elsewhere"}), "permanent"),
])
def test_answers_are_classified(receiver, session, reply, outcome):
    receiver.script(HOOK_PATH, reply)
    scrub = Scrubber(["WEBHOOKSECRET123"])
    r = WebhookSink(session, receiver.url(HOOK_PATH), scrub=scrub).send(alert())
    assert (r.outcome, r.http_status) == (outcome, reply.status)
    assert len(receiver.at(HOOK_PATH)) == 1
    if reply.status == 429:
        assert r.retry_after == 7.0
    if outcome != "delivered":
        assert r.error.startswith(f"HTTP {reply.status}")
        assert (reply.body or "redirect") in r.error


def test_receiver_not_listening_is_transient_and_the_error_hides_the_url(session):
    url = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"
    scrub = Scrubber(["WEBHOOKSECRET123", HOOK_PATH, url])
    r = WebhookSink(session, url, scrub=scrub, timeout=(0.5, 0.5)).send(alert())
    assert r.outcome == "retry" and r.http_status is None
    assert r.error == f"cannot connect to {url.split('/')[2]} (connection refused)"
    assert "WEBHOOKSECRET123" not in r.error


def test_receiver_that_hangs_times_out(receiver, session):
    receiver.script(HOOK_PATH, Reply(200, delay=3))
    r = WebhookSink(session, receiver.url(HOOK_PATH), timeout=(0.5, 0.3)).send(alert())
    assert r.outcome == "retry" and r.error.endswith("did not answer within 0.8 s")  # connect + read: one deadline


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds(formatdate(1000.0 + 30, usegmt=True), now=1000.0) == 30.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_slack_does_not_say_resolved_twice(session):
    a = alert(1, status="resolved", title="Resolved: Backlog explosion on q1")
    body = SlackSink(session, "http://x.invalid/").request(a).body
    assert body["blocks"][0]["text"]["text"] == "✅ RESOLVED · Backlog explosion on q1"
    assert body["text"].startswith("✅ RESOLVED: Backlog explosion on q1 — ")


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), ("-5", 0.0), ("1e12", 86400.0), ("inf", None), ("1e400", None), ("nan", None),
    ("soon", None), ("", None),
])
def test_retry_after_is_finite_and_at_most_a_day(value, expected):
    assert retry_after_seconds(value, now=1_800_000_000.0) == expected


def test_retry_after_asctime_dates_are_gmt(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        now = 1_800_000_000.0
        asctime = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(now + 30))
        assert retry_after_seconds(asctime, now=now) == pytest.approx(30, abs=1)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
