"""The task-event decoder and counter on crafted input: Celery's own envelopes (task.multi),
hostile and garbage bodies, giant names, unknown uuids, and a flood of random names (caps)."""

from __future__ import annotations

import base64
import random
import tracemalloc

import orjson
import pytest

from doorman.contract.tasks import OTHER, UNKNOWN, tasks_problem
from doorman.tasks.counts import MAX_EXCEPTIONS, TaskCounts
from doorman.tasks.envelope import Undecodable, amqp_body, exception_class, redis_message
from doorman.tasks.names import TaskMemory


def envelope(body: object, routing_key: str = "task.multi", content_type: str = "application/json") -> bytes:
    """The bytes kombu publishes on Redis for an event (Celery's EventDispatcher, JSON serializer)."""
    return orjson.dumps({
        "body": base64.b64encode(orjson.dumps(body)).decode(), "content-encoding": "utf-8",
        "content-type": content_type, "headers": {},
        "properties": {"delivery_mode": 1, "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
                       "priority": 0, "body_encoding": "base64", "delivery_tag": "x"},
    })


def ev(kind: str, uuid: str, host: str = "w1@h", ts: float = 1000.0, **fields: object) -> dict:
    return {"type": f"task-{kind}", "uuid": uuid, "hostname": host, "timestamp": ts, "clock": 1, "pid": 1,
            "utcoffset": 0, **fields}


def test_a_task_multi_batch_is_every_event_in_it():
    batch = [ev("received", f"u{i}", name="a", args="(1,)", kwargs="{}") for i in range(24)]
    assert len(redis_message(envelope(batch))) == 24
    assert len(redis_message(envelope(batch[0], "task.received"))) == 1
    assert len(amqp_body(orjson.dumps(batch), "application/json")) == 24


@pytest.mark.parametrize("raw", [
    b"", b"not json", b"[]", b"{}", b'{"body": 5}', b'{"body": "!!!", "properties": {"body_encoding": "base64"}}',
    envelope(5), envelope("text"), envelope({"a": 1}, content_type="application/x-python-serialize"),
    b"[" * 5000 + b"]" * 5000, b'{"body": "' + b"A" * (5 * 1024 * 1024) + b'"}',
])
def test_garbage_is_refused_never_raised_otherwise(raw):
    with pytest.raises(Undecodable):
        events = redis_message(raw)
        if not events:
            raise Undecodable("no events")  # `{}` envelopes a dict body? no: refused above
        raise AssertionError(f"decoded {events!r}")


def test_the_counter_skips_what_is_not_an_event_and_counts_bad_messages():
    c = TaskCounts("redis")
    c.feed(redis_message(envelope([1, "x", None, ev("succeeded", "u1", runtime=0.2), {"type": "task-sent"}])))
    c.bad_message()
    t = c.section()
    assert t["reader"] == {"broker": "redis", "subscribed": False, "events": 1, "messages": 2, "bad": 2}
    assert t["by_name"][UNKNOWN]["succeeded"] == 1  # an unknown uuid is counted, under "(unknown)"
    assert tasks_problem(t) is None


def test_args_kwargs_results_and_tracebacks_are_never_kept():
    c = TaskCounts("redis")
    secret = "hunter2-SECRET"
    c.feed([ev("received", "u1", name="t", args=f"('{secret}',)", kwargs=f"{{'p': '{secret}'}}"),
            ev("started", "u1"), ev("failed", "u1", exception=f"ValueError('{secret}')", traceback=secret),
            ev("received", "u2", name="t"), ev("succeeded", "u2", result=secret, runtime=0.1)])
    assert secret not in orjson.dumps(c.section()).decode()
    assert secret not in repr(c.memory._tasks)
    assert c.section()["by_name"]["t"]["exceptions"] == {"ValueError": 1}


def test_exception_class_is_the_class_only():
    assert exception_class("ValueError('x')") == "ValueError"
    assert exception_class("reject requeue=False: no") == "UnknownException"
    assert exception_class(None) == "UnknownException"
    assert exception_class("A" * 1000 + "(") == "UnknownException"


def test_huge_and_control_character_names_are_bounded_and_escaped():
    c = TaskCounts("redis")
    c.feed([ev("received", "u1", name="n" * 100_000, host="h\x1b[31m" + "x" * 10_000),
            ev("received", "u2", name="evil\nname\x00")])
    t = c.section()
    for name in [*t["by_name"], *t["by_worker"]]:
        assert len(name) <= 200 and name.isprintable()


