"""doorman-collect as a command, with a real redis-server: a broker down and back, a closed port, `| head`,
the human view, and its configuration (one line and exit 2 for a bad value; which source wins)."""

from __future__ import annotations

import signal
import subprocess

import orjson
import pytest

from doorman.config.load import load_config
from tests.support.process import BIN, cli, free_port, records
from tests.support.workers import enqueue


@pytest.mark.e2e
def test_broker_down_then_back_daemon_keeps_going(own_redis):
    url = own_redis.url
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--redis-url", url, "--interval", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = []

        def next_snap():
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(orjson.loads(line))
            return lines[-1]

        assert next_snap()["redis_connected"] is True
        own_redis.kill()
        while next_snap()["redis_connected"]:
            pass
        assert "Connection" in lines[-1]["error"] or "connect" in lines[-1]["error"]
        assert lines[-1]["pending_tasks"] is None
        own_redis.start()
        for _ in range(10):
            if next_snap()["redis_connected"]:
                break
        assert lines[-1]["redis_connected"] is True and lines[-1]["pending_tasks"] == 0
        assert [s["seq"] for s in lines] == list(range(1, len(lines) + 1))
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    for line in rest.splitlines():
        orjson.loads(line)  # SIGTERM never leaves half a line


def test_closed_port_gives_a_down_snapshot_and_exit_zero():
    port = free_port()
    result = cli("doorman-collect", "--once", "--redis-url", f"redis://127.0.0.1:{port}/0")
    assert result.returncode == 0
    [snap] = records(result.stdout)
    assert snap["redis_connected"] is False and snap["queues"] == {} and snap["pending_tasks"] is None
    assert b"check #1" in result.stderr


def test_head_closes_the_pipe_quietly(redis_server):
    proc = subprocess.run(
        f"'{BIN / 'doorman-collect'}' --redis-url '{redis_server.url}' --interval 0.05 | head -n 2",
        shell=True, capture_output=True, timeout=30, executable="/bin/bash",
    )
    assert len(records(proc.stdout)) == 2
    assert proc.stderr == b""


@pytest.mark.slow
def test_count_and_human_view(redis_server):
    enqueue(redis_server.url, 5, task="demo.add", args=(1, 2))
    result = cli("doorman-collect", "--redis-url", redis_server.url, "--interval", "0.05", "--count", "3")
    assert [s["seq"] for s in records(result.stdout)] == [1, 2, 3]
    human = cli("doorman-collect", "--once", "--human", "--redis-url", redis_server.url)
    text = human.stdout.decode()
    assert "--- Health Check #1 ---" in text and "Pending tasks:  5" in text and "Alive workers:  0/0" in text
    assert "Redis:          ✅" in text


@pytest.mark.slow
@pytest.mark.parametrize("content, env, expected", [
    ("max_queue_sise: 5\n", {}, "max_queue_sise: unknown key (did you mean 'thresholds.max_queue_size'?)"),
    ("thresholds:\n  max_queue_sise: 5\n", {}, "thresholds.max_queue_sise: unknown key (did you mean 'max_queue_size'?)"),
    ("thresholds:\n  max_queue_size: lots\n", {}, "thresholds.max_queue_size: must be a number"),
    ("check_interval: [1]\n", {}, "check_interval: must be a number"),
    ("redis_url: http://x\n", {}, "redis_url: unsupported scheme 'http'"),
    ("redis_url: 'redis://h:99999/0'\n", {}, "redis_url: malformed URL"),
    ("slack_webhook_url: hooks.slack.com/x\n", {}, "slack_webhook_url: must be an http:// or https:// URL"),
    ("a: [\n", {}, "line 2"),
    ("- just\n- a list\n", {}, "must be a mapping of keys"),
    ("", {"CHECK_INTERVAL": "soon"}, "environment: CHECK_INTERVAL: must be a number, got 'soon'"),
    ("\udcff", {}, "not UTF-8 text"),
    ("redis_url: 'redis://h:6379/abc'\n", {}, "redis_url: the database must be a number"),
    ("redis_url: 'sentinel://h:26379'\n", {}, "broker_transport_options.master_name: required with sentinel://"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, content, env, expected):
    cfg = tmp_path / "doorman.yaml"
    cfg.write_bytes(content.encode("utf-8", "surrogateescape"))
    result = cli("doorman-collect", "--once", "--config", str(cfg), env=env)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err and expected in err, err
    if "environment" not in expected and "sentinel" not in expected:
        assert str(cfg) in err


def test_unreadable_config_file(tmp_path):
    result = cli("doorman-collect", "--once", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1 and "missing.yaml: cannot read config file" in result.stderr.decode()


def test_precedence_flags_beat_env_beat_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("check_interval: 7\nthresholds:\n  max_queue_size: 10\n  max_wait_time_seconds: 5\n")
    c = load_config(str(cfg), env={})
    assert (c.check_interval, c.thresholds.max_queue_size, c.thresholds.max_wait_time_seconds) == (7, 10, 5)
    c = load_config(str(cfg), env={"CHECK_INTERVAL": "8", "MAX_QUEUE_SIZE": "20"})
    assert (c.check_interval, c.thresholds.max_queue_size) == (8, 20)
    c = load_config(str(cfg), env={"CHECK_INTERVAL": "8"}, overrides={"check_interval": 9})
    assert c.check_interval == 9
    assert load_config(None, env={"CELERY_BROKER_URL": "redis://b:1/2"}).broker_url == "redis://b:1/2"
    assert load_config(None, env={"CELERY_BROKER_URL": "redis://b:1/2",
                                  "REDIS_URL": "redis://a:1/0"}).broker_url == "redis://a:1/0"


@pytest.mark.slow
@pytest.mark.parametrize("args, env, expected", [
    (["--interval", "0"], {}, "command line: --interval: must be greater than 0"),
    ([], {"DOORMAN_REDIS_TIMEOUT": "0"}, "environment: DOORMAN_REDIS_TIMEOUT: must be greater than 0"),
    ([], {"DOORMAN_INSPECT_TIMEOUT": "0"}, "environment: DOORMAN_INSPECT_TIMEOUT: must be greater than 0"),
    ([], {"REDIS_URL": "redis://:s3cr#etpw@host:6379/0"}, "environment: REDIS_URL: malformed URL"),
    ([], {"GENERIC_WEBHOOK_URL": "http://127.attacker.example/hook"}, "GENERIC_WEBHOOK_URL: must be https://"),
])
def test_values_that_would_break_a_check_are_refused(args, env, expected):
    result = cli("doorman-collect", *(args or ["--once"]), env=env)
    err = result.stderr.decode()
    assert result.returncode == 2 and expected in err and err.count("\n") == 1, err
    assert "s3cr" not in err and "etpw" not in err


@pytest.mark.slow
@pytest.mark.parametrize("key", ["redis_timeout", "check_interval", "thresholds:\n  max_queue_size",
                                 "broker_transport_options:\n  priority_steps"])
def test_an_empty_value_is_refused_not_taken_as_no_limit(tmp_path, key):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"{key}:\n")
    result = cli("doorman-collect", "--once", "--config", str(cfg))
    err = result.stderr.decode()
    assert result.returncode == 2 and "must not be empty" in err and str(cfg) in err, err
