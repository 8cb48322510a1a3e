"""Faults at the edges, with real processes: hostile input (a 100 MB line, absurd numbers), a grep for
secrets in every output, and doorman-notify killed or stalled in the middle of a delivery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.support.notify import notify_env
from tests.support.process import BIN, LAUNCHER_RSS, cli, free_port, records, wait_for
from tests.support.receiver import Receiver
from tests.support.redis import RedisServer
from tests.support.scenario import snapshot_line


def test_a_100_mb_line_is_refused_with_bounded_memory(tmp_path):
    big = tmp_path / "big.ndjson"
    with open(big, "wb") as f:
        f.write(b'{"v": 1, "kind": "snapshot", "pad": "')
        chunk = b"x" * (1024 * 1024)
        for _ in range(100):
            f.write(chunk)
        f.write(b'"}\n')
        f.write(snapshot_line("2026-11-28T01:00:00.000Z"))
    result = subprocess.run([sys.executable, "-S", "-c", LAUNCHER_RSS, str(BIN / "doorman-analyze"), str(big)],
                            capture_output=True, timeout=120)
    *outputs, rss_line = result.stdout.splitlines()
    peak_mib = float(rss_line.split()[1])
    assert [orjson.loads(x)["alert_type"] for x in outputs] == ["workers_down"]
    assert b":1: line of" in result.stderr and b"over the" in result.stderr
    assert peak_mib < 120, f"peak RSS {peak_mib:.0f} MiB for a 100 MB line"


def test_absurd_numbers_are_handled(tmp_path):
    weird = orjson.loads(snapshot_line("2026-11-28T01:00:00.000Z"))
    weird["pending_tasks"] = 10**30
    weird["queues"]["celery"]["pending"] = 10**30
    weird["active"] = [{"task_id": "t", "task_name": "n", "worker": "w", "runtime_seconds": 1e300}]
    weird["queues"]["q2"] = {"pending": float("1e308"), "by_priority": {}, "oldest": {"age_seconds": -1e308}}
    line = json.dumps(weird).encode() + b"\n"
    out = cli("doorman-analyze", input=line + snapshot_line("2026-11-28T01:00:01.000Z", -5))
    assert out.returncode == 0 and b"Traceback" not in out.stderr
    for r in records(out.stdout):
        assert r["kind"] == "alert"


@pytest.mark.e2e
def test_no_secret_in_any_output_of_any_command(tmp_path):
    password = "PW-never-print-7f3a"
    server = RedisServer(password=password).start()
    slack_secret, hook_secret, key = "SLACKtok-9q8w7e", "HOOKtok-1z2x3c", "ROUTINGkey0123456789abcdef012345"
    bad_port = free_port()
    env = {
        "REDIS_URL": server.url.replace(password, password + "-wrong"),
        "SLACK_WEBHOOK_URL": f"http://127.0.0.1:{bad_port}/services/T1/B1/{slack_secret}",
        "GENERIC_WEBHOOK_URL": f"http://127.0.0.1:{bad_port}/hook/{hook_secret}",
        "PAGERDUTY_ROUTING_KEY": key, "PAGERDUTY_EVENTS_URL": f"http://127.0.0.1:{bad_port}/v2/enqueue",
        "XDG_STATE_HOME": str(tmp_path / "xdg"), "DOORMAN_HTTP_CONNECT_TIMEOUT": "0.3",
        "DOORMAN_DELIVERY_MAX_SECONDS": "1", "DOORMAN_DELIVERY_BACKOFF_SECONDS": "0.05",
        "SLACK_MIN_SEVERITY": "info", "PAGERDUTY_MIN_SEVERITY": "info",
    }
    state, spool = tmp_path / "state.json", tmp_path / "spool.ndjson"
    try:
        outputs = []
        collect = cli("doorman-collect", "--once", env=env)
        outputs += [collect.stdout, collect.stderr]
        analyze = cli("doorman-analyze", "--state", str(state), input=collect.stdout, env=env)
        outputs += [analyze.stdout, analyze.stderr]
        assert any(a["alert_type"] == "redis_down" for a in records(analyze.stdout))
        for extra in (["--spool", str(spool)], ["--dry-run"]):
            notify = cli("doorman-notify", *extra, input=analyze.stdout, env=env)
            outputs += [notify.stdout, notify.stderr]
        check = cli("doorman-analyze", "--check", input=collect.stdout, env=env)
        outputs += [check.stdout, check.stderr]
        bad_cfg = tmp_path / "bad.yaml"
        bad_cfg.write_text(f"redis_url: 'redis://:{password}@127.0.0.1:99999/0'\n")
        for name in ("doorman-collect", "doorman-analyze", "doorman-notify"):
            r = cli(name, "--config", str(bad_cfg), input=b"", env={**env, "REDIS_URL": ""})
            assert r.returncode == 2
            outputs += [r.stdout, r.stderr]
        for path in Path(tmp_path).rglob("*"):
            if path.is_file() and path != bad_cfg:
                outputs.append(path.read_bytes())
        blob = b"\n".join(outputs)
        assert spool.exists() and blob.count(b"\n") > 10
        for secret in (password, slack_secret, hook_secret, key):
            assert secret.encode() not in blob, secret
    finally:
        server.cleanup()


@pytest.mark.slow
def test_sigkill_of_notify_mid_retry_loses_nothing(tmp_path):
    """Write-ahead spool: alerts are journaled before their first attempt, so a kill -9 while the
    receiver is down and a retry is in progress loses none of them; the next run delivers each once."""
    from tests.support.notify import alert

    port = free_port()
    env = {**os.environ, **notify_env(tmp_path, hook=f"http://127.0.0.1:{port}/hooks/doorman",
                                      DOORMAN_DELIVERY_MAX_SECONDS="30", DOORMAN_DELIVERY_MAX_ATTEMPTS="100",
                                      DOORMAN_DELIVERY_BACKOFF_SECONDS="0.2")}
    sent = [alert(n) for n in range(1, 4)]
    proc = subprocess.Popen([str(BIN / "doorman-notify")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdin.write(b"".join(orjson.dumps(a) + b"\n" for a in sent))
    proc.stdin.flush()
    spool = tmp_path / "spool.ndjson"
    wait_for(lambda: spool.exists() and spool.read_bytes().count(b"\n") >= 3, 20, "the 3 alerts journaled")
    time.sleep(0.3)  # the first alert in its retry loop against a closed port (0.2 s backoff)
    proc.kill()
    proc.communicate()
    receiver = Receiver(port=port)
    try:
        again = subprocess.run([str(BIN / "doorman-notify")], input=b"", capture_output=True, env=env, timeout=60)
        assert again.returncode == 0, again.stderr
        got = [r.json["fingerprint"] for r in receiver.delivered("/hooks/doorman")]
        assert got == [a["fingerprint"] for a in sent]
        assert all(r["from_spool"] and r["result"] == "delivered" for r in records(again.stdout))
    finally:
        receiver.close()


@pytest.mark.slow
def test_sigkill_while_one_destination_retries_loses_nothing_for_the_others(tmp_path):
    """The batch is journaled for every destination before the first attempt to any of them."""
    from tests.support.notify import ROUTING_KEY, alert
    from tests.support.receiver import Reply

    receiver = Receiver()
    receiver.script("/v2/enqueue", Reply(503))
    env = {**os.environ, **notify_env(tmp_path, pd=receiver.url("/v2/enqueue"), hook=receiver.url("/hook"),
                                      DOORMAN_DELIVERY_MAX_SECONDS="30", DOORMAN_DELIVERY_MAX_ATTEMPTS="100",
                                      DOORMAN_DELIVERY_BACKOFF_SECONDS="0.2")}
    a = alert(1)
    try:
        proc = subprocess.Popen([str(BIN / "doorman-notify")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        proc.stdin.write(orjson.dumps(a) + b"\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(receiver.at("/v2/enqueue")) < 2:
            time.sleep(0.05)  # PagerDuty (first in order) is retrying; the webhook not tried yet
        proc.kill()
        proc.communicate()
        receiver.script("/v2/enqueue", Reply(202, '{"status":"success"}'))
        again = subprocess.run([str(BIN / "doorman-notify")], input=b"", capture_output=True, env=env, timeout=60)
        assert again.returncode == 0, again.stderr
        assert [r.json["dedup_key"] for r in receiver.delivered("/v2/enqueue")] == [a["fingerprint"]]
        assert receiver.delivered("/v2/enqueue")[0].json["routing_key"] == ROUTING_KEY
        assert [r.json["fingerprint"] for r in receiver.delivered("/hook")] == [a["fingerprint"]]
    finally:
        receiver.close()


def test_a_receiver_asking_to_retry_in_1e12_seconds_does_not_break_notify(tmp_path):
    from tests.support.notify import alert
    from tests.support.receiver import Reply

    receiver = Receiver()
    receiver.script("/hook", Reply(503, headers={"Retry-After": "1e12"}))
    env = notify_env(tmp_path, hook=receiver.url("/hook"))
    try:
        first = cli("doorman-notify", input=orjson.dumps(alert(1)) + b"\n", env=env)
        assert b"Traceback" not in first.stderr and first.returncode == 1
        assert [r["result"] for r in records(first.stdout)] == ["spooled"]
        second = cli("doorman-notify", input=b"", env=env)
        assert b"Traceback" not in second.stderr
        [entry] = [orjson.loads(x) for x in (tmp_path / "spool.ndjson").read_bytes().splitlines()]
        assert entry["next_attempt_at"] is not None  # at most a day away, not in year 33715
    finally:
        receiver.close()


def test_the_webhook_gets_the_alert_byte_for_byte(tmp_path):
    from tests.support.notify import alert

    receiver = Receiver()
    line = orjson.dumps(alert(1, details={"ratio": 0.1, "names": ["ü", "x"], "n": 10**18}))
    try:
        r = cli("doorman-notify", input=line + b"\n", env=notify_env(tmp_path, hook=receiver.url("/h")))
        assert r.returncode == 0, r.stderr
        [got] = receiver.delivered("/h")
        assert got.body == line and got.headers["Content-Type"] == "application/json"
    finally:
        receiver.close()
