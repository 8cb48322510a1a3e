"""A black-holed broker for tests and benches: a TCP server on 127.0.0.1 that accepts every
connection and never answers (what a hung proxy or a dead host behind a load balancer looks like)."""

from __future__ import annotations

import socket
import threading


class BlackHole:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="black hole", daemon=True).start()

    def url(self, password: str = "") -> str:
        return f"redis://{':' + password + '@' if password else ''}127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read, never written

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        for conn in self.accepted:
            conn.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
