"""A new user's first hour (issue 18): the README's cron and Nagios lines work as printed, `--human`
shows what matters, and every message reads like a sentence (doorman-run and the docs:
test_first_hour_run.py).

Each test runs the commands as the README shows them: real processes, a real redis-server of the
suite's own, a real port with nothing listening for the unreachable webhook.
"""

from __future__ import annotations

import re
import stat

import orjson
import pytest

from tests.support.notify import alert, ndjson, notify_env
from tests.support.process import cli, free_port, records

TS = "2026-11-30T12:00:00.000Z"


def snapshot(**over) -> dict:
    """A snapshot as doorman-collect writes it: 5 tasks waiting, one worker alive."""
    snap = {"v": 1, "kind": "snapshot", "ts": TS, "cluster": "default", "broker": "redis://127.0.0.1:6379/0",
            "seq": 1, "trigger": "once", "redis_connected": True, "error": None, "pending_tasks": 5,
            "queues": {"celery": {"pending": 5, "by_priority": {"0": 5}, "oldest": None, "heads": [],
                                  "source": "config"}},
            "alive_workers": 1,
            "workers": [{"name": "w1@vm", "alive": True, "responded": True, "active": 0,
                         "last_heartbeat": None, "heartbeat_freq": None}],
            "active_tasks": 0, "active": [], "unacked": None, "workers_subscribed": 1, "collect_ms": 1.0}
    snap.update(over)
    return snap


def lines(*snaps: dict) -> bytes:
    return b"".join(orjson.dumps(s) + b"\n" for s in snaps)


def workers_down() -> dict:
    return snapshot(alive_workers=0, workers=[], workers_subscribed=0)


# 1. The printed cron and Nagios lines work as printed ------------------------------------------

def test_cron_line_creates_the_missing_state_directory_0700_and_keeps_cooldowns(tmp_path):
    state = tmp_path / "var" / "lib" / "doorman" / "state.json"  # a fresh machine: nothing there yet
    first = cli("doorman-analyze", "--state", str(state), input=lines(workers_down()), env={"DOORMAN_CONFIG": ""})
    assert first.returncode == 0 and first.stderr == b"", first.stderr.decode()
    assert [a["alert_type"] for a in records(first.stdout)] == ["workers_down"]
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700 and state.is_file()

    again = cli("doorman-analyze", "--state", str(state), input=lines(workers_down()), env={"DOORMAN_CONFIG": ""})
    assert again.returncode == 0 and again.stdout == b""  # the next minute's run remembers: no repeat


@pytest.mark.parametrize("check", [False, True])
def test_a_state_directory_that_cannot_be_created_stops_the_run_with_one_line(tmp_path, check):
    (tmp_path / "file").write_text("not a directory")
    state = tmp_path / "file" / "doorman" / "state.json"
    args = ["--check"] if check else []
    p = cli("doorman-analyze", *args, "--state", str(state), input=lines(workers_down()), env={"DOORMAN_CONFIG": ""})
    err = p.stderr.decode()
    if check:  # Nagios: a check that cannot run is UNKNOWN
        assert p.returncode == 3 and p.stdout.decode().startswith("DOORMAN UNKNOWN - cannot create the state directory")
    else:
        assert p.returncode == 1 and p.stdout == b""
        assert err.count("\n") == 1 and "cannot create the state directory" in err and str(state.parent) in err, err
    assert "Traceback" not in err and "going on without the lock" not in err


def test_notify_without_a_destination_says_why_once_when_alerts_arrive(tmp_path):
    quiet = cli("doorman-notify", input=b"", env=notify_env(tmp_path))
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, b"", b"")  # nothing read, nothing to say

    p = cli("doorman-notify", input=ndjson(alert(1), alert(2)), env=notify_env(tmp_path))
    assert p.returncode == 1 and p.stdout == b""
    [line] = p.stderr.decode().splitlines()
    assert "no destination configured (set " in line and "GENERIC_WEBHOOK_URL" in line
    assert line.endswith("alerts are read but delivered nowhere (exit status 1)")


