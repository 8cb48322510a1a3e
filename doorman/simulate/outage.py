"""A TCP relay on 127.0.0.1 that can take a broker away from its clients and give it back: what a
broker restart and a stalled broker look like, without touching the broker (which other vhosts, other
runs and other people share).

- `down()`: every relayed connection is closed on both sides (each client sees its connection drop,
  the broker sees the client go: RabbitMQ deletes its exclusive and auto-delete queues, as in a
  restart), and the port is closed, so a reconnect is refused, as by a broker that is not there.
- `up()`: the same port listens again; clients reconnect as to a restarted broker.
- `hold(seconds)`: bytes stop flowing both ways, then flow on: a broker that accepts and does not
  answer (Redis's `CLIENT PAUSE ALL`, a node stalled by a long GC or a full disk).

The chaos soak on RabbitMQ (tests/chaos/rabbit_driver.py) puts one in front of AMQP and one in front
of the management API, so the broker vanishes for the workers and for Doorman together. The relay
forwards bytes unchanged and keeps none.
"""

from __future__ import annotations

import socket
import threading
import time

from doorman.simulate.partition import CHUNK, _close


class Outage:
    """Relay 127.0.0.1:`port` (a free one, or the given one) to `host:target_port`."""

    def __init__(self, host: str, target_port: int, port: int = 0):
        self.target = (host, target_port)
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = False
        self.listener: socket.socket | None = None
        self.port = port
        self.up()

    @property
    def is_up(self) -> bool:
        return self.listener is not None

    def up(self) -> None:
        """Listen (again) on the same port."""
        with self.lock:
            if self.listener is not None or self.closed:
                return
            deadline = time.monotonic() + 10
            while True:
                try:
                    listener = socket.create_server(("127.0.0.1", self.port))
                    break
                except OSError:  # the old socket's port not free yet: SO_REUSEADDR makes this rare
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self.port = listener.getsockname()[1]
            self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="outage-accept", daemon=True).start()

    def down(self) -> int:
        """Close the port and every relayed connection; how many connections were cut."""
        with self.lock:
            listener, self.listener = self.listener, None
            pairs, self.pairs = self.pairs, []
        if listener is not None:
            _close(listener)
        for down, upstream in pairs:
            _close(down)
            _close(upstream)
        return len(pairs)

    def hold(self, seconds: float) -> None:
        """No byte passes for `seconds` (this call blocks), then everything held flows on."""
        self.flowing.clear()
        try:
            time.sleep(seconds)
        finally:
            self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.flowing.set()
        self.down()

    # ------------------------------------------------------------ relaying

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                down, _ = listener.accept()
            except OSError:
                return  # closed by down() or close()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(down)
                continue
            upstream.settimeout(None)
            with self.lock:
                if self.listener is not listener:  # went down meanwhile
                    _close(down)
                    _close(upstream)
                    continue
                self.pairs.append((down, upstream))
            for src, dst in ((down, upstream), (upstream, down)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            self.flowing.wait()
            try:
                dst.sendall(data)
            except OSError:
                break
        _close(src)
        _close(dst)
        with self.lock:
            self.pairs = [p for p in self.pairs if src not in p]
