"""doorman-scale as a user runs it: bad config, bad lines, streaming, `| head`, and the --exec
command failing, hanging, missing, then recovering — with real processes and real scripts."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import textwrap

import orjson
import pytest

from tests.support.process import BIN, cli, records
from tests.support.scale import burst_lines


def script(tmp_path, body: str, name: str = "scaler") -> str:
    """An executable shell script standing in for kubectl / docker compose / systemctl."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("config, key", [
    ("scale:\n  pools:\n    fast: {min: 1, max: 3}\n", "scale.pools: fast.queues: a pool needs a non-empty list"),
    ("scale:\n  pools:\n    fast: {queues: [a], min: 5, max: 2}\n", "scale.pools.fast.min: min (5) is more than max (2)"),
    ("scale:\n  max_workers: 3\n  pools:\n    fast: {queues: [a], min: 4}\n",
     "scale.pools.fast.min: min (4) is more than max (3)"),
    ("scale:\n  exec_command: kubectl scale deployment/{pool}\n", "scale.exec_command: the command template must"),
    ("scale:\n  pools:\n    'a b': {queues: [a]}\n", "scale.pools: 'a b': a pool name is"),
])
def test_bad_config_is_one_line_naming_file_and_key_exit_2(tmp_path, config, key):
    path = tmp_path / "doorman.yaml"
    path.write_text(config)
    r = cli("doorman-scale", "--config", str(path), input=b"")
    err = r.stderr.decode()
    assert r.returncode == 2 and r.stdout == b""
    assert err.count("\n") == 1 and err.startswith(f"doorman-scale: error: {path}: {key}"), err


def test_exec_template_without_desired_on_the_command_line_exit_2():
    r = cli("doorman-scale", "--exec", "kubectl scale deployment/{pool}", input=b"")
    assert r.returncode == 2
    assert r.stderr.decode() == ("doorman-scale: error: command line: --exec: the command template must contain "
                                 "{desired} (and may contain {pool})\n")


def test_bad_lines_are_named_and_skipped_and_the_decisions_come():
    lines = burst_lines()
    bad = [b"not json\n", b"[1]\n", orjson.dumps({"v": 1, "kind": "alert"}) + b"\n"]
    r = cli("doorman-scale", input=b"".join(bad[:2] + lines[:3] + bad[2:] + lines[3:]))
    assert r.returncode == 0
    err = r.stderr.decode()
    assert "Traceback" not in err
    assert "<stdin>:1: not valid JSON" in err and "<stdin>:2: expected a JSON object" in err
    assert "<stdin>:6: not a snapshot: kind must be 'snapshot'" in err
    decisions = records(r.stdout)
    assert [d["desired_workers"] for d in decisions] == [1, 3]
    up = decisions[1]
    assert set(up) == {"v", "kind", "ts", "cluster", "pool", "queues", "current_workers", "desired_workers",
                       "reason", "inputs"}
    assert up["kind"] == "scale" and up["pool"] == "default" and up["queues"] == ["celery"]
    assert up["current_workers"] == 1 and up["reason"].startswith("scale up")
    assert set(up["inputs"]) >= {"arrival_rate", "service_rate", "pending", "oldest_age_seconds"}


def test_every_n_snapshots_writes_a_decision_even_without_change():
    r = cli("doorman-scale", "--every", "4", input=b"".join(burst_lines(12)))
    decisions = records(r.stdout)
    # changes at lines 2 (first) and 4 (up); and lines 4, 8, 12 by --every (line 4 once)
    assert [d["ts"][17:19] for d in decisions] == ["10", "20", "40", "00"]


