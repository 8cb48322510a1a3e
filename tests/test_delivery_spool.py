"""The spool against real HTTP receivers: what cannot be delivered now is kept (private, locked) and
replayed exactly once, in order; what never can goes to the dead-letter file."""

from __future__ import annotations

import os
import threading
import time

import pytest
import requests

from doorman.notify import Spool
from doorman.sinks.slack import SlackSink
from tests.support.delivery import FakeTime, Run, hook, run_dispatcher
from tests.support.notify import HOOK_PATH, SLACK_PATH, alert, read_ndjson
from tests.support.process import free_port
from tests.support.receiver import Reply


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


@pytest.mark.slow
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
