"""The HTTP side (stdlib `http.server`, one thread per request): routes, headers, auth.

Routes: `/` (the dashboard), `/static/*` (its files, from the package), `/metrics`, `/healthz`,
`/livez`, and the JSON API under `/api/v1/` (docs/serve.md). Every answer carries a strict
Content-Security-Policy: the page runs only its own script file, never inline code, and may
fetch only from this server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
                })
        return {"now": now, "clusters": out}


class Handler(BaseHTTPRequestHandler):
    server_version = "doorman-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers go out with the body, not one write per header line
    app: App  # set on the subclass made by make_server

    def setup(self) -> None:
        super().setup()
        try:  # a response is several writes: never let Nagle hold the last one back for a delayed ACK
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # no access log: stderr is for problems

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
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


def make_server(host: str, port: int, app: App) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
    server = server_class((host, port), handler)
    server.daemon_threads = True
    return server
