"""Read and write NDJSON the way every Doorman stage must.

Reading streams: each line is handed on as soon as it arrives (never waits for EOF). A bad line
is one message on stderr naming the line, and the stream goes on. A line over `max_bytes` is
refused without being held in memory. Writing flushes every line, so a pipe sees each record at
once, and `BrokenPipeError` (`| head`) ends the program quietly.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson

from doorman.bounds import depth_over
from doorman.textsafe import printable

MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64  # deeper values are bad lines: the encoder stops at 255 levels, mid-alert (doorman.bounds)


def warn(prog: str, message: str) -> None:
    """One diagnostic line on stderr; never on stdout, which is data only. Control characters (from
    broker names quoted in a message) are shown escaped: they cannot forge lines or drive a terminal."""
    try:
        sys.stderr.write(f"{prog}: {printable(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _lines(stream: IO[bytes], max_bytes: int) -> Iterator[tuple[bytes | None, int]]:
    """Yield (line, size); an over-long line yields (None, size) after skipping the rest of it."""
    while True:
        chunk = stream.readline(max_bytes + 1)
        if not chunk:
            return
        if len(chunk) <= max_bytes or chunk.endswith(b"\n"):
            yield chunk, len(chunk)
            continue
        size = len(chunk)
        while not chunk.endswith(b"\n"):
            chunk = stream.readline(1024 * 1024)
            if not chunk:
                break
            size += len(chunk)
        yield None, size


def read_records(
    stream: IO[bytes],
    name: str = "<stdin>",
    on_error: Callable[[str], None] | None = None,
    max_bytes: int = MAX_LINE_BYTES,
    what: str = "value",
) -> Iterator[tuple[int, Any]]:
    """Yield (line number, decoded JSON value) for each good line; report the bad ones, saying
    what was expected (`what`: `snapshot`, `alert`)."""
    report = on_error or (lambda msg: None)
    for lineno, (raw, size) in enumerate(_lines(stream, max_bytes), start=1):
        if raw is None:
            report(f"{name}:{lineno}: line of {size} bytes is over the {max_bytes}-byte limit; skipped")
            continue
        text = raw.strip()
        if not text:
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            report(f"{name}:{lineno}: not valid JSON (expected one {what} as a JSON object on each line; "
                   f"{json_fault(text, e)}); skipped")
            continue
        if depth_over(value, MAX_DEPTH):
            report(f"{name}:{lineno}: nested deeper than {MAX_DEPTH} levels; skipped")
            continue
        yield lineno, value


def json_fault(text: bytes, e: orjson.JSONDecodeError) -> str:
    """Where a line stops being JSON, in words: not the parser's `line 1 column 8 (char 7)`."""
    if e.pos >= len(text):
        return "the line ends before the JSON does"
    return f"unexpected {text[e.pos:e.pos + 1].decode('latin-1')!r} at column {e.colno}"


JSON_TYPES = {"list": "a JSON array", "str": "a string", "int": "a number", "float": "a number",
              "bool": "true or false", "NoneType": "null"}


def json_type(value: Any) -> str:
    """`a JSON array`, not `list`: what a line holds, in JSON's words."""
    return JSON_TYPES.get(type(value).__name__, type(value).__name__)


def read_objects(
    stream: IO[bytes],
    kind: str,
    name: str = "<stdin>",
    on_error: Callable[[str], None] | None = None,
    validate: Callable[[dict], str | None] | None = None,
) -> Iterator[tuple[int, dict]]:
    """Like `read_records`, keeping only JSON objects that `validate` accepts (None = fine)."""
    report = on_error or (lambda msg: None)
    for lineno, obj in read_records(stream, name, report, what=kind):
        if not isinstance(obj, dict):
            report(f"{name}:{lineno}: expected a JSON object ({kind}), got {json_type(obj)}; skipped")
            continue
        problem = validate(obj) if validate else None
        if problem:
            report(f"{name}:{lineno}: not a {kind}: {problem}; skipped")
            continue
        yield lineno, obj


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS, default=str)


def write_record(obj: Any, out: IO[bytes] | None = None) -> None:
    """One JSON object, one line, flushed now."""
    out = out or sys.stdout.buffer
    out.write(dumps(obj))
    out.flush()


def quiet_pipe(main: Callable[..., Any]) -> Callable[..., Any]:
    """End quietly when the reader goes away (`| head`), and on Ctrl-C, without a traceback."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            _silence_stdout()
            sys.exit(0)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
