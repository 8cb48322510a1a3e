"""Passive `queue_declare`s, pipelined on one channel: a queue's ready count and consumer count as
RabbitMQ holds them now (the management API's are up to `collect_statistics_interval` old), and
whether a worker's pidbox queue still exists, which is whether its connection does.

A passive declare changes nothing and needs no permission. Up to `WINDOW` declares are written
before the first answer is read, so a hundred queues cost about one round trip's latency, not a
hundred. A queue that does not exist (404) or is exclusive to another connection (405, a live
Celery 5.5+ worker's pidbox) makes the server close the channel: py-amqp reopens it (same channel
id) and the declares written after the failing one, which the server discarded, are written again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import amqp
from amqp import spec

WINDOW = 100  # declares in flight on the channel at most
DECLARE_ARGS = "BsbbbbbF"  # ticket, queue, passive, durable, exclusive, auto_delete, nowait, arguments

State = Literal["ok", "missing", "locked"]


@dataclass(frozen=True)
class Probe:
    """One queue as a passive declare found it: `ok` (counts known), `missing` (404), or `locked`
    (405: exclusive to another connection, which therefore is open; counts unknown)."""

    state: State
    ready: int | None = None
    consumers: int | None = None


MISSING, LOCKED = Probe("missing"), Probe("locked")


def channel(conn: amqp.Connection, ch: amqp.Channel | None) -> amqp.Channel:
    """`ch` when it is still open, else a new channel of `conn`."""
    return ch if ch is not None and ch.is_open else conn.channel()


MAX_NAME = 255  # bytes: AMQP's shortstr; a longer name cannot be a queue's


def probe(ch: amqp.Channel, names: Sequence[str]) -> dict[str, Probe]:
    """{queue: Probe} for every name, in as few round trips as the errors allow. A name no queue
    can have (over 255 bytes: broker data is hostile) is missing, never sent."""
    out: dict[str, Probe] = {q: MISSING for q in names if len(q.encode("utf-8", "surrogateescape")) > MAX_NAME}
    names = [q for q in names if q not in out]
    i = 0
    while i < len(names):
        batch = names[i:i + WINDOW]
        for q in batch:
            ch.send_method(spec.Queue.Declare, DECLARE_ARGS, (0, q, True, False, False, False, False, {}))
        done = 0
        for q in batch:
            done += 1
            try:
                _name, ready, consumers = ch.wait(spec.Queue.DeclareOk, returns_tuple=True)
            except amqp.exceptions.NotFound:
                out[q] = MISSING
                break  # the channel was closed (and reopened): the rest of the batch was discarded
            except amqp.exceptions.ResourceLocked:
                out[q] = LOCKED
                break
            out[q] = Probe("ok", int(ready), int(consumers))
        i += done
    return out


def worker_there(p: Probe | None) -> bool:
    """Whether a worker's pidbox queue says its connection is open: exclusive to it (405, Celery
    5.5+), or auto-delete with a consumer (Celery before 5.5). Gone (404) or unconsumed: not."""
    return p is not None and (p.state == "locked" or (p.state == "ok" and bool(p.consumers)))
