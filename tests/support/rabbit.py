"""The machine's real rabbitmq-server for the tests: one throw-away vhost per test.

RabbitMQ is too heavy to start per test, so the tests use the one `make` installs and starts
(AMQP on 127.0.0.1:5672, management API on 15672, user guest), each in a vhost of its own that is
deleted afterwards. A missing or stopped RabbitMQ fails the test loudly, never a skip.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import amqp
import pytest
import requests

HOST, PORT, MGMT = "127.0.0.1", 5672, "http://127.0.0.1:15672"
ADMIN = ("guest", "guest")
HOW = ("run `make install` (installs the Debian package rabbitmq-server and enables its management "
       "plugin), or: apt-get install rabbitmq-server && rabbitmq-plugins enable rabbitmq_management")


def require_rabbitmq() -> None:
    if not shutil.which("rabbitmqctl"):
        pytest.fail(f"rabbitmq-server is not installed: {HOW}. Tests never skip for a missing server.",
                    pytrace=False)
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError as e:
        pytest.fail(f"no RabbitMQ on {HOST}:{PORT} ({e}): start it (service rabbitmq-server start); {HOW}",
                    pytrace=False)
    try:
        requests.get(f"{MGMT}/api/overview", auth=ADMIN, timeout=5).raise_for_status()
    except requests.RequestException as e:
        pytest.fail(f"RabbitMQ's management API does not answer on {MGMT} ({type(e).__name__}): {HOW}",
                    pytrace=False)


def api(method: str, path: str, body: Any = None) -> requests.Response:
    r = requests.request(method, MGMT + path, auth=ADMIN, json=body, timeout=10)
    r.raise_for_status()
    return r


class Vhost:
    """A vhost only this test uses, guest allowed everything in it; deleted (with its queues) after."""

    def __init__(self) -> None:
        require_rabbitmq()
        self.name = f"doorman-test-{uuid.uuid4().hex[:10]}"
        self.path = quote(self.name, safe="")
        api("PUT", f"/api/vhosts/{self.path}")
        api("PUT", f"/api/permissions/{self.path}/guest", {"configure": ".*", "write": ".*", "read": ".*"})

    def url(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{HOST}:{PORT}/{self.path}"

    def delete(self) -> None:
        requests.delete(f"{MGMT}/api/vhosts/{self.path}", auth=ADMIN, timeout=30)

    def ctl(self, *what: str) -> list[dict[str, Any]]:
        """`rabbitmqctl list_<what> -p <vhost> <columns>` as RabbitMQ itself reports it."""
        out = subprocess.run(["rabbitmqctl", "-q", *what[:1], "-p", self.name, *what[1:], "--formatter", "json"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        return json.loads(out or "[]")

    def queues(self) -> dict[str, dict[str, Any]]:
        rows = self.ctl("list_queues", "name", "messages_ready", "messages_unacknowledged", "consumers",
                        "durable", "auto_delete", "exclusive")
        return {r["name"]: r for r in rows}

    def bindings(self) -> list[dict[str, Any]]:
        return self.ctl("list_bindings", "source_name", "destination_name", "routing_key")

    def listening(self, node: str) -> bool:
        """Whether worker `node` consumes its pidbox queue (so it answers broadcasts)."""
        conn = amqp.Connection(f"{HOST}:{PORT}", userid="guest", password="guest", virtual_host=self.name)
        try:
            conn.connect()
            ch = conn.channel()
            try:
                _q, _n, consumers = ch.queue_declare(queue=f"{node}.celery.pidbox", passive=True)
                return consumers > 0
            except amqp.exceptions.NotFound:
                return False
            except amqp.exceptions.ResourceLocked:  # Celery 5.5+: exclusive to the live worker
                return True
        finally:
            conn.close()


def wait_listening(vhost: Vhost, worker: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker {worker.name} exited")
        if vhost.listening(worker.name):
            time.sleep(0.3)
            return
        time.sleep(0.2)
    raise RuntimeError(f"worker {worker.name} not listening after {timeout} s")


@pytest.fixture(name="vhost")
def vhost_fixture() -> Iterator[Vhost]:
    v = Vhost()
    yield v
    v.delete()


class TlsTerminator:
    """A real TLS listener on a free loopback port, relaying each connection to RabbitMQ's plain
    AMQP port: an `amqps://` broker without reconfiguring the machine's RabbitMQ."""

    def __init__(self, cert: str, key: str) -> None:
        import ssl
        import threading

        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self.closing:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        import select

        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except OSError:  # the client refused our certificate: what the test wants to see
            raw.close()
            return
        upstream = socket.create_connection((HOST, PORT))
        try:
            while True:
                ready, _, _ = select.select([tls, upstream], [], [], 30)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is tls else tls).sendall(data)
        except OSError:
            return
        finally:
            tls.close()
            upstream.close()

    def close(self) -> None:
        self.closing = True
        self.sock.close()