# 2. --human shows what matters -------------------------------------------------------------------

def test_human_view_shows_down_workers_unacked_tasks_and_unknown_ages():
    from doorman.collect.human import Memory, render

    dead = {"name": "w2@vm", "alive": False, "responded": False, "active": None,
            "last_heartbeat": "2026-11-30T11:59:15.000Z", "heartbeat_freq": 2.0}
    stale = {"name": "w3@vm", "alive": False, "responded": False, "active": None,
             "last_heartbeat": None, "heartbeat_freq": None}
    q = {"pending": 5, "by_priority": {"0": 5}, "heads": [], "source": "config",
         "oldest": {"task_id": "t1", "task_name": "demo.sleep", "priority": 0, "published_at": None,
                    "age_seconds": None}}
    snap = snapshot(workers=[snapshot()["workers"][0], dead, stale], queues={"celery": q},
                    unacked={"count": 5, "oldest_delivered_at": None, "oldest_age_seconds": 12.0,
                             "visibility_timeout": 3600})
    memory = Memory(forget_after=600)
    text = render(snap, memory=memory)
    assert "None" not in text
    assert "worker w2@vm: DOWN since 11:59:15 UTC (45 s ago)" in text
    assert "worker w3@vm: DOWN, last seen unknown" in text
    assert "Held by workers (unacked): 5, oldest 12 s" in text
    assert "queue celery: 5, oldest: waiting time unknown*" in text and "doorman.hook.install(app)" in text
    assert "redis-cli SREM _kombu.binding.celery.pidbox" in text

    later = render({**snap, "ts": "2026-11-30T12:20:00.000Z"}, memory=memory)  # 20 min on: both forgotten
    assert "w2@vm" not in later and "w3@vm" not in later
    assert "(2 more worker(s) down for over 600 s, no longer listed)" in later
    assert "redis-cli" not in later and "doorman.hook" not in later  # each hint said once per run


def test_human_view_of_a_real_broker_with_unstamped_tasks_and_a_dead_workers_binding(redis_server):
    """Tasks published without the hook, and the pidbox binding a kill -9'd worker leaves behind."""
    enqueue_unstamped(redis_server.url, 3)
    import redis

    r = redis.Redis(port=redis_server.port)
    r.sadd("_kombu.binding.celery.pidbox", b"\x06\x16\x06\x16ghost@vm.celery.pidbox")
    p = cli("doorman-collect", "--once", "--human", "--redis-url", redis_server.url)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    assert "None" not in out, out
    assert "queue celery: 3, oldest: waiting time unknown*" in out and "doorman.hook.install(app)" in out
    assert "Held by workers (unacked): 0" in out
    assert "worker ghost@vm: DOWN, last seen unknown" in out and "redis-cli SREM" in out


def enqueue_unstamped(url: str, n: int) -> None:
    from tests.support.workers import celery_app

    app = celery_app(url, stamp=False)
    with app.connection_for_write() as conn:
        for _ in range(n):
            app.send_task("demo.sleep", args=(60,), queue="celery", connection=conn)


# 3. Messages that explain why the alert fired ----------------------------------------------------

def test_messages_show_the_value_visibly_above_the_limit():
    head = {"task_id": "t1", "task_name": "demo.sleep", "priority": 0, "published_at": TS, "age_seconds": 1.4}
    late = snapshot(queues={"celery": {"pending": 5, "by_priority": {"0": 5}, "oldest": head, "heads": [head],
                                       "source": "config"}})
    p = cli("doorman-analyze", input=lines(late), env={"DOORMAN_CONFIG": "", "MAX_WAIT_TIME": "1"})
    [latency] = [a for a in records(p.stdout) if a["alert_type"] == "high_latency"]
    assert "has waited 1.4 s (limit 1 s)" in latency["message"], latency["message"]

    task = {"task_id": "t9", "task_name": "demo.sleep", "worker": "w1@vm", "started_at": TS,
            "runtime_seconds": 1.4, "queue": "celery", "pid": 42}
    hung = snapshot(active=[task], active_tasks=1)
    p = cli("doorman-analyze", input=lines(hung), env={"DOORMAN_CONFIG": "", "MAX_TASK_RUNTIME": "1"})
    [zombie] = [a for a in records(p.stdout) if a["alert_type"] == "zombie_tasks"]
    assert "running longer than 1 s: demo.sleep t9 on w1@vm for 1.4 s" in zombie["message"], zombie["message"]


