"""The HTTP side (stdlib `http.server`): routes, headers, auth, and the limits that keep any
client, token or not, from stalling it.

Limits (docs/security.md): a fixed pool of `WORKERS` threads answers requests; a connection waits
in a selector, holding no thread, until its first bytes arrive (at most `MAX_WAITING` wait, for
`IDLE_TIMEOUT` seconds each, the whole header block read there; past either, the oldest is closed); when every thread is busy and
`MAX_QUEUED` more are queued, a new connection is closed at once. A request has `READ_TIMEOUT`
seconds per read (set before the first read), a request line of `MAX_REQUEST_LINE` bytes, headers of
`MAX_HEADER_BYTES`; a body up to `MAX_BODY` is read and dropped, a larger or chunked one closes the
connection; and every connection is closed after its answer, so a POST carrying a second request
never gets two answers. The `Host` header must be a loopback name, an IP address (a DNS-rebinding
page always sends a name), the bind address, this machine's name, or one of `serve_allowed_hosts`.

Routes: `/` (the dashboard), `/static/*` (its files, from the package), `/metrics`, `/healthz`,
`/livez`, and the JSON API under `/api/v1/` (docs/serve.md). Every answer carries a strict
Content-Security-Policy: the page runs only its own script file, never inline code, and may
fetch only from this server.
"""

from __future__ import annotations

import io
import ipaddress
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from doorman.serve.auth import OPEN_PATHS, authorized
from doorman.serve.health import health
from doorman.serve.history import RANGES, Reader
from doorman.serve.metrics import CONTENT_TYPE
from doorman.serve.state import State

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC = {  # URL path -> (package file, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/static/uPlot.iife.min.js": ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "/static/uPlot.min.css": ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
    "/static/LICENSE-uPlot.txt": ("vendor/LICENSE-uPlot.txt", "text/plain; charset=utf-8"),
}


