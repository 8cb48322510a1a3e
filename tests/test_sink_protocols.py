"""The sink protocols as a plugin author implements them: the smallest sink, capabilities, previews,
building from the config, and what loading the config must not import."""

from __future__ import annotations

from pathlib import Path

from doorman.sinks import Result
from doorman.sinks.pagerduty import PagerDutySink
from doorman.sinks.slack import SlackSink
from doorman.sinks.webhook import WebhookSink
from tests.support.notify import PD_PATH, ROUTING_KEY, SLACK_PATH, alert


class ListSink:
    """The smallest sink: the three attributes and `send`; no preview, no summaries."""

    name = "list"
    min_interval = 0.0

    def __init__(self, min_severity="info"):
        self.min_severity = min_severity
        self.got: list[dict] = []

    def send(self, alert):
        self.got.append(alert)
        return Result("delivered")


def test_a_minimal_sink_gets_alerts_and_dry_run_never_sends_to_it():
    from doorman.notify import Dispatcher
    from doorman.sinks import Previewing, Sink, Summarizing

    sink = ListSink(min_severity="critical")
    assert isinstance(sink, Sink) and not isinstance(sink, Previewing) and not isinstance(sink, Summarizing)
    records: list[dict] = []
    Dispatcher([sink], records.append, records.append, None).handle([alert(1), alert(2, severity="info")])
    assert sink.got == [alert(1)]
    assert [(r["destination"], r["result"]) for r in records] == [("list", "skipped"), ("list", "delivered")]
    dry: list[dict] = []
    Dispatcher([ListSink()], dry.append, dry.append, None, dry_run=True).handle([alert(i) for i in range(1, 6)])
    assert [(r["result"], r["payload"], r["placeholder"]) for r in dry] == [("dry_run", None, False)] * 5


def test_built_in_sinks_declare_their_capabilities(session):
    from doorman.sinks import Previewing, Sink, Summarizing

    slack, pd, hook = SlackSink(session, "http://x.invalid/"), PagerDutySink(session, ROUTING_KEY), \
        WebhookSink(session, "http://x.invalid/")
    assert all(isinstance(s, Sink) and isinstance(s, Previewing) for s in (slack, pd, hook))
    assert isinstance(slack, Summarizing) and not isinstance(pd, Summarizing) and not isinstance(hook, Summarizing)


def test_each_sink_redacts_its_own_preview(session):
    pd = PagerDutySink(session, ROUTING_KEY, f"https://events.example.com{PD_PATH}").preview(alert(1))
    assert pd["payload"]["routing_key"] == "***cdef" and pd["url"] == "https://events.example.com/***"
    assert pd["placeholder"] is False
    slack = SlackSink(session, f"https://hooks.slack.com{SLACK_PATH}")
    summary = slack.preview_summary([alert(i) for i in range(1, 5)])
    assert summary["url"] == "https://hooks.slack.com/***" and summary["payload"]["text"].startswith("🔴 4 alerts")


def test_sinks_build_themselves_from_config_in_registry_order(session):
    from doorman.config.load import make_config
    from doorman.sinks import SinkContext, build_sinks

    ctx = SinkContext(session, (0.5, 0.5), lambda s: s)
    assert build_sinks(make_config(), ctx) == []
    cfg = make_config(slack_webhook_url="https://hooks.slack.com/services/T/B/x", pagerduty_routing_key=ROUTING_KEY)
    assert [s.name for s in build_sinks(cfg, ctx)] == ["pagerduty", "slack"]
    placeholders = build_sinks(make_config(), SinkContext(session, (0.5, 0.5), lambda s: s, placeholder=True))
    assert [(s.name, s.preview(alert())["placeholder"]) for s in placeholders] == \
        [("pagerduty", True), ("webhook", True), ("slack", True), ("alertmanager", True)]


def test_no_destination_names_the_variable_that_turns_each_sink_on():
    from doorman.sinks import no_destination

    assert no_destination() == ("no destination configured (set PAGERDUTY_ROUTING_KEY, GENERIC_WEBHOOK_URL, "
                                "SLACK_WEBHOOK_URL or ALERTMANAGER_URL, or the matching keys in the config file)")


def test_loading_the_config_does_not_import_requests():
    """Config loading imports every sink module; doorman-collect must not pay for requests."""
    import subprocess
    import sys

    code = ("import sys; from doorman.config.load import make_config; make_config(); "
            "sys.exit('requests' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0
