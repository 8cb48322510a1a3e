"""kombu's JSON message envelope on Redis: what control requests, replies and events travel in."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson

from doorman.bounds import MAX_REPLY_BYTES, MAX_REPLY_CONTAINERS, MAX_REPLY_ITEMS, check_wire, depth_over
from doorman.brokers.redis.keys import CONTROL_EXCHANGE

UNREADABLE = (ValueError, KeyError, TypeError, AttributeError)  # what `unwrap` raises on garbage


def envelope(body: dict[str, Any], expires: float) -> bytes:
    """A control request as kombu publishes it on the pidbox exchange."""
    return orjson.dumps({
        "body": base64.b64encode(orjson.dumps(body)).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"clock": 1, "expires": expires},
        "properties": {
            "delivery_mode": 2,
            "delivery_info": {"exchange": CONTROL_EXCHANGE, "routing_key": ""},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    })


def unwrap(raw: bytes | str, max_bytes: int = MAX_REPLY_BYTES,
           max_containers: int | None = MAX_REPLY_CONTAINERS,
           max_items: int | None = MAX_REPLY_ITEMS) -> tuple[dict[str, Any], Any]:
    """(envelope, decoded JSON body) of one message; raises one of UNREADABLE when it cannot be read,
    is over `max_bytes`, `max_containers` or `max_items` (checked before parsing) or nests deeper than
    `MAX_DEPTH` (doorman.bounds)."""
    check_wire(raw, max_bytes, max_containers, max_items)
    msg = orjson.loads(raw)
    body = msg["body"]
    if (msg.get("properties") or {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    check_wire(body, max_bytes, max_containers, max_items)
    data = orjson.loads(body)
    if depth_over(data):
        raise ValueError("nested too deep")
    return msg, data


def mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


MAX_WORKER_QUEUES = 1000  # per worker: bound what a hostile reply can make us hold


def active_queues(listed: Any) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """A worker's `active_queues` reply (on either broker): the queue names it consumes (None: no
    list came) and the exchanges they are bound through, sorted, bounded, non-strings dropped."""
    if not isinstance(listed, list):
        return None, ()
    named = [q for q in listed[:MAX_WORKER_QUEUES] if isinstance(q, dict) and isinstance(q.get("name"), str)]
    names = tuple(sorted({q["name"] for q in named}))
    exchanges = tuple(sorted({x for q in named if isinstance(x := mapping(q.get("exchange")).get("name"), str) and x}))
    return names, exchanges
