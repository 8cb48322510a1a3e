"""doorman-analyze as a user runs it: bad lines, streaming, the state file (cooldown across runs,
corrupt, foreign, locked), SIGTERM, input files, and the Nagios --check mode."""

from __future__ import annotations

import fcntl
import glob
import os
import select
import signal
import subprocess
import time

import orjson
import pytest

from tests.support.process import BIN, cli, records
from tests.support.scenario import queue, snap, worker


def lines(*snaps: dict) -> bytes:
    return b"".join(orjson.dumps(s) + b"\n" for s in snaps)


DOWN5 = snap(0, workers=[], queues={"celery": queue(5)})


def test_bad_lines_are_reported_by_number_and_the_stream_goes_on():
    bad = [b"not json at all", b"[1, 2]", b'{"v": 1, "kind": "snapshot"}',
           orjson.dumps({**DOWN5, "pending_tasks": "five"}), orjson.dumps({**DOWN5, "v": 2}),
           orjson.dumps({**DOWN5, "queues": {"celery": {"pending": -1}}}), b"\xff\xfe\x00garbage"]
    r = cli("doorman-analyze", input=b"\n".join(bad) + b"\n" + lines(DOWN5))
    assert r.returncode == 0
    err = r.stderr.decode()
    assert "Traceback" not in err
    for n in range(1, 8):
        assert f"<stdin>:{n}:" in err
    assert "not a snapshot: missing ts" in err and "pending_tasks must be a non-negative integer" in err
    assert len(err.strip().splitlines()) == 7
    [alert] = records(r.stdout)
    assert alert["alert_type"] == "workers_down" and alert["message"] == "No workers responding but 5 tasks are pending!"


