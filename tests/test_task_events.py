"""Task events on Redis, end to end: real workers (`-E`) run tasks with every outcome; the daemon's
`tasks` section counts exactly what they did; events off / partial are told; a redis-server restart
shows in `tasks.lost` and the counts stay consistent (docs/tasks.md)."""

from __future__ import annotations

import pytest

from tests.support.process import wait_for
from tests.support.task_events import (
    Daemon,
    EventWorker,
    assert_every_count,
    done,
    plain,
    run_every_outcome,
)
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e  # real workers, brokers or whole pipelines


def test_every_count_equals_what_the_workers_did(redis_server):
    daemon = Daemon(redis_server.url, task_exception_messages=True)  # the opt-in: last messages kept
    worker = EventWorker(redis_server.url, "w1@tasks", events=True)
    try:
        wait_for(lambda: daemon.alive("w1@tasks"), 60, "the worker's heartbeat")
        expected = run_every_outcome(redis_server.url, "w1@tasks", daemon)
        t = daemon.until(done(expected), 90, "every outcome counted")
        assert_every_count(t, expected, "w1@tasks")
        assert t["reader"]["broker"] == "redis"
        last = {n: (c["last_exception"]["class"], c["last_exception"]["message"])
                for n, c in t["by_name"].items() if "last_exception" in c}
        assert last == {"demo.fail_value": ("ValueError", "ValueError('demo failure')"),
                        "demo.fail_key": ("KeyError", "KeyError('demo')"),
                        "demo.retry_give_up": ("ValueError", "ValueError('still failing')"),
                        "demo.reject": ("UnknownException", last.get("demo.reject", ("", ""))[1])}
    finally:
        worker.kill9()
        daemon.close()


def test_a_worker_without_events_is_off_then_partial_beside_one_with(redis_server):
    url = redis_server.url
    daemon = Daemon(url)
    quiet = EventWorker(url, "quiet@tasks", events=False, queues="a")
    loud = None
    try:
        wait_for(lambda: daemon.alive("quiet@tasks"), 60, "the quiet worker's heartbeat")
        assert daemon.tasks is not None and daemon.tasks["events"] == "unknown"  # nothing ran yet
        enqueue(url, 3, task="demo.add", args=(1, 1), queue="a")
        t = daemon.until(lambda t: t["events"] == "off", 60, "events off")
        assert t["silent_workers"] == ["quiet@tasks"]
        assert t["by_name"] == {}  # nothing to count: said, not guessed
        loud = EventWorker(url, "loud@tasks", events=True, queues="b")
        wait_for(lambda: daemon.alive("loud@tasks"), 60, "the loud worker's heartbeat")
        enqueue(url, 2, task="demo.add", args=(1, 1), queue="b")
        t = daemon.until(lambda t: t["events"] == "partial", 60, "events partial")
        assert t["silent_workers"] == ["quiet@tasks"]
        t = daemon.until(lambda t: t["by_name"].get("demo.add", {}).get("succeeded") == 2, 60, "the loud tasks")
        assert t["by_worker"]["loud@tasks"]["succeeded"] == 2 and "quiet@tasks" not in t["by_worker"]
    finally:
        quiet.kill9()
        if loud:
            loud.kill9()
        daemon.close()


def test_a_redis_restart_is_reported_in_lost_and_counts_stay_consistent(own_redis):
    url = own_redis.url
    daemon = Daemon(url)
    worker = EventWorker(url, "w1@restart", events=True)
    try:
        wait_for(lambda: daemon.alive("w1@restart"), 60, "the worker's heartbeat")
        enqueue(url, 3, task="demo.add", args=(1, 1))
        daemon.until(lambda t: t["by_name"].get("demo.add", {}).get("succeeded") == 3, 60, "the first tasks")
        own_redis.kill()
        daemon.until(lambda t: not t["reader"]["subscribed"], 60, "the reader seeing the gap")
        own_redis.start()
        t = daemon.until(lambda t: t["reader"]["subscribed"] and t["lost"]["gaps"] >= 1, 60, "resubscribed")
        assert t["lost"]["unsubscribed_seconds"] > 0
        wait_for(lambda: daemon.alive("w1@restart"), 60, "the worker back")
        enqueue(url, 4, task="demo.add", args=(1, 1))
        t = daemon.until(lambda t: t["by_name"]["demo.add"]["succeeded"] == 7, 90, "the tasks after the restart")
        add = plain(t["by_name"]["demo.add"])
        assert add == {"sent": 0, "received": 7, "started": 7, "succeeded": 7, "failed": 0, "retried": 0,
                       "rejected": 0, "revoked": 0}  # enqueue's producer sends no task-sent
        assert t["lost"]["gaps"] >= 1 and t["reader"]["bad"] == 0
        assert t["events"] == "on"
    finally:
        worker.kill9()
        daemon.close()


def test_once_has_no_tasks_and_task_events_false_turns_the_reader_off(redis_server):
    from tests.support.process import collect_once

    assert collect_once(redis_server.url)["tasks"] is None  # --once cannot see events
    daemon = Daemon(redis_server.url, task_events=False)
    try:
        wait_for(lambda: daemon.snaps, 30, "a snapshot")
        assert daemon.snaps[-1]["tasks"] is None
    finally:
        daemon.close()
