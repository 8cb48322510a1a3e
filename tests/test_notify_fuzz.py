"""Fuzz doorman-notify's input: whatever arrives on stdin, no traceback — each line is either
rejected with a message naming it, or rendered into every destination's payload."""

from __future__ import annotations

import io
import threading

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorman.config.load import make_config
from doorman.notify import Dispatcher, stream_alerts
from doorman.sinks import SinkContext, build_sinks

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

alert_like = st.fixed_dictionaries(
    {"kind": st.just("alert"), "v": st.just(1),
     "fingerprint": st.text(min_size=1, max_size=40), "alert_type": st.text(min_size=1, max_size=30),
     "severity": st.sampled_from(["info", "warning", "critical", "emergency"]),
     "status": st.sampled_from(["firing", "resolved"]), "ts": st.text(min_size=1, max_size=30),
     "title": st.text(min_size=1, max_size=300)},
    optional={"message": st.text(max_size=3000), "cluster": st.text(max_size=50), "subject": st.text(max_size=50),
              "details": st.dictionaries(st.text(max_size=20), json_values, max_size=8),
              "started_at": json_values},
)

lines = st.lists(
    st.one_of(
        alert_like.map(lambda a: orjson.dumps(a)),
        json_values.map(lambda v: orjson.dumps(v)),
        st.binary(max_size=200).filter(lambda b: b"\n" not in b),
    ),
    max_size=6,
)


def dry_run(data: bytes) -> tuple[list[dict], list[str]]:
    records: list[dict] = []
    problems: list[str] = []
    cfg = make_config()
    sinks = build_sinks(cfg, SinkContext(requests.Session(), (3.05, 10.0), lambda s: s, placeholder=True))
    dispatcher = Dispatcher(sinks, records.append, problems.append, None, stop=threading.Event(), dry_run=True)
    alerts = list(stream_alerts(io.BytesIO(data), problems.append))
    if alerts:
        dispatcher.handle(alerts)
    return records, problems


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_any_input_is_rendered_or_rejected_never_a_traceback(raw_lines):
    data = b"\n".join(raw_lines) + b"\n"
    records, problems = dry_run(data)
    for r in records:
        orjson.dumps(r)  # every record is serialisable
        assert r["result"] in ("dry_run", "skipped")
    for p in problems:
        assert p.startswith("<stdin>:") and "; skipped" in p


def test_a_valid_alert_reaches_every_destination_in_dry_run():
    alert = {"kind": "alert", "v": 1, "fingerprint": "f" * 32, "alert_type": "workers_down",
             "severity": "emergency", "status": "firing", "ts": "2026-11-28T01:00:00.000Z",
             "title": "No workers", "message": "No workers responding but 5 tasks are pending!",
             "details": {"pending_tasks": 5, "queues": {"celery": 5}}}
    records, problems = dry_run(orjson.dumps(alert) + b"\nnot json\n")
    assert sorted(r["destination"] for r in records) == ["alertmanager", "pagerduty", "slack", "webhook"]
    [problem] = problems
    assert problem.startswith("<stdin>:2: not valid JSON (") and problem.endswith("); skipped")
