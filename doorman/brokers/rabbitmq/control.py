"""Ask every worker which queues it consumes, its pool size and how many tasks it has run
(Celery's `active_queues` and `stats` on the `celery.pidbox` exchange), and tie each worker to
its task consumers in the management API's consumer list (`/api/consumers/<vhost>`).

The request/reply path is `wire.active_tasks`'s: replies come to a queue of Doorman's own
(exclusive, auto-delete) through the default exchange, so no binding is made.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import amqp
import orjson

from doorman.bounds import MAX_REPLY_BYTES
from doorman.brokers.base import WorkerInfo
from doorman.brokers.rabbitmq import wire
from doorman.brokers.redis.wire import active_queues, mapping

MAX_WORKERS = 10_000
PIDBOX_SUFFIX = ".celery.pidbox"


def broadcast(conn: amqp.Connection, method: str, expect: int | None, timeout: float) -> dict[str, Any]:
    """{worker: reply} of Celery's `method` broadcast; waits for `expect` replies (the whole
    `timeout` when unknown)."""
    if expect == 0:
        return {}
    ch = conn.channel()
    queue = wire.own_queue("reply")
    ticket = str(uuid.uuid4())
    replies: dict[str, Any] = {}
    try:
        ch.queue_declare(queue=queue, durable=False, exclusive=True, auto_delete=True)

        def on_reply(msg: amqp.Message) -> None:
            headers = msg.properties.get("application_headers") or {}
            if headers.get("ticket") == ticket:
                replies.update(mapping(wire._json(msg.body, MAX_REPLY_BYTES)))

        ch.basic_consume(queue=queue, no_ack=True, callback=on_reply)
        body = orjson.dumps({
            "method": method, "arguments": {}, "destination": None, "pattern": None, "matcher": None,
            "ticket": ticket, "reply_to": {"exchange": "", "routing_key": queue},
        })
        sent = time.time()
        try:
            ch.basic_publish(amqp.Message(body, content_type="application/json", content_encoding="utf-8",
                                          application_headers={"clock": 1, "expires": sent + timeout},
                                          delivery_mode=1),
                             exchange=wire.PIDBOX_EXCHANGE, routing_key="")
            deadline = time.monotonic() + timeout
            while expect is None or len(replies) < expect:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    conn.drain_events(timeout=min(left, wire.POLL))
                except TimeoutError:
                    continue
        except amqp.exceptions.NotFound:  # no celery.pidbox: no worker ever listened
            return {}
    finally:
        wire._close_channel(ch)
    return replies


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def worker_info(conn: amqp.Connection, expect: int | None, timeout: float,
                task_consumers: dict[str, int] | None) -> dict[str, WorkerInfo]:
    """{worker: its queues, pool size, tasks processed, task consumers on its connection} of the
    workers that answered (`task_consumers` None: the consumer list was not read)."""
    queues = broadcast(conn, "active_queues", expect, timeout)
    stats = broadcast(conn, "stats", expect, timeout)
    out: dict[str, WorkerInfo] = {}
    for node in list(set(queues) | set(stats))[:MAX_WORKERS]:
        names, exchanges = active_queues(queues.get(node))
        st = mapping(stats.get(node))
        totals = mapping(st.get("total"))
        counts = [v for v in (_int(x) for x in totals.values()) if v is not None]
        name = str(node)
        out[name] = WorkerInfo(names, _int(mapping(st.get("pool")).get("max-concurrency")),
                               sum(counts) if node in stats else None, exchanges,
                               task_consumers.get(name) if task_consumers is not None else None)
    return out


def task_consumers(rows: Iterable[tuple[str, str]], internal: Any) -> dict[str, int]:
    """{worker: task consumers on its connection} from (queue, connection name) consumer rows: a
    worker is named by its pidbox queue's consumer, and every consumer of a task queue (not
    `internal`) on that same connection is one of its task consumers. A worker whose pidbox
    consumer is not listed yet (RabbitMQ lists a new consumer on its statistics timer) is absent:
    unknown, not zero."""
    rows = list(rows)
    conn_of = {q[: -len(PIDBOX_SUFFIX)]: c for q, c in rows if q.endswith(PIDBOX_SUFFIX)}
    per_conn: dict[str, int] = {}
    for q, c in rows:
        if not internal(q):
            per_conn[c] = per_conn.get(c, 0) + 1
    return {w: per_conn.get(c, 0) for w, c in conn_of.items()}