def test_acts_on_each_line_without_waiting_for_eof():
    p = subprocess.Popen([str(BIN / "doorman-analyze")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        p.stdin.write(lines(DOWN5))
        p.stdin.flush()
        ready, _, _ = select.select([p.stdout], [], [], 20)
        assert ready, "no alert before EOF"
        alert = orjson.loads(p.stdout.readline())
        assert alert["alert_type"] == "workers_down" and alert["status"] == "firing"
        assert p.poll() is None  # still streaming
    finally:
        p.stdin.close()
        p.wait(10)
    assert p.returncode == 0


def test_state_file_carries_cooldown_and_reminders_across_runs(tmp_path):
    state = str(tmp_path / "s.json")
    first = records(cli("doorman-analyze", "--state", state, input=lines(DOWN5)).stdout)
    assert [a["status"] for a in first] == ["firing"]
    again = cli("doorman-analyze", "--state", state, input=lines(snap(60, workers=[], queues={"celery": queue(5)})))
    assert again.returncode == 0 and records(again.stdout) == []
    later = records(cli("doorman-analyze", "--state", state,
                        input=lines(snap(300, workers=[], queues={"celery": queue(7)}))).stdout)
    assert [(a["status"], a["details"].get("reminder")) for a in later] == [("firing", True)]
    assert later[0]["started_at"] == first[0]["started_at"]
    healed = records(cli("doorman-analyze", "--state", state, input=lines(snap(330, queues={"celery": queue(7)}))).stdout)
    assert [(a["alert_type"], a["status"]) for a in healed] == [("workers_down", "resolved")]
    assert healed[0]["fingerprint"] == first[0]["fingerprint"]
    assert records(cli("doorman-analyze", "--state", state, input=lines(snap(360, queues={"celery": queue(7)}))).stdout) == []
    assert glob.glob(state + ".tmp*") == []


@pytest.mark.slow
def test_corrupt_or_foreign_state_is_reported_and_replaced(tmp_path):
    for content in (b"{not json", b'{"kind": "prometheus", "v": 1}', b"[]",
                    b'{"v": 1, "kind": "doorman-analyze-state", "clusters": {"prod": {"alerts": 5}}}'):
        state = tmp_path / "s.json"
        state.write_bytes(content)
        r = cli("doorman-analyze", "--state", str(state), input=lines(DOWN5))
        assert r.returncode == 0
        assert f"state file {state}:" in r.stderr.decode() and "fresh state" in r.stderr.decode()
        assert "Traceback" not in r.stderr.decode()
        assert [a["alert_type"] for a in records(r.stdout)] == ["workers_down"]
        assert orjson.loads(state.read_bytes())["kind"] == "doorman-analyze-state"


def test_dev_null_state_is_a_fresh_memory_only_state():
    r = cli("doorman-analyze", "--state", os.devnull, input=lines(DOWN5, snap(10, workers=[], queues={"celery": queue(5)})))
    assert r.returncode == 0 and r.stderr == b""
    assert len(records(r.stdout)) == 1


@pytest.mark.slow
def test_second_run_waits_for_the_lock_then_sees_the_first_runs_state(tmp_path):
    state = str(tmp_path / "s.json")
    first = subprocess.Popen([str(BIN / "doorman-analyze"), "--state", state], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first.stdin.write(lines(DOWN5))
    first.stdin.flush()
    assert orjson.loads(first.stdout.readline())["alert_type"] == "workers_down"
    second = subprocess.Popen([str(BIN / "doorman-analyze"), "--state", state], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second.stdin.write(lines(snap(5, workers=[], queues={"celery": queue(5)})))
    second.stdin.close()
    time.sleep(1.0)
    assert second.poll() is None, "the second run must wait for the lock"
    first.stdin.close()
    assert first.wait(10) == 0
    assert second.wait(20) == 0, second.stderr.read()
    out = second.stdout.read()
    assert out == b""  # the first run's cooldown holds


def test_lock_held_by_another_process_blocks(tmp_path):
    state = str(tmp_path / "s.json")
    fd = os.open(state + ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    p = subprocess.Popen([str(BIN / "doorman-analyze"), "--state", state], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(lines(DOWN5))
    p.stdin.close()
    time.sleep(1.0)
    assert p.poll() is None
    os.close(fd)
    assert p.wait(20) == 0
    out = p.stdout.read()
    assert [a["alert_type"] for a in records(out)] == ["workers_down"]


def test_sigterm_saves_state(tmp_path):
    state = tmp_path / "s.json"
    p = subprocess.Popen([str(BIN / "doorman-analyze"), "--state", str(state)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(lines(DOWN5))
    p.stdin.flush()
    assert p.stdout.readline()
    # no alert from this one, so the write is paced, not immediate; SIGTERM must flush it
    from tests.support.scenario import head
    p.stdin.write(lines(snap(1, workers=[], queues={"celery": queue(5, [head("abc")])})))
    p.stdin.flush()
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    saved = orjson.loads(state.read_bytes())
    assert saved["clusters"]["prod"]["rules"]["latency"]["heads"] == {"celery": {"abc": saved["clusters"]["prod"]["now"]}}


def test_files_are_read_in_order_and_a_missing_one_is_an_error(tmp_path):
    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    a.write_bytes(lines(snap(0, connected=False)))
    b.write_bytes(lines(snap(10)))
    r = cli("doorman-analyze", str(a), str(tmp_path / "missing.ndjson"), str(b))
    assert [(x["alert_type"], x["status"]) for x in records(r.stdout)] == [("redis_down", "firing"),
                                                                          ("redis_down", "resolved")]
    assert "cannot read" in r.stderr.decode() and r.returncode == 1


def check(*snaps: dict, env: dict | None = None) -> tuple[int, str]:
    r = cli("doorman-analyze", "--check", input=lines(*snaps), env=env)
    out = r.stdout.decode()
    assert out.count("\n") == 1, out
    return r.returncode, out.strip()


@pytest.mark.slow
def test_check_mode_lines_and_exit_codes():
    code, line = check(snap(0, queues={"celery": queue(5)}, workers=[worker("w1@test"), worker("w2@test")]))
    assert code == 0
    assert line == ("DOORMAN OK - 5 pending, 2 workers alive | pending=5;;1000;0 workers=2;;;0 active=0;;;0 "
                    "oldest_wait=0.000s;;60;0 'queue_celery'=5;;1000;0")
    code, line = check(snap(0, workers=[]))
    assert code == 1 and line.startswith("DOORMAN WARNING - No Celery workers responding")
    code, line = check(DOWN5)
    assert code == 2
    assert line.startswith("DOORMAN CRITICAL - No workers responding but 5 tasks are pending! | pending=5;;1000;0 "
                           "workers=0;;;0")
    code, line = check(snap(0, queues={"celery": queue(20)}), env={"MAX_QUEUE_SIZE": "10"})
    assert code == 2 and "20 tasks pending, above the limit of 10" in line and "pending=20;;10;0" in line
    code, line = check(snap(0, connected=False))
    assert code == 3 and line.startswith("DOORMAN UNKNOWN - Redis broker redis://h:6379/0 is unreachable")
    r = cli("doorman-analyze", "--check", input=b"")
    assert r.returncode == 3 and r.stdout == b"DOORMAN UNKNOWN - no snapshot read\n"


def test_check_mode_is_not_silenced_by_cooldown(tmp_path):
    state = str(tmp_path / "s.json")
    for t in (0, 30):
        r = cli("doorman-analyze", "--check", "--state", state,
                input=lines(snap(t, workers=[], queues={"celery": queue(5)})))
        assert r.returncode == 2


def test_bad_config_is_one_line_exit_2(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("thresholds:\n  max_queue_sise: 5\n")
    r = cli("doorman-analyze", "--config", str(conf), input=lines(DOWN5))
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.decode().count("\n") == 1 and "max_queue_sise" in r.stderr.decode()


def test_an_alert_that_could_not_be_written_is_not_recorded_as_sent(tmp_path):
    """The reader is gone (notify died): the state must not claim the alert was sent, or the next
    run would hold it back for a whole cooldown."""
    import subprocess

    from tests.support.process import BIN

    state = tmp_path / "s.json"
    snap = (b'{"v":1,"kind":"snapshot","ts":"2026-11-28T01:00:00.000Z","cluster":"c","redis_connected":true,'
            b'"error":null,"pending_tasks":5,"queues":{"celery":{"pending":5,"by_priority":{"0":5},"oldest":null,'
            b'"heads":[]}},"alive_workers":0,"workers":[],"active_tasks":0,"active":[]}\n')
    r = subprocess.run(f"(sleep 0.5; printf '%s' '{snap.decode()}') | '{BIN / 'doorman-analyze'}' --state '{state}' | true",
                       shell=True, capture_output=True, timeout=30, executable="/bin/bash")
    assert b"Traceback" not in r.stderr
    again = subprocess.run([str(BIN / "doorman-analyze"), "--state", str(state)],
                           input=snap.replace(b"01:00:00", b"01:00:30"), capture_output=True, timeout=30)
    assert [orjson.loads(x)["alert_type"] for x in again.stdout.splitlines()] == ["workers_down"]


def test_a_state_file_held_for_too_long_is_an_error_not_a_hang(tmp_path):
    """A daemon keeps its state file for life; a second analyzer on it says so and exits."""
    state = str(tmp_path / "s.json")
    fd = os.open(state + ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = subprocess.run([str(BIN / "doorman-analyze"), "--state", state], input=lines(DOWN5),
                           capture_output=True, timeout=30, env={**os.environ, "DOORMAN_STATE_LOCK_TIMEOUT": "0.5"})
    finally:
        os.close(fd)
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b"" and err.count("\n") == 1
    assert "is still locked by another doorman-analyze after 0.5 s" in err
