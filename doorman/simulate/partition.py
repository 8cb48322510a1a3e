"""A TCP relay on 127.0.0.1 between Celery workers and Redis that can leave chosen connections
half-open: the fault behind a ghost worker with no consumer connection (ghost_worker case a).

After a network blip (a NAT or firewall forgetting the flow, a partition whose reset never
arrives) a worker's task consumer can sit on a dead TCP connection: Redis has dropped it, but the
worker never hears so and waits for its `BRPOP` reply for ever, while its other connections
(heartbeats, pidbox) work. `cut_consumers()` makes exactly that: the Redis side of every relayed
connection that has sent `BRPOP` is closed (Redis drops the client at once), and the worker's side
stays open and silent. What else was tried, and why it is not a ghost: docs/simulate.md.

The RabbitMQ demo reaches AMQP through one too, so that `close()` cuts Doorman off the broker at
once (`RabbitVhost.stop`).

The relay forwards bytes unchanged and keeps none; it writes nothing to the broker.
"""

from __future__ import annotations

import contextlib
import socket
import threading

CHUNK = 65536


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


class _Pair:
    """One relayed connection: the worker's socket and ours to Redis."""

    def __init__(self, down: socket.socket, up: socket.socket):
        self.down, self.up = down, up
        self.consumer = False  # it has sent BRPOP: a task consumer
        self.cut = False

    def pump(self, src: socket.socket, dst: socket.socket, from_worker: bool) -> None:
        while True:
            try:
                data = src.recv(CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            if from_worker and not self.consumer and b"BRPOP" in data.upper():
                self.consumer = True
            if self.cut:
                continue  # the worker's side of a cut connection: swallowed, never answered
            try:
                dst.sendall(data)
            except OSError:
                break
        if not self.cut:  # an ordinary close on either side ends both
            _close(self.down)
            _close(self.up)


class Partition:
    """Relay 127.0.0.1:<port> to Redis at `host:port`; `url` is what the workers connect to."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[_Pair] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, name="partition-accept", daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                if self.closed:
                    return
                continue
            try:
                up = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(down)  # Redis is not there: the worker sees a refused connection, as without us
                continue
            up.settimeout(None)
            pair = _Pair(down, up)
            with self.lock:
                self.pairs.append(pair)
            threading.Thread(target=pair.pump, args=(down, up, True), daemon=True).start()
            threading.Thread(target=pair.pump, args=(up, down, False), daemon=True).start()

    def cut_consumers(self) -> int:
        """Leave every consumer connection half-open; how many were cut."""
        with self.lock:
            chosen = [p for p in self.pairs if p.consumer and not p.cut]
        for p in chosen:
            p.cut = True
            _close(p.up)
        return len(chosen)

    def close(self) -> None:
        self.closed = True
        _close(self.listener)
        with self.lock:
            for p in self.pairs:
                _close(p.down)
                _close(p.up)
            self.pairs.clear()
