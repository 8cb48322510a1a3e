"""Liveness from Redis's own connection table, with real parts: a redis-server the suite starts, real
Celery workers (prefork and solo), the real daemon line and a real HTTP receiver on 127.0.0.1.

Timing is the benchmark's business (bench/bench_liveness.py); here only what arrives, and
which snapshot raised it, is checked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import orjson
import pytest

from doorman.simulate.procs import children_of
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.liveness import collect_analyze, consumer_ids
from tests.support.process import BIN, ROOT, cli, records, wait_for
from tests.support.receiver import Receiver
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e

HOOK = "/hooks/doorman"


def pipeline(url: str, receiver: Receiver, tmp_path, **env: str) -> DaemonPipeline:
    pipe = DaemonPipeline(url, receiver.url(HOOK), interval=30, workdir=str(tmp_path))
    pipe.env.update(env)
    return pipe.start()


def settled(pipe: DaemonPipeline, quiet: float = 1.0, timeout: float = 15) -> None:
    """Until collect has written no snapshot for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen, since = len(pipe.snapshots()), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.1)
        if (n := len(pipe.snapshots())) != seen:
            seen, since = n, time.monotonic()


def test_kill9_one_of_three_then_the_rest_pages_from_the_connection_table(redis_server, workers, tmp_path):
    url, client = redis_server.url, redis_server.client()
    receiver = Receiver()
    ws = [workers(url, f"w{i}@live", client, queues="busy") for i in (1, 2, 3)]
    enqueue(url, 5, task="demo.add", args=(2, 3), queue="celery")  # nobody consumes `celery`: they wait
    # the confirming ping waits 3 s, not 0.5: a live worker answering late on a loaded machine would
    # leave two silent workers for one vanished connection, and the death to the heartbeat path
    pipe = pipeline(url, receiver, tmp_path, DOORMAN_LIVENESS_CONFIRM_SECONDS="3")
    try:
        for w in ws:
            pipe.wait_heartbeat(w.name)
        settled(pipe)  # the snapshots the workers' arrival called for are taken
        ws[0].kill9()
        wait_for(lambda: receiver.delivered(HOOK), 15, "worker_lost at the webhook")
        ws[1].kill9()
        ws[2].kill9()
        wait_for(lambda: any(r.json["alert_type"] == "workers_down" for r in receiver.delivered(HOOK)), 15,
                 "workers_down at the webhook")
        time.sleep(1)
    finally:
        pipe.stop()
        receiver.close()

    posts = [r.json for r in receiver.at(HOOK)]
    firing = [(a["alert_type"], a["subject"]) for a in posts if a["status"] == "firing"]
    assert firing[:2] == [("worker_lost", "worker:w1@live"), ("workers_down", "cluster")], firing
    assert ("worker_lost", "worker:w2@live") not in firing and ("worker_lost", "worker:w3@live") not in firing
    # The single death came from a snapshot the connection table triggered, not from a heartbeat
    # going overdue. Two workers killed back to back can race the confirming ping (both silent,
    # one connection gone yet): then whichever of the two paths is first raises workers_down.
    by_ts = {s["ts"]: s for s in pipe.snapshots()}
    assert by_ts[posts[0]["ts"]]["trigger"] == "connection_lost", posts[0]
    assert by_ts[posts[1]["ts"]]["trigger"] in ("connection_lost", "heartbeat"), posts[1]
    down = by_ts[posts[1]["ts"]]
    assert down["alive_workers"] == 0 and down["connections"]["consumers"] == 0
    assert posts[1]["details"]["pending_tasks"] == 5


