"""The dispatcher against real HTTP receivers: retries, the spool, order, exactly-once, Slack bursts."""

from __future__ import annotations

import os
import threading
import time

import pytest
import requests

from doorman.notify import Clock, Dispatcher, Intake, Pacer, RetryPolicy, Spool, send_with_retry
from doorman.notify import run as drive
from doorman.sinks import Result
from doorman.sinks.pagerduty import PagerDutySink
from doorman.sinks.slack import SlackSink
from doorman.sinks.webhook import WebhookSink
from tests.notify_support import HOOK_PATH, PD_PATH, ROUTING_KEY, SLACK_PATH, alert, read_ndjson
from tests.receiver import Receiver, Reply
from tests.support import free_port

FAST = RetryPolicy(attempts=3, max_seconds=3.0, backoff=0.05)


class FakeTime:
    """A clock that moves only when delivery waits or sleeps: retry and pacing logic, tested
    without sleeping for real. `waits` and `sleeps` record what delivery asked for."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now
        self.waits: list[float] = []
        self.sleeps: list[float] = []
        self.clock = Clock(wall=lambda: self.now, monotonic=lambda: self.now, sleep=self.sleep)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class Run:
    """One doorman-notify run in-process: sinks, a spool on disk, the records it wrote."""

    def __init__(self, tmp_path, *sinks, policy=FAST, fake: FakeTime | None = None, **kw):
        self.records: list[dict] = []
        self.warnings: list[str] = []
        self.spool = Spool(str(tmp_path / "spool.ndjson"), on_error=self.warnings.append)
        self.stop = threading.Event()
        if fake is not None:
            kw.update(clock=fake.clock, wait=fake.wait)
        self.d = Dispatcher(list(sinks), self.records.append, self.warnings.append, self.spool, policy,
                            self.stop, **kw)

    def results(self, destination=None):
        return [(r["fingerprint"], r["destination"], r["result"]) for r in self.records
                if destination in (None, r["destination"])]


def hook(url, session=None, **kw):
    return WebhookSink(session or requests.Session(), url, timeout=(0.5, 0.5), **kw)


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


def test_retry_after_beyond_the_cap_waits_in_the_spool_until_due(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(429, headers={"Retry-After": "3600"}), Reply(200))
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH)))
    run.d.handle([alert(1)])
    assert run.results() == [(alert(1)["fingerprint"], "webhook", "spooled")]
    [entry] = read_ndjson(tmp_path / "spool.ndjson")
    assert entry["next_attempt_at"] > "2026" and entry["attempts"] == 1
    again = Run(tmp_path, hook(receiver.url(HOOK_PATH)))
    again.d.replay()
    assert again.records == [] and len(receiver.at(HOOK_PATH)) == 1


def test_permanent_error_is_not_retried_and_goes_to_the_dead_letter_file(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(400, "invalid_payload"))
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH)))
    run.d.handle([alert(1)])
    [rec] = run.records
    assert (rec["result"], rec["http_status"], rec["attempts"]) == ("failed", 400, 1)
    assert rec["error"] == "HTTP 400 Bad Request: invalid_payload"
    assert len(receiver.at(HOOK_PATH)) == 1
    [dead] = read_ndjson(tmp_path / "spool.dead.ndjson")
    assert dead["alert"] == alert(1) and dead["destination"] == "webhook" and dead["http_status"] == 400
    assert run.spool.counts() == {}
    assert any("refused 1 alert(s)" in w and "for good" in w for w in run.warnings)


def test_unreachable_receiver_spools_and_the_next_run_delivers_exactly_once(tmp_path, receiver):
    dead_url = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"
    first = Run(tmp_path, hook(dead_url), fake=FakeTime())
    first.d.handle([alert(1), alert(2)])
    assert [r["result"] for r in first.records] == ["spooled", "spooled"]
    assert first.records[0]["attempts"] == 3 and first.records[1]["attempts"] == 0  # queued behind, untried
    assert first.records[0]["error"] == f"cannot connect to {dead_url.split('/')[2]} (connection refused)"
    assert [e["alert"]["fingerprint"] for e in read_ndjson(tmp_path / "spool.ndjson")] == \
        [alert(1)["fingerprint"], alert(2)["fingerprint"]]

    second = Run(tmp_path, hook(receiver.url(HOOK_PATH)))
    second.d.replay()
    assert [(r["result"], r["from_spool"], r["attempts"]) for r in second.records] == \
        [("delivered", True, 4), ("delivered", True, 1)]
    assert [r.json["fingerprint"] for r in receiver.at(HOOK_PATH)] == \
        [alert(1)["fingerprint"], alert(2)["fingerprint"]]
    assert read_ndjson(tmp_path / "spool.ndjson") == []

    third = Run(tmp_path, hook(receiver.url(HOOK_PATH)))
    third.d.replay()
    third.d.handle([alert(3)])
    assert len(receiver.at(HOOK_PATH)) == 3  # the two spooled ones were not sent again


def test_new_alerts_are_sent_after_the_spooled_ones_in_order(tmp_path, receiver):
    Run(tmp_path, hook(f"http://127.0.0.1:{free_port()}/x")).d.handle([alert(1), alert(2)])
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH)))
    run.d.handle([alert(3)])
    assert [r.json["subject"] for r in receiver.at(HOOK_PATH)] == ["queue:q1", "queue:q2", "queue:q3"]
    assert [(r["subject"], r["from_spool"]) for r in run.records] == \
        [("queue:q1", True), ("queue:q2", True), ("queue:q3", False)]


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
    assert rec["result"] == "spooled" and rec["error"].endswith("did not answer within 0.5 s")
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


def test_slack_summary_that_fails_is_spooled_per_alert_and_replayed_as_one_summary(tmp_path, receiver):
    receiver.script(SLACK_PATH, Reply(503), Reply(503), Reply(503), Reply(200))
    slack = SlackSink(requests.Session(), receiver.url(SLACK_PATH))
    slack.min_interval = 0
    run = Run(tmp_path, slack, fake=FakeTime())
    run.d.handle([alert(i) for i in range(1, 6)])
    assert [r["result"] for r in run.records] == ["spooled"] * 5
    assert run.spool.counts() == {"slack": 5}
    Run(tmp_path, slack).d.replay()
    assert len(receiver.delivered(SLACK_PATH)) == 1
    assert receiver.delivered(SLACK_PATH)[0].json["text"].startswith("🔴 5 alerts")
    assert run.spool.counts() == {}


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


def run_dispatcher(lines, run):
    drive(lines, run.d, run.stop)


def test_intake_gathers_a_burst_into_one_batch():
    intake = Intake(iter(range(25)))
    batch, eof = intake.batch(timeout=1, window=0.2)
    assert batch == list(range(25)) and eof


def test_spool_lock_makes_a_second_writer_wait(tmp_path):
    a = Spool(str(tmp_path / "s.ndjson"))
    b = Spool(str(tmp_path / "s.ndjson"))
    order: list[str] = []
    held = threading.Event()

    def holder():
        with a.locked():
            held.set()
            time.sleep(0.3)
            order.append("a done")

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    b.add([{"id": "x", "destination": "webhook", "alert": alert(1)}])
    order.append("b added")
    t.join()
    assert order == ["a done", "b added"]


def test_unreadable_spool_line_is_moved_to_dead_letter_not_dropped(tmp_path):
    path = tmp_path / "spool.ndjson"
    path.write_bytes(b'{"id":"x","destination":"webhook","alert":{"fingerprint":"f"}}\nnot json\n')
    warnings: list[str] = []
    spool = Spool(str(path), on_error=warnings.append)
    assert [e["id"] for e in spool.load()] == ["x"]
    assert read_ndjson(tmp_path / "spool.dead.ndjson")[0]["raw"] == "not json"
    assert "spool.ndjson:2: unreadable spool entry" in warnings[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool.dead.ndjson", "spool.ndjson", "spool.ndjson.lock"]


def test_run_replays_the_spool_periodically_while_streaming(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(503), Reply(503), Reply(503), Reply(200))
    run = Run(tmp_path, hook(receiver.url(HOOK_PATH)), spool_retry_seconds=0.3)
    never = threading.Event()

    def lines():
        yield alert(1)
        never.wait(5)

    t = threading.Thread(target=run_dispatcher, args=(lines(), run), daemon=True)
    t.start()
    deadline = time.monotonic() + 4
    while not receiver.delivered(HOOK_PATH) and time.monotonic() < deadline:
        time.sleep(0.05)
    run.stop.set()
    never.set()
    t.join(5)
    assert [(r["result"], r["from_spool"]) for r in run.records] == [("spooled", False), ("delivered", True)]
    assert len(receiver.delivered(HOOK_PATH)) == 1
    assert run.spool.counts() == {}


def test_a_long_outage_spools_hundreds_in_order_and_replays_them_all_once(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(503))
    alerts = [alert(i) for i in range(1, 301)]
    down = Run(tmp_path, hook(receiver.url(HOOK_PATH)), fake=FakeTime())
    down.d.handle(alerts)
    assert len(receiver.at(HOOK_PATH)) == 3  # one alert retried; the other 299 queued behind it, untried
    assert [r["result"] for r in down.records] == ["spooled"] * 300
    assert [e["alert"]["subject"] for e in read_ndjson(tmp_path / "spool.ndjson")] == [a["subject"] for a in alerts]

    receiver.script(HOOK_PATH, Reply(200))
    up = Run(tmp_path, hook(receiver.url(HOOK_PATH)))
    up.d.replay()
    assert [r.json["subject"] for r in receiver.delivered(HOOK_PATH)] == [a["subject"] for a in alerts]
    assert read_ndjson(tmp_path / "spool.ndjson") == []


def test_spool_files_are_private_and_a_planted_symlink_is_never_written_through(tmp_path):
    from doorman.atomicfile import write_atomic

    spool = Spool(str(tmp_path / "state" / "doorman" / "spool.ndjson"))
    spool.add([{"id": "x", "destination": "webhook", "alert": alert(1)}])
    assert (tmp_path / "state" / "doorman").stat().st_mode & 0o777 == 0o700
    for name in ("spool.ndjson", "spool.ndjson.lock"):
        assert (tmp_path / "state" / "doorman" / name).stat().st_mode & 0o777 == 0o600
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    target = tmp_path / "file"
    os.symlink(victim, f"{target}.tmp.{os.getpid()}")  # planted where our temporary file goes
    write_atomic(str(target), b"new")
    assert target.read_bytes() == b"new" and victim.read_text() == "keep me"
    os.symlink(victim, tmp_path / "s.ndjson.lock")
    with pytest.raises(OSError):
        Spool(str(tmp_path / "s.ndjson")).add([{"id": "y", "destination": "webhook", "alert": alert(1)}])
    assert victim.read_text() == "keep me"


def test_file_lock_with_a_timeout_gives_up_when_another_holder_keeps_it(tmp_path):
    from doorman.atomicfile import FileLock

    holder = FileLock(str(tmp_path / "x.lock"))
    assert holder.acquire()
    fake = FakeTime()
    waiter = FileLock(str(tmp_path / "x.lock"), clock=fake.clock.monotonic, sleep=fake.sleep)
    assert waiter.acquire(timeout=1.0) is False
    assert sum(fake.sleeps) >= 1.0 and waiter.fd is None
    holder.release()
    assert waiter.acquire(timeout=1.0) is True
    waiter.release()
