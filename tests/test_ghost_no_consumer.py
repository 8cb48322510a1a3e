"""ghost_worker case (a) with real parts: a real Celery worker reaches a real redis-server through a
TCP relay on 127.0.0.1 (doorman/simulate/partition.py), which leaves the worker's BRPOP
connection half-open, as a network blip can. Redis drops the consumer; the worker never hears of it
and heartbeats on over its other connections. What did not reproduce it (CLIENT KILL,
cancel_consumer, CLIENT PAUSE, ACL changes) is in docs/simulate.md."""

from __future__ import annotations

import time

import pytest

from doorman.simulate.partition import Partition
from tests.support.liveness import collect_analyze, consumer_ids
from tests.support.process import cli, records, wait_for
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e


def test_a_worker_whose_consumer_connection_is_left_half_open_is_a_ghost(redis_server, workers):
    url, client = redis_server.url, redis_server.client()
    relay = Partition("127.0.0.1", redis_server.port)
    w = workers(relay.url(), "halfopen@live", client, queues="celery")
    try:
        assert len(consumer_ids(client)) == 1
        assert relay.cut_consumers() == 1
        wait_for(lambda: not consumer_ids(client), 5, "Redis dropping the cut consumer connection")

        snaps, alerts, _ = collect_analyze(url, count=4, GHOST_AFTER_SECONDS="2")
        assert [(a["alert_type"], a["severity"], a["subject"], a["details"]["case"], a["details"]["missing_consumers"])
                for a in alerts] == [("ghost_worker", "critical", "worker:halfopen@live", "a", 1)]
        last = snaps[-1]
        assert last["connections"]["consumers"] == 0 and last["alive_workers"] == 1
        [mine] = last["workers"]
        assert mine["alive"] and mine["queues"] == ["celery"] and mine["processed"] == 0
        assert [s["trigger"] for s in snaps if s["trigger"] == "connection_lost"] == []

        # It is a ghost indeed: it answers a ping, heartbeats, and takes nothing.
        enqueue(url, 2, task="demo.add", args=(1, 2), queue="celery")
        time.sleep(1)  # a live consumer takes them within milliseconds
        assert client.llen("celery") == 2
        ping = cli("doorman-collect", "--once", "--redis-url", url)
        assert records(ping.stdout)[0]["workers"][0]["alive"] is True
    finally:
        w.kill9()
        relay.close()


def test_simulate_stages_the_ghost_with_no_consumer_connection_until_its_alert_comes():
    from tests.support.process import free_port

    result = cli("doorman-simulate", "--scenario", "ghost-no-consumer", "--port", str(free_port()), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    firing = [a for a in records(result.stdout) if a["status"] == "firing"]
    assert [(a["alert_type"], a["severity"], a["subject"][:7], a["details"]["case"]) for a in firing] == [
        ("ghost_worker", "critical", "worker:", "a")]
    assert b"1 consumer connection(s) left half-open" in result.stderr
    assert b"scenario ghost-no-consumer: the expected alert came" in result.stderr
