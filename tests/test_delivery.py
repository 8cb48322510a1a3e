"""The dispatcher against real HTTP receivers: retries, order, exactly-once, Slack bursts, routing (the
spool: test_delivery_spool.py)."""

from __future__ import annotations

import threading
import time

import requests

from doorman.notify import Clock, Intake, Pacer, RetryPolicy, send_with_retry
from doorman.sinks import Result
from doorman.sinks.pagerduty import PagerDutySink
from doorman.sinks.slack import SlackSink
from tests.support.delivery import FakeTime, Run, hook, run_dispatcher
from tests.support.notify import HOOK_PATH, PD_PATH, ROUTING_KEY, SLACK_PATH, alert
from tests.support.process import free_port
from tests.support.receiver import Reply


def test_500_then_200_is_delivered_once_on_the_second_attempt(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(500), Reply(200))
    fake = FakeTime()
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH)), fake=fake)
    run.d.handle([alert(1)])
    assert len(fake.waits) == 1 and 0.025 <= fake.waits[0] <= 0.05  # one backoff, half of it jitter
    [rec] = run.records
    assert (rec["result"], rec["http_status"], rec["attempts"], rec["error"]) == ("delivered", 200, 2, None)
    assert len(receiver.at(HOOK_PATH)) == 2 and len(receiver.delivered(HOOK_PATH)) == 1
    assert run.spool.counts() == {}


def test_429_retry_after_is_honoured(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(429, headers={"Retry-After": "1"}), Reply(200))
    fake = FakeTime()
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH)), fake=fake)
    run.d.handle([alert(1)])
    assert len(receiver.at(HOOK_PATH)) == 2
    assert fake.waits == [1.0]  # the backoff (at most 0.05 s) gives way to the receiver's 1 s
    assert run.records[0]["result"] == "delivered" and run.records[0]["attempts"] == 2


def test_while_a_destination_is_down_new_alerts_queue_behind_without_stalling(tmp_path):
    run = Run(tmp_path, hook(f"http://127.0.0.1:{free_port()}/x"), spool_retry_seconds=60)
    run.d.handle([alert(1)])
    started = time.monotonic()
    run.d.handle([alert(2)])
    assert time.monotonic() - started < 0.5
    assert run.records[-1]["result"] == "spooled" and run.records[-1]["attempts"] == 0
    assert "queued behind 1 earlier" in run.records[-1]["error"]
    assert 59 < run.d.next_replay_in() <= 60


def test_hung_receiver_is_bounded_by_the_retry_budget(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(200, delay=5))
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH)), policy=RetryPolicy(attempts=5, max_seconds=0.8, backoff=0.05))
    started = time.monotonic()
    run.d.handle([alert(1)])
    assert time.monotonic() - started < 2.5
    [rec] = run.records
    # connect + read timeouts (0.5 s each) are one deadline for the whole answer
    assert rec["result"] == "spooled" and rec["error"].endswith("did not answer within 1 s")
    keys = {r.headers["Idempotency-Key"] for r in receiver.at(HOOK_PATH)}
    assert len(keys) == 1  # every attempt carries the same key: the receiver can drop the duplicates


def test_each_destination_gets_each_alert_once_and_slack_gets_one_summary_for_a_burst(tmp_path, receiver):
    s = requests.Session()
    receiver.script(PD_PATH, Reply(202, '{"status":"success"}'))
    run = Run(tmp_path, PagerDutySink(s, ROUTING_KEY, receiver.url(PD_PATH), min_severity="info"),
              hook(receiver.url(HOOK_PATH), s), SlackSink(s, receiver.url(SLACK_PATH)))
    burst = [alert(i) for i in range(1, 11)]
    run.d.handle(burst)
    assert len(receiver.at(SLACK_PATH)) == 1
    assert "10 alerts" in receiver.at(SLACK_PATH)[0].json["text"]
    for path in (PD_PATH, HOOK_PATH):
        assert sorted(r.json.get("dedup_key") or r.json["fingerprint"] for r in receiver.at(path)) == \
            sorted(a["fingerprint"] for a in burst)
    assert len(run.records) == 30 and {r["result"] for r in run.records} == {"delivered"}
    assert {r["summary_of"] for r in run.records if r["destination"] == "slack"} == {10}