# 4. Delivery failures a person can read ----------------------------------------------------------

def test_an_unreachable_webhook_reads_as_a_sentence_and_stderr_counts_attempts_like_the_record(tmp_path):
    port = free_port()
    env = notify_env(tmp_path, hook=f"http://127.0.0.1:{port}/hooks/WEBHOOKSECRET123")
    for run, total in ((1, 3), (2, 6)):  # the second run retries the spooled alert: attempts add up
        p = cli("doorman-notify", input=ndjson(alert(1)) if run == 1 else b"", env=env)
        err = p.stderr.decode()
        assert p.returncode == 1
        [rec] = [r for r in records(p.stdout) if r["fingerprint"] == alert(1)["fingerprint"]]
        assert rec["attempts"] == total
        assert rec["error"] == f"cannot connect to 127.0.0.1:{port} (connection refused)"
        assert re.search(rf"webhook: cannot connect to 127\.0\.0\.1:{port} \(connection refused\); will retry in "
                         rf"[0-9.]+ s \(attempt {total - 1} of {total}\)", err), err
        assert f"not delivered after {total} attempt(s), kept in {tmp_path / 'spool.ndjson'}" in err, err
        assert "HTTPConnectionPool" not in err and "WEBHOOKSECRET123" not in err


def test_a_line_that_is_not_json_says_what_was_expected(tmp_path):
    p = cli("doorman-notify", input=b'{"v": 1,\nhello\n[1, 2]\n', env=notify_env(tmp_path))
    assert p.stderr.decode().splitlines() == [
        "doorman-notify: <stdin>:1: not valid JSON (expected one alert as a JSON object on each line; "
        "the line ends before the JSON does); skipped",
        "doorman-notify: <stdin>:2: not valid JSON (expected one alert as a JSON object on each line; "
        "unexpected 'h' at column 1); skipped",
        "doorman-notify: <stdin>:3: expected a JSON object (an alert), got a JSON array; skipped",
    ]


# 5. Configuration edge cases ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("how", ["file", "env", "env-blank"])
def test_an_empty_cluster_name_is_refused_with_one_line(tmp_path, how):
    env = {"DOORMAN_CONFIG": ""}
    args: list[str] = []
    if how == "file":
        cfg = tmp_path / "c.yaml"
        cfg.write_text('cluster: ""\n')
        args = ["--config", str(cfg)]
    else:
        env["DOORMAN_CLUSTER"] = "" if how == "env" else "  "
    p = cli("doorman-analyze", *args, input=lines(snapshot()), env=env)
    err = p.stderr.decode()
    where = f"{tmp_path / 'c.yaml'}: cluster" if how == "file" else "environment: DOORMAN_CLUSTER"
    assert p.returncode == 2 and err == f"doorman-analyze: error: {where}: must not be empty " \
                                       "(it names the cluster in every alert)\n", err


def test_a_bad_number_is_echoed_as_written():
    p = cli("doorman-analyze", input=b"", env={"DOORMAN_CONFIG": "", "ALERT_COOLDOWN_SECONDS": "-1"})
    assert p.returncode == 2
    assert p.stderr.decode() == ("doorman-analyze: error: environment: ALERT_COOLDOWN_SECONDS: "
                                 "must be a finite number >= 0, got '-1'\n")
