"""RabbitMQ's management HTTP API, read only: every queue of the vhost in one call, the nodes'
memory and alarms, the server's version.

The figures are the management database's, refreshed by RabbitMQ every
`collect_statistics_interval` (5 s by default): a snapshot can lag the queues by that much.
Answers are hostile data: each call has a total deadline and a body cap enforced while reading
(`doorman.httpcall`), the body is refused before parsing when it holds more objects than a real
listing could (`MAX_MANAGEMENT_CONTAINERS`), every field is checked before use, and a field that
is not what RabbitMQ documents is read as unknown. Any failure is a `ManagementError`: the caller
reads over AMQP instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from doorman import httpcall
from doorman.bounds import MAX_MANAGEMENT_BYTES, MAX_MANAGEMENT_CONTAINERS, MAX_MANAGEMENT_ITEMS, check_wire
from doorman.brokers.rabbitmq.urls import vhost_path
from doorman.timefmt import sane_epoch

MAX_BODY = MAX_MANAGEMENT_BYTES  # bytes read of one answer (doorman.bounds; 10,000 queues are ~2 MB)
MAX_QUEUES = 10_000  # queues kept of one listing, the rest ignored
MAX_CONSUMERS = 50_000  # consumers kept of one listing
QUEUE_COLUMNS = ("name,messages_ready,messages_unacknowledged,consumers,head_message_timestamp,"
                 "message_stats.ack,message_stats.redeliver")
NODE_COLUMNS = "name,mem_used,mem_limit,mem_alarm,disk_free_alarm,disk_free,disk_free_limit,running"


class ManagementError(Exception):
    """The API did not give a usable answer; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class QueueRow:
    name: str
    ready: int
    unacked: int
    consumers: int | None
    head_timestamp: float | None  # the head message's AMQP `timestamp` property, epoch seconds
    acked: int | None  # acknowledgements since the queue was created (message_stats.ack)
    redelivered: int | None


def _count(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


class Management:
    """A session on the management API (credentials as HTTP basic auth, never in a URL)."""

    def __init__(self, base: str, auth: tuple[str, str], timeout: float, verify: bool | str = True):
        self.base, self.timeout = base, timeout
        self.session = httpcall.session()  # no proxy from the environment sees the credentials
        self.session.auth = auth
        self.session.verify = verify
        self.session.headers["User-Agent"] = "celery-doorman"

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """One answer as JSON, within `timeout` seconds in all (a deadline, not per read)."""
        try:
            r = httpcall.call(self.session, "GET", self.base + path, params=params, deadline=self.timeout,
                              max_bytes=MAX_BODY)
        except httpcall.HttpError as e:
            # the text names the host and port only (credentials are not in the URL)
            raise ManagementError(f"management API: {e}") from None
        if r.status_code != 200:
            raise ManagementError(f"management API answered HTTP {r.status_code}", r.status_code)
        try:
            check_wire(r.content, MAX_BODY, MAX_MANAGEMENT_CONTAINERS, MAX_MANAGEMENT_ITEMS)
            return orjson.loads(r.content)
        except orjson.JSONDecodeError:
            raise ManagementError("management API answer is not JSON") from None
        except ValueError as e:
            raise ManagementError(f"management API answer refused: {e}") from None

    def queues(self, vhost: str) -> list[QueueRow]:
        """Every queue of `vhost`, one HTTP call, only the columns Doorman reads."""
        data = self.get(f"/api/queues/{vhost_path(vhost)}", {"columns": QUEUE_COLUMNS})
        if not isinstance(data, list):
            raise ManagementError("management API: /api/queues answered something other than a list")
        rows = []
        for item in data[:MAX_QUEUES]:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            stats = item.get("message_stats")
            stats = stats if isinstance(stats, dict) else {}
            ts = item.get("head_message_timestamp")
            rows.append(QueueRow(
                name=item["name"],
                ready=_count(item.get("messages_ready")) or 0,
                unacked=_count(item.get("messages_unacknowledged")) or 0,
                consumers=_count(item.get("consumers")),
                head_timestamp=sane_epoch(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else None,
                acked=_count(stats.get("ack")),
                redelivered=_count(stats.get("redeliver")),
            ))
        return rows

    def queue_names(self, vhost: str) -> set[str]:
        """The names of every queue of `vhost` (one HTTP call, the name column only). Unlike the
        figures, the list itself is current: a deleted queue is gone from it at once."""
        data = self.get(f"/api/queues/{vhost_path(vhost)}", {"columns": "name"})
        if not isinstance(data, list):
            raise ManagementError("management API: /api/queues answered something other than a list")
        return {item["name"] for item in data[:MAX_QUEUES] if isinstance(item, dict) and isinstance(item.get("name"), str)}

    def consumers(self, vhost: str) -> list[tuple[str, str]]:
        """(queue, connection name) of every consumer of `vhost`, one HTTP call. RabbitMQ drops a
        cancelled consumer from this list at once but lists a new one on its statistics timer."""
        data = self.get(f"/api/consumers/{vhost_path(vhost)}", {"columns": "queue.name,channel_details.connection_name"})
        if not isinstance(data, list):
            raise ManagementError("management API: /api/consumers answered something other than a list")
        rows = []
        for item in data[:MAX_CONSUMERS]:
            queue = item.get("queue") if isinstance(item, dict) else None
            chan = item.get("channel_details") if isinstance(item, dict) else None
            name = queue.get("name") if isinstance(queue, dict) else None
            conn = chan.get("connection_name") if isinstance(chan, dict) else None
            if isinstance(name, str) and isinstance(conn, str):
                rows.append((name, conn))
        return rows

    def health(self) -> dict[str, Any]:
        """broker_health fields from /api/nodes (memory, alarms) and /api/overview (version, clients)."""
        nodes = self.get("/api/nodes", {"columns": NODE_COLUMNS})
        if not isinstance(nodes, list):
            raise ManagementError("management API: /api/nodes answered something other than a list")
        overview = self.get("/api/overview", {"columns": "rabbitmq_version,object_totals.connections"})
        overview = overview if isinstance(overview, dict) else {}
        return health_of(nodes, overview)

    def close(self) -> None:
        self.session.close()


def health_of(nodes: list[Any], overview: dict[str, Any]) -> dict[str, Any]:
    """The shared `broker_health` shape for RabbitMQ: the fullest node's memory, the alarms raised on
    any node (`mem_alarm`, `disk_free_alarm`)."""
    used: int | None = None
    limit: int | None = None
    alarms: list[str] = []
    worst = -1.0
    for n in nodes[:100]:
        if not isinstance(n, dict):
            continue
        u, m = _count(n.get("mem_used")), _count(n.get("mem_limit"))
        if u is not None and m:
            if u / m > worst:
                worst, used, limit = u / m, u, m
        for alarm in ("mem_alarm", "disk_free_alarm"):
            if n.get(alarm) is True and alarm not in alarms:
                alarms.append(alarm)
    version = overview.get("rabbitmq_version")
    totals = overview.get("object_totals")
    clients = _count(totals.get("connections")) if isinstance(totals, dict) else None
    return {
        "server": "rabbitmq",
        "version": version[:50] if isinstance(version, str) else None,
        "used_memory_bytes": used,
        "max_memory_bytes": limit,
        "eviction_policy": None,
        "evicted_keys": None,
        "oom_errors": None,
        "connected_clients": clients,
        "keyspace": None,
        "alarms": alarms,
    }
