"""What Doorman says over AMQP 0-9-1 (py-amqp, the client kombu's `pyamqp` transport uses).

Doorman never consumes from a task queue, never requeues, never declares a durable queue and never
declares or changes an exchange. The only queues it declares are its own, exclusive and
auto-delete (`doorman.<purpose>.<random>`): RabbitMQ deletes them when Doorman's connection
closes, `kill -9` included. Everything else is passive: `queue_declare(passive=True)` reads a
queue's ready count, and a worker's broadcast reply comes straight to Doorman's queue through the
default exchange, so no binding is made for it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import amqp
import orjson

from doorman.bounds import MAX_EVENT_BYTES, MAX_REPLY_BYTES, ReplyBudget, check_reply, check_wire, depth_over
from doorman.brokers.base import ActiveTask, ActiveTasks, WorkerEvent, WorkerEventListener
from doorman.brokers.rabbitmq.urls import Target
from doorman.brokers.redis.pidbox import _task
from doorman.brokers.redis.wire import mapping

EVENT_EXCHANGE = "celeryev"
WORKER_EVENTS = "worker.#"  # heartbeats, online, offline: never task.#, whose volume is the tasks'
PIDBOX_EXCHANGE = "celery.pidbox"
POLL = 0.5  # seconds between looks at `stop` while no event arrives


def own_queue(purpose: str) -> str:
    return f"doorman.{purpose}.{uuid.uuid4().hex}"


def connect(t: Target, timeout: float, ssl: dict[str, object] | bool) -> amqp.Connection:
    conn = amqp.Connection(
        host=t.address, userid=t.user, password=t.password, virtual_host=t.vhost, ssl=ssl,
        connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout, heartbeat=0,
        client_properties={"connection_name": "celery-doorman", "product": "celery-doorman"},
    )
    conn.connect()
    return conn


def close(conn: amqp.Connection | None) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a dead connection: its exclusive queues are gone with it
        try:
            conn.collect()
        except Exception:  # noqa: BLE001
            pass


def abandon(conn: amqp.Connection | None) -> None:
    """Drop a connection that just failed (timed out, reset) without AMQP's close handshake: the
    server that did not answer a round trip would not answer `connection.close` either, and waiting
    for it cost a second timeout inside the poll that should already have reported the stall.
    Closing the socket is enough for RabbitMQ to drop the connection and its exclusive queues."""
    if conn is None:
        return
    try:
        conn.collect()
    except Exception:  # noqa: BLE001 - nothing left to do for a socket already gone
        pass


def _json(body: object, max_bytes: int, reply: bool = False) -> Any:
    """A wire message as JSON, or None: over its budgets (a pidbox `reply`'s are `check_reply`'s;
    checked before parsing), not JSON, or nested too deep (`doorman.bounds`, as on Redis)."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        return None
    raw = body if isinstance(body, bytes) else bytes(body)
    try:
        check_reply(raw) if reply else check_wire(raw, max_bytes)
        value = orjson.loads(raw)
    except (ValueError, orjson.JSONDecodeError):
        return None
    return None if depth_over(value) else value


def parse_event(body: object) -> WorkerEvent | None:
    event = _json(body, MAX_EVENT_BYTES)
    ok = isinstance(event, dict) and isinstance(event.get("hostname"), str)
    return cast(WorkerEvent, event) if ok else None


def passive_depth(conn: amqp.Connection, names: Sequence[str]) -> dict[str, tuple[int, int] | None]:
    """{queue: (ready messages, consumers)} from passive declares; None for a queue that does not
    exist. A missing queue closes the channel (404), so each of those costs a new channel."""
    out: dict[str, tuple[int, int] | None] = {}
    ch = conn.channel()
    try:
        for q in names:
            try:
                _name, ready, consumers = ch.queue_declare(queue=q, passive=True)
                out[q] = (int(ready), int(consumers))
            except amqp.exceptions.NotFound:
                out[q] = None
                ch = conn.channel()
    finally:
        _close_channel(ch)
    return out


def _close_channel(ch: Any) -> None:
    try:
        if ch.is_open:
            ch.close()
    except Exception:  # noqa: BLE001 - closing: the connection's own error says what happened
        pass


def follow(conn: amqp.Connection, listener: WorkerEventListener, stop: threading.Event) -> None:
    """Bind a queue of Doorman's own (exclusive, auto-delete) to `celeryev` with `worker.#` and
    report every worker event to `listener` until `stop` is set. Raises when the exchange does not
    exist yet (no worker ever started) or the connection fails: the caller retries."""
    ch = conn.channel()
    queue = own_queue("ev")
    ch.queue_declare(queue=queue, durable=False, exclusive=True, auto_delete=True,
                     arguments={"x-message-ttl": 60_000})
    ch.queue_bind(queue=queue, exchange=EVENT_EXCHANGE, routing_key=WORKER_EVENTS)

    def on_message(msg: amqp.Message) -> None:
        event = parse_event(msg.body)
        if event:
            listener.received(event)

    ch.basic_consume(queue=queue, no_ack=True, callback=on_message)
    listener.subscribed()
    while not stop.is_set():
        try:
            conn.drain_events(timeout=POLL)
        except TimeoutError:
            continue
    _close_channel(ch)


def active_tasks(conn: amqp.Connection, workers: int | None, timeout: float, now: float) -> ActiveTasks:
    """Celery's `active` broadcast on `celery.pidbox`; replies come to Doorman's own exclusive queue
    (through the default exchange). Waits for `workers` replies, or the whole `timeout` when the
    number of listening workers is unknown (`None`)."""
    if workers == 0:
        return ActiveTasks(0, {})
    ch = conn.channel()
    queue = own_queue("reply")
    ticket = str(uuid.uuid4())
    replies: dict[str, list[ActiveTask]] = {}
    budget = ReplyBudget()
    try:
        ch.queue_declare(queue=queue, durable=False, exclusive=True, auto_delete=True)

        def on_reply(msg: amqp.Message) -> None:
            headers = msg.properties.get("application_headers") or {}
            if headers.get("ticket") != ticket:
                return
            # every cap of doorman.bounds, as on Redis: budgets before parsing, one node per reply,
            # nodes and tasks bounded; the parsed reply is dropped as soon as its tasks are read
            for node, tasks in budget.accept(mapping(_json(msg.body, MAX_REPLY_BYTES, reply=True))).items():
                replies[node] = ([_task(node, t, now) for t in tasks if isinstance(t, dict)]
                                 if isinstance(tasks, list) else [])

        ch.basic_consume(queue=queue, no_ack=True, callback=on_reply)
        body = orjson.dumps({
            "method": "active", "arguments": {"safe": True}, "destination": None, "pattern": None,
            "matcher": None, "ticket": ticket, "reply_to": {"exchange": "", "routing_key": queue},
        })
        sent = time.time()
        try:
            ch.basic_publish(amqp.Message(body, content_type="application/json", content_encoding="utf-8",
                                          application_headers={"clock": 1, "expires": sent + timeout},
                                          delivery_mode=1),
                             exchange=PIDBOX_EXCHANGE, routing_key="")
            deadline = time.monotonic() + timeout
            while workers is None or len(replies) < workers:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    conn.drain_events(timeout=min(left, POLL))
                except TimeoutError:
                    continue
        except amqp.exceptions.NotFound:  # no celery.pidbox: no worker ever listened
            return ActiveTasks(0, {})
    finally:
        _close_channel(ch)  # the reply queue goes with the channel's consumer (auto-delete)
    return ActiveTasks(workers if workers is not None else len(replies), replies)