def test_no_alert_for_a_reconnect_a_busy_prefork_a_solo_worker_on_a_10s_task_or_a_warm_stop(
        redis_server, workers, tmp_path):
    url, client = redis_server.url, redis_server.client()
    receiver = Receiver()
    prefork = workers(url, "prefork@live", client, queues="busy")
    prefork_consumer = consumer_ids(client)
    solo = workers(url, "solo@live", client, queues="slow", pool="solo")
    leaver = workers(url, "leaver@live", client, queues="other")
    pipe = pipeline(url, receiver, tmp_path)
    try:
        for w in (prefork, solo, leaver):
            pipe.wait_heartbeat(w.name)
        enqueue(url, 1, task="demo.sleep", args=(60,), queue="busy")
        enqueue(url, 1, task="demo.sleep", args=(10,), queue="slow")
        wait_for(lambda: client.llen("slow") == 0 and client.llen("busy") == 0, 10, "both tasks taken")
        # a reconnect: Redis drops the prefork worker's consumer connection; kombu opens a new one
        [cid] = prefork_consumer
        client.execute_command("CLIENT", "KILL", "ID", cid)
        time.sleep(2)
        leaver.stop()  # SIGTERM: a warm shutdown says goodbye (worker-offline)
        time.sleep(9)  # the solo task runs 10 s: more than twice its 2 s heartbeat
        pipe.check_running()
    finally:
        pipe.stop()
        receiver.close()

    assert receiver.at(HOOK) == [], [r.json for r in receiver.at(HOOK)]
    snaps = pipe.snapshots()
    solo_seen = [w for s in snaps for w in s["workers"] if w["name"] == solo.name]
    assert solo_seen and all(w["alive"] for w in solo_seen), "a busy solo worker is never called dead"
    assert any(s["trigger"] == "heartbeat" for s in snaps), "its heartbeat did go overdue"
    last = snaps[-1]
    assert [w.get("departed") for w in last["workers"] if w["name"] == leaver.name] == [True]
    assert not any(s["trigger"] == "connection_lost" for s in snaps)


def test_tasks_routed_to_a_queue_nobody_consumes_and_a_cancelled_consumer(redis_server, workers):
    url, client = redis_server.url, redis_server.client()
    w = workers(url, "w1@unconsumed", client, queues="celery,emails")
    enqueue(url, 3, task="demo.add", args=(1, 2), queue="reports")
    control = subprocess.run([str(BIN / "celery"), "-A", "doorman.demoapp", "control", "cancel_consumer", "emails"],
                             env={**os.environ, "REDIS_URL": url}, cwd=ROOT, capture_output=True, timeout=30)
    assert control.returncode == 0, control.stderr
    enqueue(url, 2, task="demo.add", args=(1, 2), queue="emails")

    snaps, alerts, _ = collect_analyze(url, UNCONSUMED_AFTER_SECONDS="1.5", CRITICAL_QUEUES="reports")
    last = snaps[-1]["queues"]
    assert (last["celery"]["consumers"], last["celery"]["consumed_by"]) == (1, [w.name])
    assert (last["emails"]["consumers"], last["reports"]["consumers"]) == (0, 0)
    got = sorted((a["alert_type"], a["severity"], a["subject"], a["details"]["pending"]) for a in alerts)
    assert got == [("queue_unconsumed", "critical", "queue:reports", 3),
                   ("queue_unconsumed", "warning", "queue:emails", 2)]
    assert {x["name"]: (x["concurrency"], x["processed"]) for x in snaps[-1]["workers"]} == {w.name: (1, 0)}


def test_a_worker_whose_pool_hangs_is_a_ghost(redis_server, workers):
    url, client = redis_server.url, redis_server.client()
    w = workers(url, "ghost@live", client, queues="celery")
    children = children_of(w.proc.pid)
    assert children, "the prefork worker has a pool process"
    for pid in children:
        os.kill(pid, signal.SIGSTOP)  # the pool hangs; the main process heartbeats on
    enqueue(url, 8, task="demo.add", args=(1, 2), queue="celery")

    snaps, alerts, _ = collect_analyze(url, count=5, GHOST_AFTER_SECONDS="2")
    assert [(a["alert_type"], a["severity"], a["subject"], a["details"]["case"]) for a in alerts] == [
        ("ghost_worker", "critical", "worker:ghost@live", "b")]
    mine = [x for x in snaps[-1]["workers"] if x["name"] == w.name][0]
    assert mine["alive"] and mine["last_heartbeat"] and mine["processed"] == 0 and mine["concurrency"] == 1
    assert snaps[-1]["queues"]["celery"]["pending"] > 0


