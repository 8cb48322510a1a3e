"""Ask live workers what they run, speaking Celery's pidbox protocol on raw Redis.

Why not `app.control.inspect()`: its client runs kombu's `restore_visible` with the *monitor's*
visibility timeout, which can requeue other workers' unacked tasks, and it leaves a
`_kombu.binding_deadlines` entry behind. Here the request is one PUBLISH on the pidbox channel;
PUBLISH returns how many workers are subscribed, so we wait for exactly that many replies (no
idle timeout on a healthy system, no wait at all when no worker is up). Our temporary reply
binding and reply list are removed before returning, even on error.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from doorman.bounds import MAX_REPLY_NODES, ReplyBudget
from doorman.brokers.base import ActiveTask, ActiveTasks, decode, encode
from doorman.brokers.redis.keys import REPLY_EXCHANGE, Keys
from doorman.brokers.redis.wire import UNREADABLE, envelope, mapping, unwrap
from doorman.timefmt import iso, sane_epoch

MAX_REPLIES = MAX_REPLY_NODES  # nodes kept from one request's replies (doorman.bounds, both brokers)


def _decode_reply(raw: bytes | str) -> tuple[str | None, dict[str, Any]]:
    """(ticket, {node: reply}) of one reply message; (None, {}) when it cannot be read."""
    try:
        msg, data = unwrap(raw)
        ticket = (msg.get("headers") or {}).get("ticket")
        return ticket, mapping(data)
    except UNREADABLE:
        return None, {}


def _request(client: redis.Redis, keys: Keys, oid: str, body: dict[str, Any], timeout: float,
             transaction: bool) -> int:
    """Bind our reply queue and publish the request; the number of workers subscribed."""
    pipe = client.pipeline(transaction=transaction)
    pipe.sadd(keys.reply_binding, keys.reply_member(oid))
    pipe.publish(keys.pidbox_channel, envelope(body, time.time() + timeout))
    return int(pipe.execute()[1] or 0)


def broadcast(client: redis.Redis, keys: Keys, method: str, timeout: float,
              arguments: dict[str, Any] | None = None, block_max: float = 1.0,
              destination: Sequence[str] | None = None) -> tuple[int, dict[str, Any]]:
    """Send one control request to all workers; return (workers subscribed, {node: reply}).

    `block_max` keeps each BRPOP shorter than the connection's socket timeout, so a worker that
    is slow to answer is never mistaken for a broker that does not answer."""
    oid, ticket = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "method": method, "arguments": arguments or {},
        "destination": list(destination) if destination is not None else None, "pattern": None,
        "matcher": None, "ticket": ticket,
        "reply_to": {"exchange": REPLY_EXCHANGE, "routing_key": oid},
    }
    reply_queue = keys.reply_queue(oid)
    replies: dict[str, Any] = {}
    budget = ReplyBudget()
    deadline = time.monotonic() + timeout
    try:
        # MULTI/EXEC: a full broker refuses the SADD (OOM) and then sends nothing at all, so
        # workers never get a request they could not answer; collect goes on with its reads.
        # An ACL written before MULTI was needed refuses it: send the two commands plainly then.
        try:
            receivers = _request(client, keys, oid, body, timeout, transaction=True)
        except redis.exceptions.NoPermissionError:
            receivers = _request(client, keys, oid, body, timeout, transaction=False)
        expected = receivers if destination is None else min(receivers, len(destination))
        while len(replies) < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            item = client.brpop([reply_queue], timeout=max(min(left, block_max), 0.01))
            if item is None:
                continue
            got_ticket, data = _decode_reply(item[1])
            if got_ticket == ticket:
                # one node per real reply (a forged one naming 200k is refused), every cap of
                # doorman.bounds on nodes and tasks, as on RabbitMQ
                replies.update(budget.accept(data))
        return receivers, replies
    finally:
        pipe = client.pipeline(transaction=False)
        pipe.srem(keys.reply_binding, keys.reply_member(oid))
        pipe.delete(reply_queue)
        pipe.execute()


def active_tasks(client: redis.Redis, keys: Keys, timeout: float, now: float,
                 block_max: float = 1.0) -> ActiveTasks:
    """[task, ...] of each worker that answered, and how many were asked."""
    receivers, replies = broadcast(client, keys, "active", timeout, {"safe": True}, block_max)
    workers: dict[str, list[ActiveTask]] = {}
    for node, tasks in replies.items():
        if not isinstance(tasks, list):
            workers[decode(node)] = []
            continue
        workers[decode(node)] = [_task(node, t, now) for t in tasks if isinstance(t, dict)]
    return ActiveTasks(receivers, workers)


def _task(node: str, t: dict[str, Any], now: float) -> ActiveTask:
    start = sane_epoch(t.get("time_start"))
    info = mapping(t.get("delivery_info"))
    return {
        "task_id": t.get("id"),
        "task_name": t.get("name") or t.get("type"),
        "worker": node,
        "started_at": iso(start) if start else None,
        "runtime_seconds": round(max(0.0, now - start), 3) if start else None,
        "queue": info.get("routing_key"),
        "pid": t.get("worker_pid"),
    }


def listening(client: redis.Redis, keys: Keys, nodes: Sequence[str]) -> bool:
    """Whether every worker of `nodes` is bound to the pidbox and subscribed to the control channel,
    i.e. would answer a request now (used to wait for freshly started workers)."""
    members = b" ".join(encode(decode(m)) for m in client.smembers(keys.pidbox_binding))
    bound = all(encode(n) in members for n in nodes)
    subscribed = sum(int(n) for _, n in client.pubsub_numsub(keys.pidbox_channel))
    return bound and (subscribed >= len(nodes) or int(client.pubsub_numpat()) > 0)
