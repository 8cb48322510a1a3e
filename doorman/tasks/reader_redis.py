"""Task and worker events on Redis: ONE plain pattern subscription to the `celeryev` fanout.

Celery publishes every event with a bare PUBLISH to `<global_keyprefix>/<db>.celeryev/<routing key>`
(kombu's `fanout_prefix` and `fanout_patterns`); nothing is stored. Doorman PSUBSCRIBEs to
`…/<db>.celeryev/*` and nothing else: no `_kombu.binding.celeryev` member (Celery's own receiver
adds one), no broadcast. Worker events go to the heartbeat listener, task events to the counter
(`doorman.tasks.counts`); the subscription breaking raises, so the caller reconnects with backoff
and the counter accounts for the gap (`tasks.lost`).
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from doorman.brokers.base import WorkerEventListener
from doorman.brokers.redis.events import parse_event
from doorman.brokers.redis.keys import EVENT_EXCHANGE, Keys
from doorman.tasks.envelope import Undecodable, redis_message

POLL = 0.5  # seconds between looks at `stop` while no event arrives
BURST = 256  # messages read back to back before looking at `stop` again


def follow(client: redis.Redis, keys: Keys, listener: WorkerEventListener, stop: threading.Event,
           tasks: Any = None) -> None:
    """Report worker events to `listener` and, when `tasks` (a `TaskCounts`) is given, task events to
    it, until `stop` is set; raise when the connection fails. Without `tasks` only `worker.*` is read."""
    if tasks is not None and tasks.denied:
        tasks = None  # the ACL allows only `worker.*`: heartbeats still count (docs/security.md)
    base = keys.fanout_channel(EVENT_EXCHANGE).encode("utf-8", "surrogateescape") + b"/"
    worker_prefix, task_prefix = base + b"worker.", base + b"task."
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    feed = tasks.feed if tasks is not None else None
    try:
        pubsub.psubscribe(keys.events_pattern if tasks is not None else keys.worker_events_pattern)
        if pubsub.connection is not None:
            # redis-py would reconnect and resubscribe by itself, silently: every event in between
            # lost and no gap said. Without its retries the break raises, and is counted.
            pubsub.connection.retry = Retry(NoBackoff(), 0)
        listener.subscribed()
        if tasks is not None:
            tasks.subscribed()
        get = pubsub.get_message
        while not stop.is_set():
            msg = get(timeout=POLL)
            n = 0
            while msg is not None:
                n += 1
                if msg.get("type") == "pmessage":
                    channel, data = msg["channel"], msg["data"]
                    if type(channel) is str:
                        channel = channel.encode("utf-8", "surrogateescape")
                    if channel.startswith(task_prefix):
                        if feed is not None:
                            try:
                                feed(redis_message(data))
                            except Undecodable:
                                tasks.bad_message()
                    elif channel.startswith(worker_prefix):
                        event = parse_event(data)
                        if event:
                            listener.received(event)
                msg = get(timeout=0) if n < BURST else None  # at BURST: look at `stop`, then read on
    except redis.ResponseError as e:
        if tasks is not None and "NOPERM" in str(e).upper():
            tasks.deny(f"the Redis ACL refuses {keys.events_pattern}: task events are not read, "
                       "heartbeats still are (allow `&" + keys.events_pattern + "`, docs/security.md)")
        raise
    finally:
        try:
            pubsub.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not hide why it died
            pass
