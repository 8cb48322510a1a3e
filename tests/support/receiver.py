"""A real HTTP receiver for the delivery tests: a threaded server on a free 127.0.0.1 port.

Each path answers from a script (a list of `Reply`, one per request, the last one repeating), and
every request is recorded with its headers and JSON body, so tests check exactly what arrived.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: longer than the client's timeout = a hung receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int | None = None  # status sent back; None while hanging or if the client left

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Listening(ThreadingHTTPServer):
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 overflows under a burst: each overflow a 1 s SYN retry


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # one write per response: no Nagle / delayed-ACK stall between headers and body

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                rec = Received(self.path, dict(self.headers.items()), self.rfile.read(length), time.monotonic())
                with receiver.lock:
                    receiver.requests.append(rec)
                    script = receiver.scripts.get(self.path) or [Reply()]
                    reply = script.pop(0) if len(script) > 1 else script[0]
                if reply.delay and receiver.closing.wait(reply.delay):
                    return
                data = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    rec.answered = reply.status
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Listening(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        with self.lock:
            self.scripts[path] = list(replies)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def delivered(self, path: str) -> list[Received]:
        """Requests this receiver accepted (answered 2xx)."""
        return [r for r in self.at(path) if r.answered is not None and 200 <= r.answered < 300]

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
