"""Every HTTP call Doorman makes (management API, sinks, heartbeat pings) goes through `call`.

The peer is hostile: it may drip one byte every two seconds, send 60 MB, a broken gzip stream or
half an answer. So one call has:

- a total deadline, not a per-read timeout: a watchdog shuts the call's socket down when the
  deadline passes (a per-read timeout never fires on a peer that drips a byte per read);
- a size cap enforced while reading: the body is read in chunks and decompressed here (gzip or
  deflate, with `max_length`), so neither a long body nor a decompression bomb is ever held
  whole; past the cap the call fails (`over="error"`) or keeps what was read (`over="cut"`);
- one error class, `HttpError`, for every failure (requests, urllib3, socket, zlib, a bad
  status line...), whose text names the host and port only (a secret may be in the path);
- `abort_all()`: a stop signal shuts every call in flight down at once, so SIGTERM ends a stage
  within a second whatever a peer is doing.

`requests` is imported when a call is made: config loading must not pay for it.
"""

from __future__ import annotations

import socket
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import requests

CHUNK = 16 * 1024  # compressed bytes read at a time (a bomb's chunk is still cut by max_length)


class HttpError(Exception):
    """An HTTP call without a usable answer. `retryable`: a network failure or a deadline (worth
    trying again), not a malformed request; `cause`: the underlying exception's class name."""

    def __init__(self, message: str, retryable: bool = True, cause: str = "", original: BaseException | None = None):
        super().__init__(message)
        self.retryable, self.cause, self.original = retryable, cause, original


