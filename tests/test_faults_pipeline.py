"""Faults across the whole pipeline, with real processes: broker crash, receivers down, signals,
concurrent cron runs (hostile input, secrets and notify killed mid-delivery: test_faults_notify.py)."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.support.notify import notify_env
from tests.support.process import BIN, cli, free_port, wait_for
from tests.support.receiver import Receiver
from tests.support.scenario import snapshot_line
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e


class Lines:
    """Read a process's stdout lines in a thread, so a test can wait with a deadline instead of hanging."""

    def __init__(self, stream):
        self.q: queue.Queue = queue.Queue()
        self.all: list[dict] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in iter(stream.readline, b""):
            self.q.put(orjson.loads(line))
        self.q.put(None)

    def until(self, predicate, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            item = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            if item is None:
                raise AssertionError(f"stream ended; seen: {self.all}")
            self.all.append(item)
            if predicate(item):
                return item


def interactive_signals() -> None:
    """The stages as an interactive shell starts them: SIGINT (Ctrl-C) with its default action. A
    suite run in the background (`nohup … &`) hands its children SIGINT ignored, and a command
    started with a signal ignored keeps it ignored, as POSIX programs do."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pipeline(*stages: list[str], env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    procs: list[subprocess.Popen] = []
    stdin = None
    for args in stages:
        p = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, **(env or {})}, preexec_fn=interactive_signals)
        if stdin is not None:
            stdin.close()
        stdin = p.stdout
        procs.append(p)
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def test_broker_killed_and_restarted_pages_once_and_resolves_once(own_redis):
    procs = pipeline([str(BIN / "doorman-collect"), "--redis-url", own_redis.url, "--interval", "0.3"],
                     [str(BIN / "doorman-analyze")])
    alerts = Lines(procs[-1].stdout)
    try:
        alerts.until(lambda a: a["alert_type"] == "celery_disconnected")  # no workers in this test
        own_redis.kill()
        down = alerts.until(lambda a: a["alert_type"] == "redis_down")
        assert (down["status"], down["severity"]) == ("firing", "emergency")
        time.sleep(1.5)  # several failed checks: still one page
        own_redis.start()
        up = alerts.until(lambda a: a["alert_type"] == "redis_down" and a["status"] == "resolved")
        assert up["fingerprint"] == down["fingerprint"]
        time.sleep(1.0)
    finally:
        stop(procs)
    while not alerts.q.empty():
        item = alerts.q.get()
        if item:
            alerts.all.append(item)
    redis_down = [(a["status"]) for a in alerts.all if a["alert_type"] == "redis_down"]
    assert redis_down == ["firing", "resolved"]


def test_receiver_down_then_back_gets_every_alert_exactly_once_in_order(tmp_path):
    port = free_port()
    hook = f"http://127.0.0.1:{port}/hooks/doorman"
    env = notify_env(tmp_path, hook=hook, DOORMAN_SPOOL_RETRY_SECONDS="0.3")
    proc = subprocess.Popen([str(BIN / "doorman-notify")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **env})
    records_out = Lines(proc.stdout)
    receiver = None
    try:
        from tests.support.notify import alert

        sent = [alert(n) for n in range(1, 8)]
        for a in sent:
            proc.stdin.write(orjson.dumps(a) + b"\n")
            proc.stdin.flush()
            records_out.until(lambda r, fp=a["fingerprint"]: r["fingerprint"] == fp)
        assert all(r["result"] in ("spooled", "failed") for r in records_out.all)
        time.sleep(1.0)  # the receiver stays down for a while: retries stay bounded and quiet
        receiver = Receiver(port=port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(receiver.delivered("/hooks/doorman")) < len(sent):
            time.sleep(0.1)
        time.sleep(1.0)  # would a duplicate follow?
        got = [r.json["fingerprint"] for r in receiver.delivered("/hooks/doorman")]
        assert got == [a["fingerprint"] for a in sent]
        assert len(receiver.at("/hooks/doorman")) == len(sent)
    finally:
        proc.stdin.close()
        proc.wait(20)
        if receiver:
            receiver.close()
    spool = tmp_path / "spool.ndjson"
    assert not spool.exists() or spool.read_bytes().strip() == b""


def test_two_cron_runs_at_once_send_one_notification(tmp_path):
    receiver = Receiver()
    state = tmp_path / "state.json"
    env = {**os.environ, **notify_env(tmp_path, hook=receiver.url("/hook"))}
    line = snapshot_line("2026-11-28T01:00:00.000Z").decode()
    cmd = (f"set -o pipefail; printf '%s\\n' '{line.strip()}' | '{BIN / 'doorman-analyze'}' --state '{state}'"
           f" | '{BIN / 'doorman-notify'}' --spool '{tmp_path}/spool-$$.ndjson'")
    try:
        runs = [subprocess.Popen(["bash", "-c", cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)]
        for r in runs:
            r.communicate(timeout=60)
        time.sleep(0.3)
        got = [(r.json["alert_type"], r.json["status"]) for r in receiver.at("/hook")]
        assert got == [("workers_down", "firing")]
    finally:
        receiver.close()


def feed(stream, data: bytes) -> None:
    try:
        stream.write(data)
        stream.close()
    except (BrokenPipeError, ValueError):
        pass


def test_sigkill_of_analyze_mid_stream_never_corrupts_the_state(tmp_path):
    state = tmp_path / "state.json"
    lines = b"".join(snapshot_line(f"2026-11-28T01:{i // 60:02d}:{i % 60:02d}.000Z", pending=i % 7)
                     for i in range(3000))
    rng = random.Random(7)
    for _ in range(5):
        p = subprocess.Popen([str(BIN / "doorman-analyze"), "--state", str(state)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=feed, args=(p.stdin, lines), daemon=True).start()
        time.sleep(rng.uniform(0.05, 0.4))
        p.kill()
        out = p.stdout.read()
        p.wait()
        for line in out.splitlines()[:-1]:  # everything before the last line is whole
            orjson.loads(line)
        if state.exists():
            orjson.loads(state.read_bytes())  # atomically replaced: always a whole JSON document
    after = cli("doorman-analyze", "--state", str(state), input=snapshot_line("2026-11-28T02:00:00.000Z"))
    assert after.returncode == 0 and b"corrupt" not in after.stderr and b"Traceback" not in after.stderr


def signal_masks(pid: int) -> dict[str, int]:
    """SigBlk, SigIgn, SigCgt of a process, from /proc (empty once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v, 16) for k, v in (ln.split(":\t") for ln in lines if ln.startswith(("SigBlk", "SigIgn", "SigCgt")))}


