"""Task events on RabbitMQ, end to end: the same outcomes as on Redis, counted from Doorman's own
exclusive, auto-delete queue bound to `celeryev` (task.# and worker.#), nothing left behind."""

from __future__ import annotations

import pytest

from tests.support.process import wait_for
from tests.support.rabbit import vhost_fixture  # noqa: F401 - the fixture `vhost`
from tests.support.task_events import Daemon, EventWorker, assert_every_count, done, run_every_outcome

pytestmark = pytest.mark.e2e  # real workers, brokers or whole pipelines


def test_every_count_equals_what_the_workers_did_on_rabbitmq(vhost):
    url = vhost.url()
    worker = EventWorker(url, "w1@rabbit", events=True)
    daemon = Daemon(url)
    try:
        wait_for(lambda: daemon.alive("w1@rabbit"), 90, "the worker's heartbeat")
        wait_for(lambda: daemon.tasks and daemon.tasks["reader"]["subscribed"], 60, "the task-event queue bound")
        expected = run_every_outcome(url, "w1@rabbit", daemon)
        t = daemon.until(done(expected), 90, "every outcome counted")
        assert_every_count(t, expected, "w1@rabbit")
        assert t["reader"]["broker"] == "rabbitmq"
        assert not [n for n, c in t["by_name"].items() if "last_exception" in c]  # messages: off by default
        ours = {n: q for n, q in vhost.queues().items() if n.startswith("doorman.ev.")}
        assert len(ours) == 1 and all(q["exclusive"] and q["auto_delete"] and not q["durable"] for q in ours.values())
        keys = {b["routing_key"] for b in vhost.bindings() if b["destination_name"] in ours}
        assert {"task.#", "worker.#"} <= keys
    finally:
        worker.kill9()
        daemon.close()
    wait_for(lambda: not [n for n in vhost.queues() if n.startswith("doorman.")], 30, "Doorman's queue gone")
