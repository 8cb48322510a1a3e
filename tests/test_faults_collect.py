"""Faults on the collect side: a slow broker, many queues, a flood of worker heartbeats."""

from __future__ import annotations

import base64
import subprocess
import threading
import time

import orjson
import pytest

from doorman import brokers
from doorman.brokers.redis.keys import Keys
from doorman.collect import heartbeats
from doorman.collect.heartbeats import MAX_WORKERS, HeartbeatTracker
from doorman.config.load import make_config
from tests.support.process import BIN, collect_once, wait_for


@pytest.mark.e2e
def test_a_paused_broker_costs_one_timeout_and_the_daemon_carries_on(own_redis):
    client = own_redis.client()
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--redis-url", own_redis.url, "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"DOORMAN_REDIS_TIMEOUT": "0.5", "PATH": "/usr/bin:/bin"})
    try:
        assert orjson.loads(proc.stdout.readline())["redis_connected"] is True
        client.execute_command("CLIENT", "PAUSE", "2500", "ALL")
        snaps = [orjson.loads(proc.stdout.readline()) for _ in range(3)]
        assert any(not s["redis_connected"] and "Timeout" in s["error"] for s in snaps), snaps
        # every check is bounded by the timeout: one per ~0.7 s, not one per pause
        assert max(s["collect_ms"] for s in snaps) < 2400
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if orjson.loads(proc.stdout.readline())["redis_connected"]:
                break
        else:
            raise AssertionError("never recovered after the pause")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_a_thousand_queues_in_one_snapshot(redis_server):
    client = redis_server.client()
    names = [f"q{i}" for i in range(1000)]
    pipe = client.pipeline(transaction=False)
    for i, q in enumerate(names):
        if i % 10 == 0:
            pipe.lpush(q, b'{"headers": {"id": "t%d", "task": "x"}}' % i)
    pipe.execute()
    snap = collect_once(redis_server.url, env={"MONITORED_QUEUES": ",".join(names)})
    assert len(snap["queues"]) == 1000 and snap["pending_tasks"] == 100
    assert snap["queues"]["q990"]["oldest"]["task_id"] == "t990"


def heartbeat(name: str, freq: float = 2.0) -> bytes:
    body = orjson.dumps({"hostname": name, "type": "worker-heartbeat", "freq": freq, "active": 0})
    return orjson.dumps({"body": base64.b64encode(body).decode(),
                         "properties": {"body_encoding": "base64"}})


@pytest.mark.slow
def test_ten_thousand_workers_heartbeats_are_tracked_within_a_bound(redis_server):
    """Published on the real channel, read by the real tracker; memory stays bounded past the cap."""
    client = redis_server.client()
    wake = threading.Event()
    broker = brokers.connect(make_config(redis_url=redis_server.url))
    tracker = HeartbeatTracker(broker, wake).start()
    channel = Keys().worker_event_channel("worker-heartbeat")
    try:
        wait_for(lambda: tracker.connected, 5, "the tracker to subscribe")
        time.sleep(0.2)
        pipe = client.pipeline(transaction=False)
        for i in range(MAX_WORKERS + 2000):
            pipe.publish(channel, heartbeat(f"w{i}@host", freq=30.0))  # alive for 60 s: time to read all
        pipe.publish(channel, b"garbage that is not an event")
        pipe.execute()
        last = f"w{MAX_WORKERS + 1999}@host"  # published last: once it is tracked, all were read
        wait_for(lambda: last in tracker.workers(time.time()), 20, f"{last} tracked")
        seen = tracker.workers(time.time())
        assert len(seen) == MAX_WORKERS
        assert wake.is_set()
        assert all(w["alive"] for w in seen.values())
        overdue = tracker.pop_overdue(time.time() + 60.1)
        assert len(overdue) == MAX_WORKERS and tracker.pop_overdue(time.time() + 61) == []
    finally:
        tracker.stop()
        broker.close()


@pytest.mark.e2e
def test_a_broker_stuck_in_debug_sleep_costs_one_timeout(make_redis):
    server = make_redis(extra=["--enable-debug-command", "local"])
    sleeper = threading.Thread(target=lambda: server.client().execute_command("DEBUG", "SLEEP", "3"))
    sleeper.start()
    time.sleep(0.2)
    snap = collect_once(server.url, env={"DOORMAN_REDIS_TIMEOUT": "0.5"})
    assert snap["redis_connected"] is False and "Timeout" in snap["error"]
    assert snap["collect_ms"] < 2500  # bounded by the timeout, not by the 3 s sleep
    sleeper.join()


def test_workers_gone_for_long_are_forgotten_and_new_ones_still_tracked(redis_server):
    broker = brokers.connect(make_config(redis_url=redis_server.url))
    tracker = HeartbeatTracker(broker, threading.Event())
    now = 1_800_000_000.0
    for i in range(3):
        tracker.observe({"hostname": f"old{i}@host", "type": "worker-heartbeat", "freq": 2.0}, now)
    later = now + heartbeats.FORGET_AFTER + 1
    tracker.observe({"hostname": "new@host", "type": "worker-heartbeat", "freq": 2.0}, later)
    assert list(tracker.workers(later)) == ["new@host"]
