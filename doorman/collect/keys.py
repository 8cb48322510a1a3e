"""kombu's Redis key and channel names, with `global_keyprefix` applied as kombu applies it.

Names are bytes on the wire and may be any bytes; Doorman keeps them as `str` decoded with
`surrogateescape` so they round-trip exactly, and shows them with `display()`.
"""

from __future__ import annotations

from doorman.config import Transport

REPLY_EXCHANGE = "reply.celery.pidbox"


def encode(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def decode(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape")


def display(name: str) -> str:
    """A printable form of a raw name (bytes that are not UTF-8 shown as \\xNN)."""
    return encode(name).decode("utf-8", "backslashreplace")


class Keys:
    def __init__(self, transport: Transport, db: int = 0):
        self.t = transport
        self.prefix = transport.global_keyprefix or ""
        self.db = db

    def queue_lists(self, queue: str) -> list[tuple[int, str]]:
        """(priority step, key) for every list kombu may hold the queue's messages in."""
        out = []
        for step in self.t.priority_steps:
            name = queue if step == 0 else f"{queue}{self.t.sep}{step}"
            out.append((step, self.prefix + name))
        if 0 not in self.t.priority_steps:
            out.insert(0, (0, self.prefix + queue))
        return out

    def binding(self, exchange: str) -> str:
        return f"{self.prefix}_kombu.binding.{exchange}"

    def binding_queue(self, member: str) -> str | None:
        """The queue of a binding member `routing_key<sep>pattern<sep>queue`."""
        parts = member.split(self.t.sep)
        return parts[-1] if len(parts) >= 3 and parts[-1] else None

    @property
    def pidbox_binding(self) -> str:
        return self.binding("celery.pidbox")

    @property
    def reply_binding(self) -> str:
        return self.binding(REPLY_EXCHANGE)

    def reply_member(self, oid: str) -> str:
        sep = self.t.sep
        return f"{oid}{sep}{sep}{oid}.{REPLY_EXCHANGE}"

    def reply_queue(self, oid: str) -> str:
        return f"{self.prefix}{oid}.{REPLY_EXCHANGE}"

    @property
    def pidbox_channel(self) -> str:
        return f"{self.prefix}/{self.db}.celery.pidbox"

    @property
    def worker_events_pattern(self) -> str:
        return f"{self.prefix}/{self.db}.celeryev/worker.*"

    @property
    def unacked(self) -> str:
        return f"{self.prefix}unacked"

    @property
    def unacked_index(self) -> str:
        return f"{self.prefix}unacked_index"
