"""Task and worker events on RabbitMQ: one exclusive, auto-delete queue of Doorman's own.

The queue (`doorman.ev.<random>`) is bound to the `celeryev` topic exchange with `worker.#` and,
when task events are counted, `task.#`; RabbitMQ deletes it (and its bindings) when Doorman's
connection closes, `kill -9` included. The exchange is only ever passively declared: when no
worker ever started it does not exist, the bind fails and the caller retries. Messages are
transient and consumed without acknowledgement; a per-message TTL bounds what waits in the queue
while the reader is behind (events older than that are lost, and the heartbeats' `processed`
counters show it in `tasks.lost`).
"""

from __future__ import annotations

import threading
from typing import Any

import amqp

from doorman.brokers.base import WorkerEventListener
from doorman.brokers.rabbitmq.wire import (
    EVENT_EXCHANGE,
    POLL,
    WORKER_EVENTS,
    _close_channel,
    own_queue,
    parse_event,
)
from doorman.tasks.envelope import Undecodable, amqp_body

TASK_EVENTS = "task.#"
TTL_MS = 60_000  # what a slow reader may fall behind before RabbitMQ drops events
MAX_LENGTH = 1_000_000  # messages waiting in Doorman's queue at most (bounds the broker's memory)
PREFETCH = 2000


def follow(conn: amqp.Connection, listener: WorkerEventListener, stop: threading.Event, tasks: Any = None) -> None:
    """Report worker events to `listener` and task events to `tasks` (a `TaskCounts`, or None to read
    only `worker.#`) until `stop` is set. Raises when the exchange does not exist yet or the
    connection fails: the caller retries."""
    ch = conn.channel()
    queue = own_queue("ev")
    ch.exchange_declare(EVENT_EXCHANGE, "topic", passive=True)
    ch.queue_declare(queue=queue, durable=False, exclusive=True, auto_delete=True,
                     arguments={"x-message-ttl": TTL_MS, "x-max-length": MAX_LENGTH})
    ch.queue_bind(queue=queue, exchange=EVENT_EXCHANGE, routing_key=WORKER_EVENTS)
    if tasks is not None:
        ch.queue_bind(queue=queue, exchange=EVENT_EXCHANGE, routing_key=TASK_EVENTS)
    feed = tasks.feed if tasks is not None else None

    def on_message(msg: amqp.Message) -> None:
        key = (msg.delivery_info or {}).get("routing_key") or ""
        if key.startswith("task."):
            if feed is not None:
                try:
                    feed(amqp_body(msg.body, msg.properties.get("content_type")))
                except Undecodable:
                    tasks.bad_message()
            return
        event = parse_event(msg.body)
        if event:
            listener.received(event)

    ch.basic_qos(0, PREFETCH, False)
    ch.basic_consume(queue=queue, no_ack=True, callback=on_message)
    listener.subscribed()
    if tasks is not None:
        tasks.subscribed()
    while not stop.is_set():
        try:
            conn.drain_events(timeout=POLL)
        except TimeoutError:
            continue
    _close_channel(ch)
