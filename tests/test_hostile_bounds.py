"""Issue 19, broker data bounded at the edge: the review's blinding attacks against a real
redis-server (junk written the way any broker client can), and hypothesis fuzzing of collect's
parsers on broker-shaped data. Each asserts the safe behaviour: a small snapshot line, no crash,
and the alert the junk tried to hide."""

from __future__ import annotations

import base64
import threading
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorman.bounds import (
    MAX_HEAD_BYTES,
    MAX_QUEUES,
    MAX_SNAPSHOT_BYTES,
    MAX_WORKERS,
    bound_snapshot,
    depth_over,
)
from doorman.brokers.redis.events import parse_event
from doorman.brokers.redis.keys import Keys
from doorman.brokers.redis.pidbox import _decode_reply, _task
from doorman.brokers.redis.queues import parse_message
from tests.support.process import cli, records

KEYS = Keys()
SEP = b"\x06\x16"
ENV = {"DOORMAN_CONFIG": ""}


def collect(url: str) -> bytes:
    p = cli("doorman-collect", "--once", "--redis-url", url)
    assert p.returncode == 0, p.stderr
    [line] = p.stdout.splitlines()
    assert len(line) < MAX_SNAPSHOT_BYTES
    return p.stdout


def alert_types(snapshot: bytes, **env: str) -> list[str]:
    out = cli("doorman-analyze", input=snapshot, env={**ENV, **env})
    return [a["alert_type"] for a in records(out.stdout)]


@pytest.mark.slow
def test_a_17_mib_task_header_cannot_hide_workers_down(redis_server):
    """PoC: one 17 MiB `task` header at a queue's head made a snapshot over analyze's 16 MiB line
    limit: skipped, so workers_down stayed silent with tasks pending."""
    c = redis_server.client()
    c.lpush("celery", orjson.dumps({"headers": {"id": "big", "task": "x" * (17 * 1024 * 1024)}}))  # next out
    c.lpush("celery", orjson.dumps({"headers": {"id": "t1", "task": "x"}}))
    snap = collect(redis_server.url)
    q = records(snap)[0]["queues"]["celery"]
    assert q["pending"] == 2 and q["oldest"]["unparseable"] is True  # over the budget: not parsed
    assert "workers_down" in alert_types(snap)


@pytest.mark.slow
def test_the_head_budget_bounds_what_crosses_the_network(redis_server):
    """LINDEX has no GETRANGE: the head is read inside the server (EVAL_RO) and only its size comes
    back when over the budget. The broker's own byte counter proves the client never got it."""
    c = redis_server.client()
    c.lpush("celery", b"{" + b" " * (50 * 1024 * 1024) + b"}")
    before = c.info("stats")["total_net_output_bytes"]
    collect(redis_server.url)
    sent = c.info("stats")["total_net_output_bytes"] - before
    assert sent < 2 * MAX_HEAD_BYTES + 256 * 1024, sent


@pytest.mark.slow
def test_150k_fake_worker_bindings_cannot_hide_workers_down(redis_server):
    """PoC: 150k fake pidbox bindings made a snapshot line over 16 MiB (and cost 500+ MiB)."""
    c = redis_server.client()
    for start in range(0, 150_000, 50_000):
        c.sadd(KEYS.pidbox_binding, *[SEP + SEP + f"fake{i}@evil.celery.pidbox".encode()
                                      for i in range(start, start + 50_000)])
    c.lpush("celery", orjson.dumps({"headers": {"id": "t1", "task": "x"}}))
    snap = collect(redis_server.url)
    s = records(snap)[0]
    assert len(s["workers"]) <= MAX_WORKERS and s["pending_tasks"] == 1
    assert "workers_down" in alert_types(snap)


@pytest.mark.slow
def test_thousands_of_fake_queues_are_truncated_and_the_real_queue_still_alerts(redis_server):
    """PoC: 200k fake queues took 15.7 s and 885 MiB. Read within a budget, marked `truncated`;
    the configured queue is always read, so the pending work still raises its alert."""
    c = redis_server.client()
    names = [f"junk{i:06d}".encode() for i in range(20_000)]
    c.sadd(b"_kombu.binding.celery", *[q + SEP + SEP + q for q in names])
    pipe = c.pipeline(transaction=False)
    for q in names[:3000]:
        pipe.lpush(q, b"{}")
    for i in range(50):
        pipe.lpush("celery", orjson.dumps({"headers": {"id": f"t{i}", "task": "x"}}))
    pipe.execute()
    snap = collect(redis_server.url)
    s = records(snap)[0]
    assert len(s["queues"]) <= MAX_QUEUES and s["queues"]["celery"]["pending"] == 50
    assert s["truncated"]["queues"]["total"] > MAX_QUEUES
    assert s["pending_tasks"] >= 50 and alert_types(snap) == ["workers_down"]  # the incident, one page


def test_long_names_are_capped_and_stay_distinct(redis_server):
    c = redis_server.client()
    long = [b"q" * 5000 + b"A", b"q" * 5000 + b"B"]
    for q in long:
        c.sadd(b"_kombu.binding.celery", q + SEP + SEP + q)
        c.lpush(q, b"{}")
    s = records(collect(redis_server.url))[0]
    capped = [n for n in s["queues"] if n.startswith("qqq")]
    assert len(capped) == 2 and all(len(n) <= 200 for n in capped)


