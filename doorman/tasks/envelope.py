"""Decode one broker message of Celery events into event dicts, cheaply and without trusting it.

On Redis a message is kombu's JSON envelope with the body in base64; on RabbitMQ the AMQP body is
the JSON itself. The body is one event (a dict) or, for `task.multi`, a list of them (a prefork
worker buffers up to 24 task events into one message). Only JSON bodies are read: events from an
app with another `event_serializer` count as bad messages.

The dicts returned are the wire's: the counter reads a handful of fields from each and drops it at
once, so `args`, `kwargs`, `result` and `traceback` are never kept (nor copied). orjson refuses
nesting deeper than its own limit; nothing here walks the values, so deep nesting costs nothing.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from typing import Any

import orjson

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # one message; 24 failures with long tracebacks are well under this
JSON_TYPES = frozenset({"application/json", None})  # kombu's default for events; None: not said (AMQP)
UNKNOWN_EXCEPTION = "UnknownException"
_CLASS = re.compile(r"(\w+)\(")  # celery-exporter's rule: the class name in front of its repr
MAX_CLASS = 100

Event = dict[str, Any]


class Undecodable(ValueError):
    """A message that is not events: counted as bad, never raised out of the reader."""


def events_of(body: Any) -> list[Event]:
    """The event dicts of a decoded body: one event or a `task.multi` list; anything else is dropped."""
    if type(body) is dict:
        return [body]
    if type(body) is list:
        return [e for e in body if type(e) is dict]
    raise Undecodable("body is neither an event nor a list of events")


def _loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise Undecodable("not JSON") from e


def redis_message(raw: bytes) -> list[Event]:
    """The events in one PUBLISHed kombu envelope (Redis)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Undecodable("message over its byte budget")
    msg = _loads(raw)
    if type(msg) is not dict:
        raise Undecodable("envelope is not an object")
    if msg.get("content-type") not in JSON_TYPES:
        raise Undecodable("not a JSON body")
    body = msg.get("body")
    props = msg.get("properties")
    if type(props) is dict and props.get("body_encoding") == "base64":
        if type(body) is not str:
            raise Undecodable("base64 body is not a string")
        try:
            body = b64decode(body, validate=False)
        except (binascii.Error, ValueError) as e:
            raise Undecodable("bad base64") from e
    if not isinstance(body, (str, bytes)):
        raise Undecodable("no body")
    return events_of(_loads(body))


def amqp_body(body: Any, content_type: Any = None) -> list[Event]:
    """The events in one AMQP message body (RabbitMQ)."""
    if content_type not in JSON_TYPES:
        raise Undecodable("not a JSON body")
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise Undecodable("no body")
    if len(body) > MAX_MESSAGE_BYTES:
        raise Undecodable("message over its byte budget")
    return events_of(_loads(bytes(body)))


def exception_class(exception: Any) -> str:
    """The class name of a task-failed event's `exception` repr (`ValueError('...')` -> ValueError);
    the message itself is never read further."""
    if type(exception) is str:
        m = _CLASS.match(exception)
        if m and len(m.group(1)) <= MAX_CLASS:
            return m.group(1)
    return UNKNOWN_EXCEPTION