def test_acts_on_each_line_without_waiting_for_eof(tmp_path):
    calls = tmp_path / "calls"
    cmd = script(tmp_path, f'echo "$1 $2" >> {calls}\n')
    p = subprocess.Popen([str(BIN / "doorman-scale"), "--exec", f"{cmd} {{pool}} {{desired}}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = burst_lines()
        p.stdin.write(b"".join(lines[:4]))
        p.stdin.flush()
        got = []
        while len(got) < 3:  # decision 1, decision 3, and the command's report (order: the thread's)
            ready, _, _ = select.select([p.stdout], [], [], 20)
            assert ready, f"nothing before EOF; got {got}"
            got.append(orjson.loads(p.stdout.readline()))
        assert p.poll() is None
        assert [g["desired_workers"] for g in got if g["kind"] == "scale"] == [1, 3]
        assert [g["result"] for g in got if g["kind"] == "scale_exec"] == ["ok"]
    finally:
        p.stdin.close()
        p.wait(20)
    assert p.returncode == 0
    assert calls.read_text().splitlines()[-1] == "default 3"


def test_sigterm_while_waiting_for_input_ends_cleanly_after_the_decision_in_hand(tmp_path):
    """stdin still open: SIGTERM ends the wait for the next snapshot at once, the last change still
    gets its command (a slow one), and the exit is 0 with no traceback."""
    calls = tmp_path / "calls"
    cmd = script(tmp_path, f'sleep 1; echo "$1 $2" >> {calls}\n')
    p = subprocess.Popen([str(BIN / "doorman-scale"), "--exec", f"{cmd} {{pool}} {{desired}}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"".join(burst_lines()[:4]))
        p.stdin.flush()
        got = []
        while [g["desired_workers"] for g in got if g["kind"] == "scale"] != [1, 3]:
            ready, _, _ = select.select([p.stdout], [], [], 30)
            assert ready, f"no decision; got {got}"
            got.append(orjson.loads(p.stdout.readline()))
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
        p.stdin.close()
    assert b"Traceback" not in p.stderr.read()
    assert calls.read_text().splitlines()[-1] == "default 3"


def test_head_ends_quietly():
    data = b"".join(burst_lines(3000))  # far more output than a pipe holds
    r = subprocess.run(f"{BIN / 'doorman-scale'} --every 1; echo \"exit $?\" >&2", shell=True, input=data,
                       capture_output=True, timeout=60, executable="/bin/bash")
    assert len(records(r.stdout)) > 2900
    r = subprocess.run(f"set -o pipefail; {BIN / 'doorman-scale'} --every 1 | head -n 1", shell=True, input=data,
                       capture_output=True, timeout=60, executable="/bin/bash")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1
    assert b"Traceback" not in r.stderr and b"Broken pipe" not in r.stderr


def test_failed_command_is_reported_and_retried_on_the_next_decision(tmp_path):
    """The first call fails (exit 3, says why), the retry at the next snapshot succeeds."""
    tries = tmp_path / "tries"
    cmd = script(tmp_path, f"""\
        n=$(cat {tries} 2>/dev/null || echo 0); echo $((n + 1)) > {tries}
        if [ "$n" = 0 ]; then echo "error: the server doesn't have a resource type deployment" >&2; exit 3; fi
        echo "scaled $1 to $2"
    """)
    p = subprocess.Popen([str(BIN / "doorman-scale"), "--exec", f"{cmd} {{pool}} {{desired}}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = burst_lines(30, burst_at=20)
    try:
        p.stdin.write(b"".join(lines[:2]))  # the first decision: 1 worker
        p.stdin.flush()
        seen = []

        def upto(pred):
            while True:
                ready, _, _ = select.select([p.stdout], [], [], 20)
                assert ready, f"no record; got {seen}"
                seen.append(orjson.loads(p.stdout.readline()))
                if pred(seen[-1]):
                    return seen[-1]

        failed = upto(lambda r: r["kind"] == "scale_exec")
        assert failed["result"] == "failed" and failed["exit_code"] == 3 and failed["attempt"] == 1
        assert "exit code 3" in failed["error"] and "doesn't have a resource type" in failed["error"]
        p.stdin.write(lines[2])  # the next snapshot, no change: the decision is written again and retried
        p.stdin.flush()
        retry = upto(lambda r: r["kind"] == "scale")
        assert retry["reason"].startswith("retry after a failed command") and retry["desired_workers"] == 1
        ok = upto(lambda r: r["kind"] == "scale_exec")
        assert ok["result"] == "ok" and ok["attempt"] == 2 and ok["error"] is None
        p.stdin.write(lines[3])  # nothing failed, nothing changed: nothing written
        p.stdin.flush()
    finally:
        p.stdin.close()
        rest = p.stdout.read()
        p.wait(20)
    assert p.returncode == 0 and b"Traceback" not in p.stderr.read()
    assert records(rest) == []
    assert tries.read_text().strip() == "2"


@pytest.mark.slow
def test_missing_and_hanging_commands_are_failures_not_crashes(tmp_path):
    data = b"".join(burst_lines(2))  # one decision
    r = cli("doorman-scale", "--exec", str(tmp_path / "no-such-kubectl") + " {desired}", input=data)
    assert r.returncode == 0
    [fail] = [x for x in records(r.stdout) if x["kind"] == "scale_exec"]
    assert fail["result"] == "failed" and fail["exit_code"] is None and "cannot run" in fail["error"]

    hang = script(tmp_path, "sleep 60 &\nwait\n", "hang")
    r = cli("doorman-scale", "--exec", f"{hang} {{desired}}", input=data,
            env={"DOORMAN_SCALE_EXEC_TIMEOUT_SECONDS": "1"}, timeout=30)
    assert r.returncode == 0
    [fail] = [x for x in records(r.stdout) if x["kind"] == "scale_exec"]
    assert fail["result"] == "failed" and fail["error"].startswith("timed out after 1 s")


def test_broker_names_never_reach_a_shell(tmp_path):
    """A hostile queue name and cluster label stay data: the command gets exactly pool and count."""
    argv_file, pwned = tmp_path / "argv", tmp_path / "pwned"
    cmd = script(tmp_path, f'printf "%s\\n" "$@" > {argv_file}\n')
    hostile = f"x; touch {pwned}; $(touch {pwned})"
    out = []
    for line in burst_lines(2):  # one decision
        snap = orjson.loads(line)
        snap["queues"] = {hostile: snap["queues"]["celery"]}
        snap["cluster"] = f"`touch {pwned}`"
        out.append(orjson.dumps(snap) + b"\n")
    r = cli("doorman-scale", "--exec", f"{cmd} '{{pool}}; rm -rf ~' {{desired}}", input=b"".join(out))
    assert r.returncode == 0
    assert argv_file.read_text().splitlines() == ["default; rm -rf ~", "1"]
    assert not pwned.exists()
    assert records(r.stdout)[0]["queues"] == [hostile]


def test_config_file_pools_split_the_queues(tmp_path):
    path = tmp_path / "doorman.yaml"
    path.write_text("scale:\n  pools:\n    fast: {queues: [celery], min: 2, max: 4, target_wait_seconds: 10}\n"
                    "    batch: {queues: [reports]}\n")
    os.chmod(path, 0o600)
    r = cli("doorman-scale", "--config", str(path), input=b"".join(burst_lines(6)))
    assert r.returncode == 0, r.stderr
    got = {(d["pool"], d["desired_workers"]) for d in records(r.stdout)}
    assert ("fast", 2) in got and ("fast", 4) in got and ("batch", 1) in got