def test_slack_alerts_below_the_burst_size_are_sent_one_by_one_paced(tmp_path, receiver):
    fake = FakeTime()
    slack = SlackSink(requests.Session(), receiver.url(SLACK_PATH))
    sent_at: list[float] = []
    post = slack.post
    slack.post = lambda req: sent_at.append(fake.now) or post(req)
    run = Run(tmp_path, slack, fake=fake)
    run.d.handle([alert(1), alert(2), alert(3)])
    got = receiver.at(SLACK_PATH)
    assert [r.json["blocks"][0]["text"]["text"] for r in got] == \
        [f"🔴 CRITICAL · Backlog explosion on q{i}" for i in (1, 2, 3)]
    assert fake.sleeps == [1.0, 1.0]
    assert all(b - a >= 1.0 for a, b in zip(sent_at, sent_at[1:], strict=False))


def test_pacer_spaces_posts_by_its_interval():
    now = [100.0]
    slept: list[float] = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    pace = Pacer(1.0, Clock(monotonic=lambda: now[0], sleep=sleep))
    pace()
    now[0] += 0.25
    pace()
    pace()
    assert slept == [0.75, 1.0]


def test_routing_by_minimum_severity(tmp_path, receiver):
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH), min_severity="critical"))
    run.d.handle([alert(1, severity="warning"), alert(2, severity="emergency"), alert(3, severity="critical")])
    assert [r["result"] for r in run.records] == ["skipped", "delivered", "delivered"]
    assert run.records[0]["error"] == "severity warning is below webhook's minimum (critical)"
    assert [r.json["subject"] for r in receiver.at(HOOK_PATH)] == ["queue:q2", "queue:q3"]


def test_retry_policy_stops_at_the_attempt_limit_and_backs_off_exponentially():
    waits: list[float] = []
    calls = []

    def attempt():
        calls.append(1)
        return Result("retry", error="boom")

    policy = RetryPolicy(attempts=4, max_seconds=100, backoff=1.0)
    sent = send_with_retry(attempt, policy, lambda d: waits.append(d) or False)
    assert sent.attempts == 4 and len(calls) == 4
    assert [0.5 <= waits[0] <= 1.0, 1.0 <= waits[1] <= 2.0, 2.0 <= waits[2] <= 4.0] == [True] * 3


def test_stop_during_backoff_ends_the_retry_and_spools(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(500))
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH)), policy=RetryPolicy(attempts=5, max_seconds=60, backoff=20))
    threading.Timer(0.3, run.stop.set).start()
    started = time.monotonic()
    run.d.handle([alert(1), alert(2)])
    assert time.monotonic() - started < 2
    assert [r["result"] for r in run.records] == ["spooled", "spooled"]
    assert run.spool.counts() == {"webhook": 2}


def test_streaming_run_delivers_each_line_as_it_arrives(tmp_path, receiver):
    """The dispatcher acts on a line long before the input ends (a daemon's pipe never closes)."""
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH)))
    released = threading.Event()

    def lines():
        yield alert(1)
        released.wait(10)
        yield alert(2)

    t = threading.Thread(target=run_dispatcher, args=(lines(), run))
    t.start()
    deadline = time.monotonic() + 5
    while not receiver.at(HOOK_PATH) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(receiver.at(HOOK_PATH)) == 1
    released.set()
    t.join(5)
    assert len(receiver.at(HOOK_PATH)) == 2


def test_intake_gathers_a_burst_into_one_batch():
    intake = Intake(iter(range(25)))
    batch, eof = intake.batch(timeout=1, window=0.2)
    assert batch == list(range(25)) and eof