WORKERS = 8  # threads answering requests
MAX_QUEUED = 32  # requests waiting for a thread; past this a new connection is closed at once
MAX_WAITING = 256  # connections waiting for their first bytes (no thread held); the oldest is closed
IDLE_TIMEOUT = 10.0  # seconds a connection may wait for its first bytes
READ_TIMEOUT = 5.0  # seconds per read of a request
MAX_REQUEST_LINE = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY = 64 * 1024  # a request body read (and dropped) to keep the stream in step; larger: closed
BODY_SECONDS = 2.0  # to read that body, in all
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a request may name (IP addresses are always allowed): loopback names, the bind
    address, this machine's name and the configured ones, lower case."""
    names = {*LOOPBACK_NAMES, bind.strip("[]").lower(), socket.gethostname().lower()}
    names.update(h.strip().lower().rstrip(".") for h in extra if h.strip())
    return frozenset(names)


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a `Host` header names this server: an IP address (rebinding needs a name), a name
    in `allowed`, or any name under `.localhost`. No header (HTTP/1.0) is allowed."""
    if header is None:
        return True
    h = header.strip().lower()
    if h.startswith("["):
        h = h[1:h.find("]")] if "]" in h else h
    elif h.count(":") == 1:
        h = h.split(":", 1)[0]
    h = h.rstrip(".")
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        pass
    return h in allowed or h.endswith(".localhost")


class _Prefixed(io.RawIOBase):
    """A socket's stream with bytes already read from it put back in front."""

    def __init__(self, prefix: bytes, sock: socket.socket):
        self.prefix, self.sock = memoryview(prefix), sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.prefix:
            n = min(len(b), len(self.prefix))
            b[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        return self.sock.recv_into(b)


def load_static() -> dict[str, tuple[bytes, str]]:
    root = resources.files("doorman.serve") / "static"
    return {path: ((root / fname).read_bytes(), ctype) for path, (fname, ctype) in STATIC.items()}


@dataclass
class App:
    state: State
    metrics: Callable[[], bytes]
    history_path: str | None
    check_interval: float
    token: str | None
    clock: Callable[[], float] = time.time
    hosts: frozenset[str] = field(default_factory=lambda: allowed_hosts("127.0.0.1"))
    metrics_gzip: Callable[[], bytes] | None = None  # the same text gzipped, for clients that accept it

    def __post_init__(self) -> None:
        self.static = load_static()
        self.local = threading.local()

    def reader(self) -> Reader | None:
        if self.history_path is None:
            return None
        r = getattr(self.local, "reader", None)
        if r is None:
            r = self.local.reader = Reader(self.history_path)
        return r

    def status(self) -> dict[str, Any]:
        now = self.clock()
        out = []
        with self.state.lock:
            for cl, c in sorted(self.state.clusters.items()):
                out.append({
                    "cluster": cl, "ts": c.ts, "age_seconds": round(now - c.ts, 3), "broker_up": c.broker_up,
                    "error": c.error, "workers_alive": c.workers_alive,
                    "workers_known": len(c.workers) + c.workers_omitted, "pending": c.pending,
                    "oldest_age_seconds": c.oldest_age, "active": c.active, "unacked": c.unacked,
                    "alerts_firing": [{"fingerprint": fp, "alert_type": f.alert_type, "severity": f.severity,
                                       "subject": f.subject, "title": f.title, "started_at": f.started_at}
                                      for fp, f in sorted(c.firing.items(), key=lambda kv: kv[1].started_at)][:100],
                    "tasks": c.task_summary,
                })
        return {"now": now, "clusters": out}


class Handler(BaseHTTPRequestHandler):
    server_version = "doorman-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers go out with the body, not one write per header line
    raw_requestline: bytes
    timeout = READ_TIMEOUT  # set on the socket by StreamRequestHandler.setup, before any read
    app: App  # set on the subclass made by make_server

    def parse_request(self) -> bool:
        """The stdlib's parsing, then our limits, the body read (or the connection closed) and the
        Host check; every connection closes after one answer."""
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", "GET"
            self.close_connection = True
            self._text(414, b"request line too long\n")
            return False
        if not super().parse_request():
            return False
        self.close_connection = True
        if sum(len(k) + len(v) + 4 for k, v in self.headers.items()) > MAX_HEADER_BYTES:
            self._text(431, b"request headers too large\n")
            return False
        if not self._drain_body():
            return False
        if not host_allowed(self.headers.get("Host"), self.app.hosts):
            self._text(421, b"unknown Host: add it to serve_allowed_hosts\n")
            return False
        return True

    def _drain_body(self) -> bool:
        """Read and drop a body up to MAX_BODY, so its bytes are never taken for a request."""
        if self.headers.get("Transfer-Encoding"):
            self._text(411, b"chunked bodies are not taken\n")
            return False
        length = self.headers.get("Content-Length")
        if length is None:
            return True
        try:
            n = int(length)
        except ValueError:
            n = -1
        if not 0 <= n <= MAX_BODY:
            self._text(413, b"request body too large\n")
            return False
        end = time.monotonic() + BODY_SECONDS  # in all: a body dripped byte by byte holds no thread long
        try:
            while n > 0:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.connection.settimeout(left)
                got = self.rfile.read1(min(n, 16384))
                if not got:
                    return False
                n -= len(got)
        except OSError:
            return False
        finally:
            self.connection.settimeout(self.timeout)
        return True

    def _text(self, status: int, body: bytes) -> None:
        try:
            self._send(status, body, "text/plain; charset=utf-8", {"Connection": "close"})
        except OSError:
            pass

    def setup(self) -> None:
        super().setup()
        prefix = getattr(self.server, "prefixes", {}).pop(self.connection, b"")
        if prefix:  # the header block the waiting room read: the request starts with it
            self.rfile = io.BufferedReader(_Prefixed(prefix, self.connection))
        try:  # a response is several writes: never let Nagle hold the last one back for a delayed ACK
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # no access log: stderr is for problems

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            if k == "Connection":
                continue
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, orjson.dumps(obj), "application/json")

    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        self._json(405, {"error": "read-only: only GET"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_GET(self) -> None:  # noqa: N802
        app = self.app
        url = urlsplit(self.path)
        path = url.path
        if path not in OPEN_PATHS and not authorized(self.headers.get("Authorization"), app.token):
            return self._send(401, b"unauthorized\n", "text/plain; charset=utf-8",
                              {"WWW-Authenticate": 'Basic realm="doorman-serve", charset="UTF-8"'})
        if path == "/livez":
            return self._send(200, b"ok\n", "text/plain; charset=utf-8")
        if path == "/healthz":
            status, body = health(app.state, app.clock(), app.check_interval)
            return self._json(status, body)
        if path == "/metrics":
            if app.metrics_gzip is not None and "gzip" in (self.headers.get("Accept-Encoding") or ""):
                return self._send(200, app.metrics_gzip(), CONTENT_TYPE, {"Content-Encoding": "gzip"})
            return self._send(200, app.metrics(), CONTENT_TYPE)
        if path in app.static:
            data, ctype = app.static[path]
            return self._send(200, data, ctype)
        if path == "/api/v1/status":
            return self._json(200, app.status())
        if path in ("/api/v1/history", "/api/v1/alerts"):
            return self._history(path, parse_qs(url.query))
        self._json(404, {"error": "not found"})

    def _history(self, path: str, query: dict[str, list[str]]) -> None:
        app = self.app
        rng = (query.get("range") or ["1h"])[0]
        if rng not in RANGES:
            return self._json(400, {"error": f"range must be one of {', '.join(RANGES)}"})
        cluster = (query.get("cluster") or [""])[0]
        with app.state.lock:
            clusters = sorted(app.state.clusters)
        reader = app.reader()
        if reader is not None and not cluster:
            clusters = sorted(set(clusters) | set(reader.clusters()))
            cluster = clusters[0] if clusters else "default"
        end = app.clock()
        start = end - RANGES[rng]
        if reader is None:
            return self._json(404, {"error": "no history (serve runs with --history none)"})
        if path == "/api/v1/history":
            body = reader.series(cluster, start, end)
        else:
            body = {"cluster": cluster, "from": start, "to": end, "alerts": reader.alerts(cluster, start, end)}
        body["range"] = rng
        self._json(200, body)


class Server(ThreadingHTTPServer):
    """`ThreadingHTTPServer` with bounded threads: accepted connections wait in a selector (no
    thread) for their first bytes, then go to a fixed pool; the excess is closed (module docstring)."""

    daemon_threads = True
    block_on_close = False
    # the kernel's queue of connections not yet accepted: socketserver's 5 overflowed under a burst
    # (a dashboard's parallel fetches, Prometheus, a flood), and each overflow cost its client a 1 s
    # SYN retransmit before the accept loop, which is fast, ever saw it
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], workers: int = WORKERS,
                 max_queued: int = MAX_QUEUED, max_waiting: int = MAX_WAITING, idle_timeout: float = IDLE_TIMEOUT):
        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="serve-http")
        self.max_busy, self.max_waiting, self.idle_timeout = workers + max_queued, max_waiting, idle_timeout
        self.busy = 0
        self.busy_lock = threading.Lock()
        self.prefixes: dict[socket.socket, bytes] = {}  # what the waiting room read of each request
        self.arrivals: queue.SimpleQueue[tuple[socket.socket, Any]] = queue.SimpleQueue()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_w.setblocking(False)
        self.closed = threading.Event()
        self.waiter = threading.Thread(target=self._wait_loop, name="serve-waiting", daemon=True)
        self.waiter.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Called by the accept loop: park the connection until it has bytes to read."""
        self.arrivals.put((request, client_address))
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    def _wait_loop(self) -> None:
        """Hold each connection, without a thread, until its whole header block has arrived (a
        client that sends half a request holds nothing but a slot here), then dispatch it."""
        sel = selectors.DefaultSelector()
        sel.register(self.wake_r, selectors.EVENT_READ, None)
        waiting: dict[socket.socket, tuple[Any, float, bytearray]] = {}  # insertion order: the oldest first

        def drop(sock: socket.socket) -> None:
            sel.unregister(sock)
            del waiting[sock]
            self.shutdown_request(sock)

        while not self.closed.is_set():
            for key, _ in sel.select(timeout=0.5):
                if key.data is None:
                    try:
                        self.wake_r.recv(4096)
                    except OSError:
                        pass
                    continue
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                addr, _since, buf = waiting[sock]
                try:
                    got = sock.recv(16384)
                except BlockingIOError:
                    continue
                except OSError:
                    got = b""
                buf += got
                if not got or len(buf) > MAX_REQUEST_LINE + MAX_HEADER_BYTES + MAX_BODY:
                    drop(sock)
                elif b"\r\n\r\n" in buf or b"\n\n" in buf:
                    sel.unregister(sock)
                    del waiting[sock]
                    sock.setblocking(True)
                    self.prefixes[sock] = bytes(buf)
                    self._dispatch(sock, addr)
            while True:
                try:
                    sock, addr = self.arrivals.get_nowait()
                except queue.Empty:
                    break
                if len(waiting) >= self.max_waiting:
                    drop(next(iter(waiting)))
                sock.setblocking(False)
                waiting[sock] = (addr, time.monotonic(), bytearray())
                sel.register(sock, selectors.EVENT_READ, addr)
            cut = time.monotonic() - self.idle_timeout
            for sock in [s for s, (_a, since, _b) in waiting.items() if since < cut]:
                drop(sock)
        for sock in waiting:
            self.shutdown_request(sock)
        sel.close()

    def _dispatch(self, sock: socket.socket, addr: Any) -> None:
        with self.busy_lock:
            if self.busy >= self.max_busy:
                full = True
            else:
                full, self.busy = False, self.busy + 1
        if full:
            self.prefixes.pop(sock, None)
            self.shutdown_request(sock)  # every thread busy and the queue full: closed, not queued
            return
        try:
            self.pool.submit(self._handle, sock, addr)
        except RuntimeError:  # the pool is shut down: serve is stopping
            self.shutdown_request(sock)

    def _handle(self, sock: socket.socket, addr: Any) -> None:
        try:
            self.process_request_thread(sock, addr)
        finally:
            with self.busy_lock:
                self.busy -= 1

    def server_close(self) -> None:
        self.closed.set()
        super().server_close()
        self.waiter.join(2)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.wake_r.close()
        self.wake_w.close()


def make_server(host: str, port: int, app: App) -> Server:
    handler = type("BoundHandler", (Handler,), {"app": app})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("BoundServer", (Server,), {"address_family": family})
    return server_class((host, port), handler)