class FakeWorker:
    """Any broker client can answer a control request: subscribe to the pidbox channel and push a
    reply of its choosing to the reply queue the request names."""

    def __init__(self, client, reply: bytes):
        self.client, self.reply = client, reply
        self.stop = threading.Event()
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(KEYS.pidbox_channel)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            msg = self.pubsub.get_message(timeout=0.1)
            if not msg:
                continue
            body = orjson.loads(base64.b64decode(orjson.loads(msg["data"])["body"]))
            oid, ticket = body["reply_to"]["routing_key"], body["ticket"]
            envelope = {"body": base64.b64encode(self.reply.replace(b"TICKET", ticket.encode())).decode(),
                        "headers": {"ticket": ticket}, "properties": {"body_encoding": "base64"}}
            self.client.lpush(KEYS.reply_queue(oid), orjson.dumps(envelope))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.pubsub.close()


@pytest.mark.slow
@pytest.mark.parametrize("reply", [
    b'{"fake@evil": [{"id": ' + b"[" * 250 + b'"x"' + b"]" * 250 + b', "name": "t"}]}',
    b"{" + b",".join(b'"n%d@evil": []' % i for i in range(200_000)) + b"}",
], ids=["task id nested 250 deep", "200k worker names"])
def test_a_forged_active_reply_cannot_crash_or_bloat_collect(redis_server, reply):
    """PoC: a task id nested ~250 deep crashed collect, analyze and notify (`Recursion limit
    reached`); a fake worker answering `active` with 200k names made a line over 16 MiB."""
    c = redis_server.client()
    c.lpush("celery", orjson.dumps({"headers": {"id": "t1", "task": "x"}}))
    fake = FakeWorker(redis_server.client(), reply)
    try:
        time.sleep(0.2)
        snap = collect(redis_server.url)
    finally:
        fake.close()
    s = records(snap)[0]
    assert s["redis_connected"] is True and s["error"] is None and len(s["workers"]) <= MAX_WORKERS
    assert not depth_over(s, 12)
    assert alert_types(snap)  # analyze reads it and alerts (no live worker: workers_down)


# ------------------------------------------------------------------ fuzzing collect's parsers

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
HEADERS = st.fixed_dictionaries({}, optional={"id": JSON, "task": JSON, "published_at": JSON, "x": JSON})
MESSAGE = st.fixed_dictionaries({}, optional={"headers": HEADERS | JSON, "properties": JSON, "body": JSON})


def wire(body: bytes, b64: bool = True) -> bytes:
    return orjson.dumps({"body": base64.b64encode(body).decode() if b64 else body.decode("utf-8", "replace"),
                         "headers": {"ticket": "t"}, "properties": {"body_encoding": "base64" if b64 else None}})


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(MESSAGE.map(orjson.dumps), st.binary(max_size=200), JSON.map(lambda v: orjson.dumps(v))))
def test_queue_heads_never_crash_the_parser(raw):
    p = parse_message(raw, "published_at")
    assert p.task_id is None or isinstance(p.task_id, str)
    assert p.task_name is None or isinstance(p.task_name, str)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON.map(lambda v: wire(orjson.dumps(v))), st.binary(max_size=200),
                 st.dictionaries(st.text(max_size=8), st.lists(JSON, max_size=3), max_size=4)
                 .map(lambda v: wire(orjson.dumps(v)))))
def test_pidbox_replies_and_events_never_crash_the_parsers(raw):
    ticket, data = _decode_reply(raw)
    for node, tasks in data.items():
        for t in tasks if isinstance(tasks, list) else ():
            if isinstance(t, dict):
                orjson.dumps(_task(node, t, 1.8e9))
    event = parse_event(raw)
    assert event is None or isinstance(event["hostname"], str)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queues=st.dictionaries(st.text(max_size=300), JSON, max_size=6),
       workers=st.lists(st.fixed_dictionaries({"name": JSON}, optional={"alive": JSON}), max_size=6),
       active=st.lists(st.dictionaries(st.sampled_from(["task_id", "task_name", "worker", "queue", "pid",
                                                        "runtime_seconds"]), JSON), max_size=6))
def test_any_broker_shaped_snapshot_is_bounded_and_serializable(queues, workers, active):
    snap = bound_snapshot({"queues": queues, "workers": workers, "active": active}, max_queues=3,
                          max_workers=2, max_active=2)
    orjson.dumps(snap, option=orjson.OPT_NON_STR_KEYS, default=str)
    assert len(snap["workers"]) <= 2 and len(snap["active"]) <= 2
    assert all(len(n) <= 200 for n in snap["queues"])
    for t in snap["active"]:
        assert t["task_id"] is None or isinstance(t["task_id"], str)


def test_a_deeply_nested_line_is_a_bad_line_and_the_next_alert_is_delivered(tmp_path):
    """PoC: an alert nested ~300 deep crashed notify (`Recursion limit reached`) and the alerts
    after it were lost. Now it is one reported bad line; the stream goes on."""
    from tests.support.notify import alert, notify_env
    from tests.support.receiver import Receiver

    deep = orjson.dumps(alert(1, details={"x": "DEEP"})).replace(b'"DEEP"', b"[" * 300 + b"1" + b"]" * 300)
    receiver = Receiver()
    try:
        p = cli("doorman-notify", input=deep + b"\n" + orjson.dumps(alert(2)) + b"\n",
                env=notify_env(tmp_path, hook=receiver.url("/hook")))
        err = p.stderr.decode()
        assert "<stdin>:1: nested deeper than 64 levels; skipped" in err and "Traceback" not in err
        assert [r.json["subject"] for r in receiver.delivered("/hook")] == ["queue:q2"]
    finally:
        receiver.close()
    snap = orjson.dumps({"v": 1, "kind": "snapshot", "x": "DEEP"}).replace(b'"DEEP"', b"[" * 300 + b"]" * 300)
    a = cli("doorman-analyze", input=snap + b"\n", env=ENV)
    assert "nested deeper than 64 levels" in a.stderr.decode() and "Traceback" not in a.stderr.decode()