def stops_handled(pid: int) -> bool:
    """The stage has set up its SIGTERM handling: a handler (analyze) or blocked for its signal
    thread (collect, notify). Before that a signal is a start-up kill, not the stop under test."""
    m = signal_masks(pid)
    return bool((m.get("SigCgt", 0) | m.get("SigBlk", 0)) & (1 << (signal.SIGTERM - 1)))


def test_sigterm_or_sigint_to_each_stage_leaves_whole_lines(redis_server, tmp_path):
    enqueue(redis_server.url, 3, task="demo.add", args=(1, 2))
    env = notify_env(tmp_path)
    for victim, sig in ((0, signal.SIGTERM), (1, signal.SIGTERM), (2, signal.SIGTERM), (0, signal.SIGINT), (1, signal.SIGINT),
                        (2, signal.SIGINT)):
        procs = pipeline([str(BIN / "doorman-collect"), "--redis-url", redis_server.url, "--interval", "0.05"],
                         [str(BIN / "doorman-analyze"), "--state", str(tmp_path / "s.json")],
                         [str(BIN / "doorman-notify"), "--dry-run"], env=env)
        wait_for(lambda procs=procs: all(stops_handled(p.pid) for p in procs), 30, "every stage to take its stop signals")
        time.sleep(0.5)
        procs[victim].send_signal(sig)
        try:
            out, err = procs[-1].communicate(timeout=20)
        except subprocess.TimeoutExpired:  # say which stage did not end, and what it said
            alive = [(p.args[0].rsplit("/", 1)[-1], signal_masks(p.pid)) for p in procs if p.poll() is None]
            stop(procs)
            talk = b"".join(p.stderr.read() for p in procs[:-1] if p.stderr)
            raise AssertionError(f"{sig!r} to stage {victim}: still running after 20 s: {alive}; "
                                 f"stderr: {talk.decode(errors='replace')[-1500:]}") from None
        finally:
            stop(procs)
        for line in out.splitlines():
            orjson.loads(line)
        assert b"Traceback" not in err
        orjson.loads((tmp_path / "s.json").read_bytes())
