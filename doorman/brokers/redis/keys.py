"""kombu's Redis key and channel names, with `global_keyprefix` applied as kombu applies it.

The only place Doorman (and its tests) spell them. Names are bytes on the wire and may be any
bytes; they are kept as `str` decoded with `surrogateescape` (`doorman.brokers.base.decode`).
"""

from __future__ import annotations

from collections.abc import Sequence

from doorman.config.settings import Section

SEP = "\x06\x16"  # kombu's priority separator, also between the fields of a binding
PRIORITY_STEPS = (0, 3, 6, 9)
CONTROL_EXCHANGE = "celery.pidbox"
REPLY_EXCHANGE = "reply.celery.pidbox"
EVENT_EXCHANGE = "celeryev"
INTERNAL_EXCHANGES = (CONTROL_EXCHANGE, EVENT_EXCHANGE, REPLY_EXCHANGE)
PIDBOX_SUFFIX = ".pidbox"  # any app's control exchange: <app>.pidbox
BINDING = "_kombu.binding."
PIDBOX_QUEUE_SUFFIX = "." + CONTROL_EXCHANGE  # a worker's pidbox queue: <node>.celery.pidbox


class Keys:
    def __init__(self, prefix: str = "", sep: str = SEP, priority_steps: Sequence[int] = PRIORITY_STEPS,
                 db: int = 0):
        self.prefix, self.sep, self.priority_steps, self.db = prefix, sep, tuple(priority_steps), db

    @classmethod
    def of(cls, options: Section, db: int = 0) -> Keys:
        """From the loaded `broker_transport_options` section."""
        return cls(options.global_keyprefix or "", options.sep, options.priority_steps, db)

    def queue_lists(self, queue: str) -> list[tuple[int, str]]:
        """(priority step, key) for every list kombu may hold the queue's messages in."""
        out = [(step, self.prefix + (queue if step == 0 else f"{queue}{self.sep}{step}"))
               for step in self.priority_steps]
        if 0 not in self.priority_steps:
            out.insert(0, (0, self.prefix + queue))
        return out

    def binding(self, exchange: str) -> str:
        return f"{self.prefix}{BINDING}{exchange}"

    def binding_queue(self, member: str) -> str | None:
        """The queue of a binding member `routing_key<sep>pattern<sep>queue`."""
        parts = member.split(self.sep)
        return parts[-1] if len(parts) >= 3 and parts[-1] else None

    @staticmethod
    def internal(exchange: str) -> bool:
        """Whether an exchange is Celery's own plumbing (control, replies, events), not tasks'."""
        return exchange in INTERNAL_EXCHANGES or exchange.endswith(PIDBOX_SUFFIX)

    @staticmethod
    def pidbox_node(queue: str) -> str | None:
        """The worker node whose pidbox queue this is, or None."""
        return queue[: -len(PIDBOX_QUEUE_SUFFIX)] if queue.endswith(PIDBOX_QUEUE_SUFFIX) else None

    @property
    def pidbox_binding(self) -> str:
        return self.binding(CONTROL_EXCHANGE)

    @property
    def reply_binding(self) -> str:
        return self.binding(REPLY_EXCHANGE)

    def reply_member(self, oid: str) -> str:
        return f"{oid}{self.sep}{self.sep}{oid}.{REPLY_EXCHANGE}"

    def reply_queue(self, oid: str) -> str:
        return f"{self.prefix}{oid}.{REPLY_EXCHANGE}"

    def fanout_channel(self, exchange: str, routing_key: str = "") -> str:
        """The PUBLISH channel of a fanout exchange (kombu's `fanout_patterns` topic when routed)."""
        topic = f"/{routing_key}" if routing_key else ""
        return f"{self.prefix}/{self.db}.{exchange}{topic}"

    @property
    def pidbox_channel(self) -> str:
        return self.fanout_channel(CONTROL_EXCHANGE)

    @property
    def worker_events_pattern(self) -> str:
        return self.fanout_channel(EVENT_EXCHANGE, "worker.*")

    @property
    def events_pattern(self) -> str:
        """Every event (worker and task) on the `celeryev` fanout: one subscription for both."""
        return self.fanout_channel(EVENT_EXCHANGE, "*")

    def worker_event_channel(self, event_type: str) -> str:
        """Where Celery publishes one event type (`worker-heartbeat` -> routing key `worker.heartbeat`)."""
        return self.fanout_channel(EVENT_EXCHANGE, event_type.replace("-", "."))

    @property
    def unacked_index(self) -> str:
        return f"{self.prefix}unacked_index"

    @property
    def unacked(self) -> str:
        """kombu's hash of unacknowledged messages: delivery tag -> [message, exchange, routing key]."""
        return f"{self.prefix}unacked"
