"""The real `doorman-notify` command, as a pipeline runs it, against real HTTP receivers."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import orjson
import pytest

from tests.support.notify import (
    HOOK_PATH,
    PD_PATH,
    ROUTING_KEY,
    SECRETS,
    SLACK_PATH,
    alert,
    ndjson,
    notify_env,
    read_ndjson,
)
from tests.support.process import BIN, cli, free_port, records
from tests.support.receiver import Receiver, Reply


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def all_env(receiver, tmp_path, **extra):
    return notify_env(tmp_path, slack=receiver.url(SLACK_PATH), pd=receiver.url(PD_PATH),
                      hook=receiver.url(HOOK_PATH), PAGERDUTY_MIN_SEVERITY="info", **extra)


def assert_no_secrets(*texts: bytes | str):
    for text in texts:
        text = text.decode() if isinstance(text, bytes) else text
        for secret in SECRETS:
            assert secret not in text


def test_dry_run_with_nothing_configured_shows_every_destination_and_sends_nothing(tmp_path):
    p = cli("doorman-notify", "--dry-run", input=ndjson(alert(1), alert(2, status="resolved")),
            env=notify_env(tmp_path))
    assert p.returncode == 0, p.stderr
    out = records(p.stdout)
    assert [(r["destination"], r["status"]) for r in out] == [
        ("pagerduty", "firing"), ("pagerduty", "resolved"), ("webhook", "firing"), ("webhook", "resolved"),
        ("slack", "firing"), ("slack", "resolved"), ("alertmanager", "firing"), ("alertmanager", "resolved")]
    assert all(r["result"] == "dry_run" and r["placeholder"] for r in out)
    assert out[0]["payload"]["event_action"] == "trigger" and out[0]["payload"]["routing_key"] == "***0000"
    assert out[2]["payload"] == alert(1)
    assert out[5]["payload"]["text"].startswith("✅ RESOLVED")
    assert out[4]["url"] == "https://hooks.slack.com/***"
    assert p.stderr.decode().count("no destination configured") == 1
    assert not (tmp_path / "spool.ndjson").exists()


def test_dry_run_with_real_destinations_redacts_them_and_posts_nothing(tmp_path, receiver):
    p = cli("doorman-notify", "--dry-run", input=ndjson(alert(1)), env=all_env(receiver, tmp_path))
    assert p.returncode == 0, p.stderr
    out = records(p.stdout)
    assert {r["url"] for r in out} == {f"http://127.0.0.1:{receiver.port}/***"}
    assert out[0]["payload"]["routing_key"] == "***cdef"
    assert not any(r["placeholder"] for r in out)
    assert receiver.requests == []
    assert_no_secrets(p.stdout, p.stderr)


def test_delivers_to_every_destination_and_reports_bad_lines_by_number(tmp_path, receiver):
    receiver.script(PD_PATH, Reply(202, '{"status":"success"}'))
    lines = ndjson(alert(1)) + b'{"v":1,"kind":"snapshot","ts":"x"}\nnot json\n' + \
        ndjson(alert(2, severity="bogus"), alert(3, severity="info"))
    p = cli("doorman-notify", input=lines, env=all_env(receiver, tmp_path))
    err = p.stderr.decode()
    assert "<stdin>:2: not an alert (kind is 'snapshot'); skipped" in err
    assert "<stdin>:3: not valid JSON" in err
    assert "<stdin>:4: invalid alert: severity 'bogus'" in err
    assert p.returncode == 1  # bad input lines make the run not clean
    out = records(p.stdout)
    assert sorted((r["subject"], r["destination"], r["result"]) for r in out) == [
        ("queue:q1", "pagerduty", "delivered"), ("queue:q1", "slack", "delivered"),
        ("queue:q1", "webhook", "delivered"), ("queue:q3", "pagerduty", "delivered"),
        ("queue:q3", "slack", "skipped"), ("queue:q3", "webhook", "delivered")]
    assert len(receiver.at(SLACK_PATH)) == 1 and len(receiver.at(PD_PATH)) == 2 and len(receiver.at(HOOK_PATH)) == 2
    for r in out:
        assert set(r) >= {"v", "kind", "ts", "fingerprint", "alert_type", "status", "destination", "result",
                          "http_status", "attempts", "error"}


def test_all_delivered_exits_0(tmp_path, receiver):
    p = cli("doorman-notify", input=ndjson(alert(1)), env=notify_env(tmp_path, hook=receiver.url(HOOK_PATH)))
    assert p.returncode == 0, p.stderr
    assert [r["result"] for r in records(p.stdout)] == ["delivered"]
    assert p.stderr == b""


@pytest.mark.slow
def test_spool_is_replayed_on_the_next_run_exactly_once(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(503, "down"))
    env = notify_env(tmp_path, hook=receiver.url(HOOK_PATH))
    first = cli("doorman-notify", input=ndjson(alert(1), alert(2)), env=env)
    assert first.returncode == 1
    assert [r["result"] for r in records(first.stdout)] == ["spooled", "spooled"]
    assert "still waiting in" in first.stderr.decode()
    assert len(read_ndjson(tmp_path / "spool.ndjson")) == 2

    receiver.script(HOOK_PATH, Reply(200))
    second = cli("doorman-notify", input=b"", env=env)
    assert second.returncode == 0, second.stderr
    assert [(r["subject"], r["result"], r["from_spool"]) for r in records(second.stdout)] == \
        [("queue:q1", "delivered", True), ("queue:q2", "delivered", True)]
    assert read_ndjson(tmp_path / "spool.ndjson") == []

    third = cli("doorman-notify", input=b"", env=env)
    assert third.returncode == 0 and third.stdout == b""
    assert [r.json["subject"] for r in receiver.delivered(HOOK_PATH)] == ["queue:q1", "queue:q2"]


def test_permanent_failure_is_reported_and_kept_in_the_dead_letter_file(tmp_path, receiver):
    receiver.script(SLACK_PATH, Reply(404, "channel_not_found"))
    p = cli("doorman-notify", input=ndjson(alert(1)), env=notify_env(tmp_path, slack=receiver.url(SLACK_PATH)))
    assert p.returncode == 1
    [rec] = records(p.stdout)
    assert (rec["result"], rec["http_status"], rec["attempts"]) == ("failed", 404, 1)
    assert "HTTP 404" in p.stderr.decode() and "channel_not_found" in p.stderr.decode()
    assert len(receiver.at(SLACK_PATH)) == 1
    assert read_ndjson(tmp_path / "spool.dead.ndjson")[0]["alert"] == alert(1)
    assert read_ndjson(tmp_path / "spool.ndjson") == []


@pytest.mark.slow
def test_secrets_appear_in_no_output_spool_or_error(tmp_path, receiver):
    """Every failure kind at once; the webhook path, PagerDuty path and routing key must never show."""
    receiver.script(SLACK_PATH, Reply(500, f"oops {SLACK_PATH}"))
    receiver.script(PD_PATH, Reply(400, f"bad key {ROUTING_KEY}"))
    dead_hook = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"
    env = notify_env(tmp_path, slack=receiver.url(SLACK_PATH), pd=receiver.url(PD_PATH), hook=dead_hook,
                     PAGERDUTY_MIN_SEVERITY="info")
    p = cli("doorman-notify", input=ndjson(alert(1), alert(2)), env=env)
    assert p.returncode == 1
    results = {(r["destination"], r["result"]) for r in records(p.stdout)}
    assert results == {("slack", "spooled"), ("pagerduty", "failed"), ("webhook", "spooled")}
    texts = [p.stdout, p.stderr] + [f.read_bytes() for f in tmp_path.iterdir() if f.is_file()]
    assert_no_secrets(*texts)
    dry = cli("doorman-notify", "--dry-run", input=ndjson(alert(1)), env=env)
    assert_no_secrets(dry.stdout, dry.stderr)


def test_burst_of_10_gives_one_slack_summary(tmp_path, receiver):
    p = cli("doorman-notify", input=ndjson(*[alert(i) for i in range(1, 11)]),
            env=notify_env(tmp_path, slack=receiver.url(SLACK_PATH)))
    assert p.returncode == 0, p.stderr
    [msg] = receiver.at(SLACK_PATH)
    assert msg.json["blocks"][0]["text"]["text"].startswith("🔴 10 alerts")
    out = records(p.stdout)
    assert len(out) == 10 and {(r["result"], r["summary_of"]) for r in out} == {("delivered", 10)}


def test_streams_each_line_as_it_arrives_and_sigterm_ends_it(tmp_path, receiver):
    proc = subprocess.Popen([str(BIN / "doorman-notify")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **notify_env(tmp_path, hook=receiver.url(HOOK_PATH))})
    try:
        proc.stdin.write(ndjson(alert(1)))
        proc.stdin.flush()
        line = proc.stdout.readline()  # stdin is still open: the record comes without EOF
        assert orjson.loads(line)["result"] == "delivered"
        proc.stdin.write(ndjson(alert(2)))
        proc.stdin.flush()
        assert orjson.loads(proc.stdout.readline())["subject"] == "queue:q2"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_while_retrying_spools_the_alert_and_exits(tmp_path, receiver):
    receiver.script(HOOK_PATH, Reply(500))
    env = notify_env(tmp_path, hook=receiver.url(HOOK_PATH), DOORMAN_DELIVERY_BACKOFF_SECONDS="30",
                     DOORMAN_DELIVERY_MAX_SECONDS="120", DOORMAN_DELIVERY_MAX_ATTEMPTS="5")
    proc = subprocess.Popen([str(BIN / "doorman-notify")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **env})
    try:
        proc.stdin.write(ndjson(alert(1)))
        proc.stdin.flush()
        deadline = time.monotonic() + 5
        while not receiver.at(HOOK_PATH) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 1
        [rec] = records(proc.stdout.read())
        assert rec["result"] == "spooled"
        assert [e["alert"]["subject"] for e in read_ndjson(tmp_path / "spool.ndjson")] == ["queue:q1"]
        assert len(receiver.at(HOOK_PATH)) == 1
    finally:
        proc.kill()
        proc.wait()


def test_closed_stdout_ends_quietly_and_loses_nothing(tmp_path, receiver):
    env = {**os.environ, **notify_env(tmp_path, hook=receiver.url(HOOK_PATH))}
    p = subprocess.run(f"{BIN / 'doorman-notify'} | head -n 1", shell=True, input=ndjson(*[alert(i) for i in range(1, 6)]),
                       capture_output=True, env=env, timeout=30)
    assert len(records(p.stdout)) == 1
    assert b"Traceback" not in p.stderr and b"BrokenPipe" not in p.stderr
    delivered = {r.json["subject"] for r in receiver.delivered(HOOK_PATH)}
    spooled = {e["alert"]["subject"] for e in read_ndjson(tmp_path / "spool.ndjson")}
    assert delivered | spooled == {f"queue:q{i}" for i in range(1, 6)} and not delivered & spooled


def test_no_destination_says_so_once_and_exits_1(tmp_path):
    p = cli("doorman-notify", input=ndjson(alert(1), alert(2)), env=notify_env(tmp_path))
    assert p.returncode == 1 and p.stdout == b""
    assert p.stderr.decode().count("no destination configured") == 1


def test_bad_config_is_one_line_and_exit_2(tmp_path):
    p = cli("doorman-notify", input=b"", env=notify_env(tmp_path, DOORMAN_DELIVERY_MAX_ATTEMPTS="lots"))
    assert p.returncode == 2
    assert p.stderr.decode().strip() == \
        "doorman-notify: error: environment: DOORMAN_DELIVERY_MAX_ATTEMPTS: must be a number, got 'lots'"
