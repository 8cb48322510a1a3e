"""Celery's worker events on Redis: a pattern subscription to the `celeryev` fanout channel.

Workers publish `worker-heartbeat` every `freq` seconds (2 s by default, even without `-E`);
nothing is stored, so only a live subscriber sees them. What they mean for liveness is decided in
`doorman.collect.heartbeats`, the same for every broker.
"""

from __future__ import annotations

import threading
from typing import cast

import redis

from doorman.bounds import MAX_EVENT_BYTES
from doorman.brokers.base import WorkerEvent, WorkerEventListener
from doorman.brokers.redis.keys import Keys
from doorman.brokers.redis.wire import UNREADABLE, unwrap

POLL = 0.5  # seconds between looks at `stop` while no event arrives


def parse_event(raw: bytes) -> WorkerEvent | None:
    """The event dict inside a kombu envelope, or None for anything unreadable."""
    try:
        _msg, event = unwrap(raw, MAX_EVENT_BYTES)  # refused before parsing when oversized
    except UNREADABLE:
        return None
    ok = isinstance(event, dict) and isinstance(event.get("hostname"), str)
    return cast(WorkerEvent, event) if ok else None


def follow(client: redis.Redis, keys: Keys, listener: WorkerEventListener, stop: threading.Event) -> None:
    """Report every worker event to `listener` until `stop` is set; raise when the connection fails."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.psubscribe(keys.worker_events_pattern)
        listener.subscribed()
        while not stop.is_set():
            msg = pubsub.get_message(timeout=POLL)
            if msg and msg.get("type") == "pmessage":
                event = parse_event(msg["data"])
                if event:
                    listener.received(event)
    finally:
        try:
            pubsub.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not hide why it died
            pass