@dataclass
class Response:
    """What a call read: the status, headers and at most `max_bytes` of the decoded body."""

    status_code: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive (requests')
    content: bytes
    cut: bool = False  # the body was longer than the cap (over="cut")

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass(eq=False)
class _Watch:
    """The connections one call uses; `fire` shuts their sockets down (from any thread)."""

    conns: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fired: str | None = None  # why: "deadline" or "stopped"

    def add(self, conn: Any) -> None:
        with self.lock:
            self.conns.append(conn)
            if self.fired:
                _shut(conn)

    def fire(self, why: str) -> None:
        with self.lock:
            if self.fired is None:
                self.fired = why
            for c in self.conns:
                _shut(c)


def _shut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


_local = threading.local()
_inflight: set[_Watch] = set()
_inflight_lock = threading.Lock()
_stopped = threading.Event()


def abort_all() -> None:
    """Fail every call in flight now and every later one at once (a stop signal: the stage ends)."""
    _stopped.set()
    with _inflight_lock:
        watches = list(_inflight)
    for w in watches:
        w.fire("stopped")


def _watched_conn(base: type) -> type:
    class Watched(base):
        def request(self, *a: Any, **kw: Any) -> Any:
            w = getattr(_local, "watch", None)
            if w is not None:
                w.add(self)
            return super().request(*a, **kw)

        def connect(self) -> None:
            super().connect()
            w = getattr(_local, "watch", None)
            if w is not None and w.fired:
                _shut(self)

    return Watched


_session_classes: dict[str, Any] = {}


def session(trust_env: bool = False) -> requests.Session:
    """A `requests.Session` whose connections `call` can shut down; by default no proxy from the
    environment (it would see the management API's credentials). Sinks keep the environment's
    proxy (`trust_env`), as before."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    if not _session_classes:
        pools = {"http": type("WatchedPool", (HTTPConnectionPool,), {"ConnectionCls": _watched_conn(HTTPConnection)}),
                 "https": type("WatchedTlsPool", (HTTPSConnectionPool,),
                               {"ConnectionCls": _watched_conn(HTTPSConnection)})}

        class Adapter(HTTPAdapter):
            def init_poolmanager(self, *a: Any, **kw: Any) -> None:
                super().init_poolmanager(*a, **kw)
                self.poolmanager.pool_classes_by_scheme = pools

        _session_classes["adapter"] = Adapter
    s = requests.Session()
    s.trust_env = trust_env
    for prefix in ("http://", "https://"):
        s.mount(prefix, _session_classes["adapter"]())
    return s


def _where(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        p = urlsplit(url)
        return f"{p.hostname}:{p.port or (443 if p.scheme == 'https' else 80)}"
    except ValueError:
        return "the destination"


def _decoder(encoding: str) -> Any:
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return zlib.decompressobj()
    raise HttpError(f"answer in an unsupported encoding ({enc[:20]!r})", cause="ContentEncoding")


def call(sess: requests.Session, method: str, url: str, *, deadline: float, max_bytes: int,
         over: Literal["error", "cut"] = "error", connect_timeout: float | None = None, **kw: Any) -> Response:
    """One request, finished (or failed with `HttpError`) within `deadline` seconds, its decoded
    body capped at `max_bytes` while reading. `sess` should come from `session()` (else the
    deadline holds only between reads). Redirects are never followed."""
    if _stopped.is_set():
        raise HttpError("stopping", cause="Stopped")
    watch = _Watch()
    timer = threading.Timer(deadline, watch.fire, ("deadline",))
    timer.daemon = True
    with _inflight_lock:
        _inflight.add(watch)
    _local.watch = watch
    started = time.monotonic()
    timer.start()
    try:
        return _call(sess, method, url, started + deadline, max_bytes, over, connect_timeout, kw)
    except HttpError as e:
        if watch.fired:
            raise _fired(watch.fired, url, deadline, e) from None
        raise
    except Exception as e:  # noqa: BLE001 - every failure is one error class (module docstring)
        if watch.fired:
            raise _fired(watch.fired, url, deadline, e) from None
        raise _error(e, url, deadline) from None
    finally:
        timer.cancel()
        _local.watch = None
        with _inflight_lock:
            _inflight.discard(watch)


def _fired(why: str, url: str, deadline: float, e: BaseException) -> HttpError:
    if why == "stopped":
        return HttpError("stopping", cause="Stopped", original=e)
    return HttpError(f"{_where(url)} did not answer within {deadline:g} s", cause="Deadline", original=e)


def _call(sess: requests.Session, method: str, url: str, end: float, max_bytes: int, over: str,
          connect_timeout: float | None, kw: dict[str, Any]) -> Response:
    left = max(0.05, end - time.monotonic())
    timeout = (min(connect_timeout or left, left), left)  # per read: the watchdog holds the total
    headers = {"Accept-Encoding": "gzip, deflate", **(kw.pop("headers", None) or {})}
    r = sess.request(method, url, timeout=timeout, stream=True, allow_redirects=False, headers=headers, **kw)
    try:
        decoder = _decoder(r.headers.get("Content-Encoding", ""))
        parts: list[bytes] = []
        size, cut = 0, False
        for raw in r.raw.stream(CHUNK, decode_content=False):
            data = decoder.decompress(raw, max_bytes + 1 - size) if decoder is not None else raw
            parts.append(data)
            size += len(data)
            if size > max_bytes or (decoder is not None and decoder.unconsumed_tail):
                if over == "error":
                    raise HttpError(f"{_where(url)} answered over {max_bytes} bytes", cause="TooLarge")
                cut = True
                break
        if decoder is not None and not cut:
            tail = decoder.flush()
            parts.append(tail[: max(0, max_bytes - size)])
            if not decoder.eof:
                raise HttpError(f"{_where(url)} sent a truncated compressed answer", cause="BadEncoding")
        body = b"".join(parts)[:max_bytes]
        return Response(r.status_code, str(r.reason or "")[:100], r.headers, body, cut)
    finally:
        r.close()


def _error(e: BaseException, url: str, deadline: float) -> HttpError:
    """Any exception of a call as an `HttpError` in words a person reads (host and port only)."""
    import requests

    retryable = not isinstance(e, (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader,
                                   requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                                   requests.exceptions.URLRequired))
    if isinstance(e, zlib.error):
        message = f"{_where(url)} sent a corrupt compressed answer"
    elif retryable:
        try:
            message = network_problem(e, url, (deadline, deadline))
        except Exception:  # noqa: BLE001
            message = f"cannot reach {_where(url)} ({type(e).__name__})"
    else:
        message = f"{type(e).__name__}: the URL or a header is not valid"
    return HttpError(message, retryable=retryable, cause=type(e).__name__, original=e)


def _causes(e: BaseException) -> list[BaseException]:
    """The chain under a requests error (urllib3 keeps its cause in `.reason` or the first arg)."""
    out: list[BaseException] = []
    c: BaseException | None = e
    while c is not None and len(out) < 10:
        out.append(c)
        nxt = c.__cause__ or c.__context__ or getattr(c, "reason", None)
        if nxt is None and c.args and isinstance(c.args[0], BaseException):
            nxt = c.args[0]
        c = nxt if isinstance(nxt, BaseException) else None
    return out


def network_problem(e: BaseException, url: str, timeout: tuple[float, float]) -> str:
    """A failed request in words a person reads: `cannot connect to 127.0.0.1:9 (connection refused)`,
    not a urllib3 repr. Only host and port are named (a destination's secret is in its path)."""
    import requests

    try:
        p = urlsplit(url)
        where = f"{p.hostname}:{p.port or (443 if p.scheme == 'https' else 80)}"
    except ValueError:
        where = "the destination"
    chain = _causes(e)
    names = {type(c).__name__ for c in chain}
    if isinstance(e, requests.ConnectTimeout):
        return f"cannot connect to {where} (no answer within {timeout[0]:g} s)"
    if isinstance(e, requests.Timeout):
        return f"{where} did not answer within {timeout[1]:g} s"
    if isinstance(e, requests.exceptions.SSLError) or "SSLError" in names:
        return f"cannot connect to {where} (TLS handshake failed)"
    if "NameResolutionError" in names or any(isinstance(c, socket.gaierror) for c in chain):
        return f"cannot connect to {where} (host name not found)"
    for c in chain:
        if isinstance(c, OSError) and c.errno is not None and c.strerror:
            return f"cannot connect to {where} ({c.strerror[:1].lower()}{c.strerror[1:]})"
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return f"{where} closed the connection in the middle of its answer"
    if any(isinstance(c, ConnectionResetError) for c in chain) or "RemoteDisconnected" in names:
        return f"{where} closed the connection without answering"
    return f"cannot connect to {where} ({type(chain[-1]).__name__})"
