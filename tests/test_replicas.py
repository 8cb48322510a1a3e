"""Two replicas, one dies (docs/reliability.md "Two replicas"): every alert the dead one decided was
delivered by its partner too, and what it had journaled is delivered when it starts again.

Real redis-server, a real worker, two real daemon lines (`collect | analyze | notify`, analyze's
output copied by `tee`) and one real HTTP receiver on 127.0.0.1 with a path per replica.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.daemon_pipeline import DaemonPipeline, _read
from tests.support.process import wait_for
from tests.support.receiver import Receiver, Reply
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e


def posted(receiver: Receiver, path: str) -> list[tuple[str, str, str]]:
    return [(r.json["fingerprint"], r.json["alert_type"], r.json["status"]) for r in receiver.delivered(path)]


def decided(pipe: DaemonPipeline) -> set[tuple[str, str, str]]:
    return {(a["fingerprint"], a["alert_type"], a["status"]) for a in pipe.alerts() if "fingerprint" in a}


def spooled(pipe: DaemonPipeline) -> list[dict[str, Any]]:
    return [e["alert"] for e in _read(pipe.dir / "spool.ndjson") if e.get("kind") == "spooled"]


def test_a_replica_killed_mid_retry_loses_nothing_its_partner_did_not_deliver(redis_server, workers, tmp_path):
    url, client = redis_server.url, redis_server.client()
    receiver = Receiver()
    receiver.script("/a", Reply(500))  # replica a's destination fails: its alert waits in its spool
    enqueue(url, 5, task="demo.add", args=(2, 3))  # no worker yet: workers_down
    a = DaemonPipeline(url, receiver.url("/a"), interval=1, workdir=str(tmp_path / "a"), tee_alerts=True).start()
    b = DaemonPipeline(url, receiver.url("/b"), interval=1, workdir=str(tmp_path / "b"), tee_alerts=True).start()
    restarted = None
    try:
        wait_for(lambda: posted(receiver, "/b"), 30, "the partner's workers_down")
        wait_for(lambda: spooled(a), 30, "replica a's workers_down journaled in its spool")
        a.procs[-1].kill()  # kill -9 of a's notify in the middle of its retries
        a.stop()  # the supervisor takes the rest of the unit down with it

        workers(url, "w1@replicas", client)  # the backlog drains: the incident ends while a is down
        wait_for(lambda: [p for p in posted(receiver, "/b") if p[2] == "resolved"], 30, "the partner's resolution")

        receiver.script("/a", Reply(200))
        restarted = DaemonPipeline(url, receiver.url("/a"), interval=1, workdir=str(tmp_path / "a"),
                                   tee_alerts=True).start()
        wait_for(lambda: [p for p in posted(receiver, "/a") if p[2] == "resolved"], 30, "replica a's resolution")
    finally:
        for pipe in (a, b, restarted):
            if pipe:
                pipe.stop()
        receiver.close()

    by_a = decided(restarted or a)
    assert {(t, s) for _, t, s in by_a} == {("workers_down", "firing"), ("workers_down", "resolved")}
    # the partner delivered everything the dead replica decided (same fingerprints: same cluster name)
    assert by_a <= set(posted(receiver, "/b"))
    # and the dead replica's journal was not lost: each of its alerts reached its own destination once
    assert sorted(posted(receiver, "/a")) == sorted(by_a)
    assert spooled(restarted or a) == []