def test_a_refused_connection_table_falls_back_to_heartbeats_with_one_warning(redis_server, workers):
    client = redis_server.client()
    worker = workers(redis_server.url, "w1@acl", client)
    client.execute_command("ACL", "SETUSER", "noclients", "on", ">pw-Secret-9", "~*", "&*", "+@all", "-client|list")
    url = f"redis://noclients:pw-Secret-9@127.0.0.1:{redis_server.port}/0"
    snaps, alerts, stderr = collect_analyze(url, count=3, interval=0.5)
    assert [s["connections"] for s in snaps] == [None, None, None]
    assert all(s["redis_connected"] and s["alive_workers"] == 1 for s in snaps)
    assert stderr.count(b"CLIENT LIST") == 1, stderr
    assert alerts == []

    # the fallback: a kill -9 is seen when the heartbeat goes overdue (Celery's 2 x freq rule)
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--redis-url", url, "--interval", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "DOORMAN_CONFIG": ""})
    assert proc.stdout is not None
    try:
        wait_for(lambda: orjson.loads(proc.stdout.readline())["workers"][0]["last_heartbeat"], 10,
                 "a snapshot with the worker's heartbeat")
        worker.kill9()
        # a snapshot the worker's arrival had already called for may come first, its heartbeat fresh
        for _ in range(3):
            dead = orjson.loads(proc.stdout.readline())
            if dead["alive_workers"] == 0:
                break
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert (dead["trigger"], dead["alive_workers"], dead["connections"]) == ("heartbeat", 0, None)
    client.execute_command("ACL", "DELUSER", "noclients")


def test_human_view_shows_consumers_per_queue(redis_server, workers):
    url, client = redis_server.url, redis_server.client()
    workers(url, "w1@human", client, queues="celery")
    enqueue(url, 2, task="demo.add", args=(1, 2), queue="reports")
    result = cli("doorman-collect", "--once", "--human", "--redis-url", url)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "queue celery: 0, consumers 1 (w1@human)" in text
    assert "queue reports: 2, oldest" in text and "NO CONSUMER" in text


def test_simulate_stages_the_unconsumed_queue_until_its_alert_comes():
    from tests.support.process import free_port

    result = cli("doorman-simulate", "--scenario", "unconsumed", "--port", str(free_port()), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    alerts = records(result.stdout)
    assert [(a["alert_type"], a["subject"]) for a in alerts if a["status"] == "firing"][:1] == [
        ("queue_unconsumed", "queue:reports")]
    assert b"scenario unconsumed: the expected alert came" in result.stderr


def test_a_broker_killing_the_monitors_own_connections_is_not_redis_down(redis_server, workers):
    url, client = redis_server.url, redis_server.client()
    workers(url, "w1@kill", client)
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--redis-url", url, "--interval", "0.5", "--count", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "DOORMAN_CONFIG": ""})
    assert proc.stdout is not None
    first = proc.stdout.readline()
    killed = 0
    for _ in range(3):  # the table poll, the snapshot's reads and the heartbeat subscription, again and again
        for c in client.client_list():
            if c["name"] == "celery-doorman":
                killed += client.client_kill_filter(_id=c["id"])
        time.sleep(0.6)
    out, err = proc.communicate(timeout=30)
    snaps = records(first + out)
    assert killed >= 3 and proc.returncode == 0, err
    assert len(snaps) == 8 and all(s["redis_connected"] and s["error"] is None for s in snaps), err
    assert all(s["connections"] is not None for s in snaps)