def test_a_flood_of_random_names_keeps_memory_fixed():
    c = TaskCounts("redis", max_names=50, max_hostnames=20, max_series=100, name_memory=1000)
    rnd = random.Random(1)

    def flood(n: int) -> None:
        for _ in range(n // 24):
            batch = []
            for _ in range(24):
                u = f"{rnd.random()}"
                batch += [ev("received", u, host=f"w{rnd.random()}@h", name=f"t{rnd.random()}"),
                          ev("failed", u, exception=f"E{rnd.randrange(10**9)}('x')")]
            c.feed(batch)

    flood(20_000)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    flood(50_000)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    t = c.section()
    assert len(t["by_name"]) == 51 and OTHER in t["by_name"]
    assert len(t["by_worker"]) == 21 and len(t["series"]) == 101
    assert len(c.memory) <= 1000
    assert all(len(n["exceptions"]) <= MAX_EXCEPTIONS + 1 for n in t["by_name"].values())
    assert t["omitted"]["names"] > 1000 and t["omitted"]["exceptions"] > 1000
    # the sums stay exact: nothing dropped, only folded
    assert sum(n["received"] for n in t["by_name"].values()) == 70_000 // 24 * 24
    assert grown < 3 * 1024 * 1024  # the folded-key memory is bounded too (MAX_OMITTED_MEMORY)


def test_the_uuid_memory_forgets_the_oldest_first():
    m = TaskMemory(3)
    for u in "abcd":
        m.remember(u, u.upper())
    assert m.get("a") is None and m.get("d") == ["D", None, None, None, False, None, None] and m.forgotten == 1


def test_final_failures_are_the_last_try_after_retries_and_waits_come_from_times():
    c = TaskCounts("redis")
    c.feed([ev("sent", "u", host="p@h", ts=10.0, name="t", queue="q"),
            ev("received", "u", ts=11.0, name="t"), ev("started", "u", ts=13.0), ev("retried", "u", ts=13.5),
            ev("sent", "u", host="w1@h", ts=14.0, name="t", queue="q"),
            ev("received", "u", ts=14.5, name="t", retries=1), ev("started", "u", ts=15.0),
            ev("failed", "u", ts=16.0, exception="KeyError('k')")])
    t = c.section()
    n = t["by_name"]["t"]
    assert (n["failed"], n["final_failures"], n["retried"]) == (1, 1, 1)
    assert n["wait"]["count"] == 2 and n["wait"]["sum"] == pytest.approx(2.0 + 0.5)
    assert n["queue_wait"]["count"] == 2 and n["queue_wait"]["sum"] == pytest.approx(3.0 + 1.0)
    assert t["by_queue"]["q"]["failed"] == 1 and t["by_worker"]["p@h"]["sent"] == 1


def test_events_off_partial_and_lost_from_processed():
    c = TaskCounts("redis")
    for processed in (0, 5, 5):
        c.heartbeat("quiet@h", processed)
    assert c.section()["events"] == "off" and c.section()["silent_workers"] == ["quiet@h"]
    c.feed([ev("received", "u", host="loud@h", name="t"), ev("started", "u", host="loud@h")])
    for processed in (0, 3, 3):  # three accepted, one started event seen: two lost
        c.heartbeat("loud@h", processed)
    t = c.section()
    assert t["events"] == "partial" and t["silent_workers"] == ["quiet@h"]
    assert t["lost"]["by_worker"] == {"loud@h": 2} and t["lost"]["total"] == 2
    c.subscribed()
    assert c.section()["lost"]["gaps"] == 0  # starting is no gap
    c.unsubscribed()
    c.subscribed()
    assert c.section()["lost"]["gaps"] == 1


def test_a_start_that_overtakes_its_task_sent_still_gets_its_queue_wait():
    """The publisher's task-sent and the worker's events race: a start seen first waits for it."""
    c = TaskCounts("redis")
    c.feed([ev("sent", "u0", host="pub@h", ts=990.0, name="t", queue="celery"),  # sent events exist
            ev("received", "u0", ts=991.0, name="t"), ev("started", "u0", ts=992.0),
            ev("succeeded", "u0", ts=993.0, runtime=1.0)])
    c.feed([ev("received", "u1", ts=1001.0, name="t"), ev("started", "u1", ts=1002.0),
            ev("succeeded", "u1", ts=1003.0, runtime=1.0)])
    assert c.section()["by_name"]["t"]["queue_wait"]["count"] == 1  # u1's sent not seen yet
    c.feed([ev("sent", "u1", host="pub@h", ts=1000.0, name="t", queue="celery")])
    t = c.section()["by_name"]["t"]
    assert t["queue_wait"]["count"] == 2 and t["queue_wait"]["sum"] == 2.0 + 2.0
    assert c.memory.get("u1") is None  # done with it: forgotten once its task-sent came


def test_exception_messages_are_kept_only_when_asked_masked_escaped_and_bounded():
    """Off by default (a message can hold users' data); on, the last failure per task, with URL
    passwords and Doorman's own secrets masked, control bytes escaped, 200 characters at most."""
    from doorman.config.load import make_config

    failing = [ev("received", "u1", name="app.charge"), ev("started", "u1"),
               ev("failed", "u1", exception="ConnectionError('redis://:hunter2@db:6379/0 down, token "
                                             "s3cret-token \x1b[31m" + "x" * 500 + "')")]
    off = TaskCounts("redis")
    off.feed(failing)
    assert "last_exception" not in off.section(2000.0)["by_name"]["app.charge"]

    cfg = make_config(task_exception_messages=True, broker_url="redis://:s3cret-token@127.0.0.1:6379/0")
    on = TaskCounts.of(cfg, "redis")
    on.feed(failing)
    last = on.section(2000.0)["by_name"]["app.charge"]["last_exception"]
    assert last["class"] == "ConnectionError" and last["at"] == "1970-01-01T00:16:40.000Z"
    msg = last["message"]
    assert msg.startswith("ConnectionError('redis://:***@db:6379/0 down, token ") and len(msg) == 200
    assert "hunter2" not in msg and "s3cret-token" not in msg and "\x1b" not in msg and "\\x1b" in msg
    assert tasks_problem(on.section(2000.0)) is None
