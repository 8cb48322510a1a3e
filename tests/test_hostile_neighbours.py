"""Issue 28, hostile neighbours round two: the RabbitMQ path and every HTTP peer.

Each test replays one finding of the review against real parts: a real RabbitMQ vhost where a
forged "worker" answers collect's `active` broadcast, and a real hostile HTTP server on loopback
standing for the management API (slow drip, 60 MB, bad gzip, truncated answer). Each fails on
867c2be and asserts the safe behaviour: bounded memory, a finished run, the AMQP fallback said
once, and the right alert (workers_down) or none (no redis_down)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import amqp
import orjson
import pytest

from tests.support.process import BIN, LAUNCHER_RSS, cli, records, wait_for
from tests.support.rabbit import HOST, PORT, Vhost, api, vhost_fixture  # noqa: F401 - the fixture `vhost`

pytestmark = pytest.mark.e2e  # real workers, brokers or whole pipelines

ENV = {"DOORMAN_CONFIG": ""}
FAKE = "fake@evil"


def measured(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[list[dict], bytes, float, float]:
    """doorman-collect ARGS forked from the small launcher: (records, stderr, wall s, peak RSS MiB)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_BROKER", "DOORMAN_"))}
    full.update(env)
    p = subprocess.run([sys.executable, "-S", "-c", LAUNCHER_RSS, str(BIN / "doorman-collect"), *args],
                       capture_output=True, env=full, timeout=timeout)
    *out, last = p.stdout.splitlines()
    wall, rss, code = last.split()
    assert int(code) == 0, p.stderr
    return [orjson.loads(x) for x in out], p.stderr, float(wall), float(rss)


def alert_types(snap: dict) -> list[str]:
    out = cli("doorman-analyze", input=orjson.dumps(snap) + b"\n", env=ENV)
    return [a["alert_type"] for a in records(out.stdout)]


# ------------------------------------------------------------------ forged pidbox replies (RabbitMQ)

class ForgedWorker:
    """A client of the vhost that binds a pidbox queue as a worker would and answers every
    broadcast with `reply` (b"TICKET"-free: the ticket goes in the headers, as Celery's do)."""

    def __init__(self, vhost: Vhost, reply: bytes):
        self.reply, self.stop, self.answered = reply, threading.Event(), 0
        self.conn = amqp.Connection(f"{HOST}:{PORT}", userid="guest", password="guest", virtual_host=vhost.name)
        self.conn.connect()
        self.ch = self.conn.channel()
        self.ch.exchange_declare("celery.pidbox", "fanout", durable=False, auto_delete=False)
        self.ch.queue_declare(f"{FAKE}.celery.pidbox", auto_delete=True)
        self.ch.queue_bind(f"{FAKE}.celery.pidbox", "celery.pidbox")
        self.ch.basic_consume(f"{FAKE}.celery.pidbox", no_ack=True, callback=self.answer)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def answer(self, msg: amqp.Message) -> None:
        body = orjson.loads(msg.body)
        to = body["reply_to"]
        self.ch.basic_publish(amqp.Message(self.reply, content_type="application/json",
                                           application_headers={"ticket": body["ticket"]}),
                              exchange=to["exchange"], routing_key=to["routing_key"])
        self.answered += 1

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.conn.drain_events(timeout=0.2)
            except TimeoutError:
                continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.conn.close()


def listed(vhost: Vhost, name: str) -> bool:
    """The forged pidbox queue listed and the task counted by the management API (its figures trail)."""
    rows = {q["name"]: q for q in api("GET", f"/api/queues/{vhost.path}?columns=name,messages_ready").json()}
    return name in rows and rows.get("celery", {}).get("messages_ready") == 1


@pytest.mark.parametrize("reply", [
    b'{"' + FAKE.encode() + b'": [' + b",".join([b"{}"] * (4 * 1024 * 1024 // 3 - 20)) + b"]}",
    b"{" + b",".join(b'"%x":[]' % i for i in range(287_021)) + b"}",
], ids=["4 MiB of tasks", "287,021 nodes"])
def test_a_forged_active_reply_on_rabbitmq_is_bounded_before_parsing(vhost, reply):
    """PoC: one 4 MiB reply gave `active_tasks: 1398073` and 809 MiB peak RSS; a reply naming
    287,021 nodes made them all alive and kept workers_down quiet. Now both are refused before
    parsing (budgets, one node per reply), memory stays small and workers_down fires."""
    assert len(reply) <= 4 * 1024 * 1024  # under 867c2be's only budget
    pub = amqp.Connection(f"{HOST}:{PORT}", userid="guest", password="guest", virtual_host=vhost.name)
    pub.connect()
    ch = pub.channel()
    ch.queue_declare("celery", durable=True, auto_delete=False)
    ch.basic_publish(amqp.Message(b"{}", headers={"id": "t1", "task": "demo.sleep"}), exchange="", routing_key="celery")
    pub.close()
    fake = ForgedWorker(vhost, reply)
    try:
        wait_for(lambda: listed(vhost, f"{FAKE}.celery.pidbox"), 30, "the forged pidbox queue in the listing")
        snaps, _err, _wall, rss = measured("--once", "--broker-url", vhost.url(), env=ENV)
        assert fake.answered >= 1
    finally:
        fake.close()
    [snap] = snaps
    assert snap["error"] is None and snap["pending_tasks"] == 1
    assert snap["alive_workers"] == 0 and snap["active_tasks"] == 0
    assert len(snap["workers"]) <= 1
    assert rss < 100, f"peak RSS {rss:.0f} MiB"
    assert "workers_down" in alert_types(snap)


def test_reply_budget_keeps_one_node_per_reply_and_caps_tasks():
    from doorman.bounds import MAX_ACTIVE, ReplyBudget, check_reply

    b = ReplyBudget(max_nodes=2, max_tasks=MAX_ACTIVE + 10)
    assert b.accept({"a@h": [{}] * (MAX_ACTIVE + 5)}) == {"a@h": [{}] * MAX_ACTIVE}
    assert b.accept({"b@h": [], "c@h": []}) == {}  # two nodes in one message: forged
    assert b.accept({"d@h": [{}] * 50}) == {"d@h": [{}] * 10}  # the request's task budget spent
    assert b.accept({"e@h": []}) == {}  # the node budget spent
    with pytest.raises(ValueError):
        check_reply(b"[" + b"{}," * 30_000 + b"{}]")  # 1 MiB of {} would be ~40 MiB parsed


# ------------------------------------------------------------------ a hostile management API

class HostileHttp:
    """A real HTTP server on loopback that answers every request the way `mode` says."""

    def __init__(self, mode: str):
        self.mode, self.requests, self.closing = mode, 0, False
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            if self.mode == "drip":  # one byte every 2 s, from the status line on
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"[" + b" " * 99_999:
                    if self.closing:
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(2)
            elif self.mode == "60mb":
                body_len = 60 * 1024 * 1024 // 3 * 3
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                             % body_len)
                conn.sendall(b"[" + b"{}," * (body_len // 3 - 1) + b"{}")  # ~20M empty objects
            elif self.mode == "badgzip":
                body = b"\x1f\x8b\x08\x00" + os.urandom(4000)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
                             + body)
            elif self.mode == "truncated":
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n[{"name": "celery", "mess')
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.closing = True
        self.sock.close()


@pytest.mark.parametrize("mode", ["drip", "60mb", "badgzip", "truncated"])
def test_a_hostile_management_api_costs_one_deadline_and_collect_reads_over_amqp(vhost, mode):
    """PoC: a drip held `--once` ~690 s (the timeout was per read); 60 MB of `[{},…]` took 1,926 MiB
    and gave pending 0; bad gzip, a stall and a truncated answer escaped as urllib3 errors: no AMQP
    fallback, and analyze paged redis_down. Now each costs at most the deadline, memory is bounded,
    the fallback is said once and the snapshot is the broker's, with no false page."""
    pub = amqp.Connection(f"{HOST}:{PORT}", userid="guest", password="guest", virtual_host=vhost.name)
    pub.connect()
    ch = pub.channel()
    ch.queue_declare("celery", durable=True, auto_delete=False)
    for _ in range(3):
        ch.basic_publish(amqp.Message(b"{}"), exchange="", routing_key="celery")
    pub.close()
    server = HostileHttp(mode)
    try:
        snaps, err, wall, rss = measured(
            "--once", "--broker-url", vhost.url(), timeout=90,
            env={**ENV, "DOORMAN_RABBITMQ_MANAGEMENT_URL": server.url, "DOORMAN_RABBITMQ_TIMEOUT": "3",
                 "DOORMAN_MONITORED_QUEUES": "celery"})
    finally:
        server.close()
    assert server.requests >= 1
    [snap] = snaps
    assert snap["error"] is None and snap["redis_connected"] is True
    assert snap["queues"]["celery"]["pending"] == 3 and snap["queues"]["celery"]["depth_source"] != "management_api"
    assert err.count(b"reading monitored_queues over AMQP instead") == 1, err
    assert b"Traceback" not in err
    assert rss < 100, f"peak RSS {rss:.0f} MiB"
    print(f"{mode}: {wall:.1f} s, {rss:.0f} MiB")
    assert "redis_down" not in alert_types(snap)


def test_sigterm_ends_collect_within_moments_while_the_management_api_drips(vhost):
    """PoC: SIGTERM did not stop a `--once` held by a dripping management API. Now the stop cuts
    the HTTP call in flight and the snapshot finishes over AMQP (the deadline here is 10 minutes)."""
    server = HostileHttp("drip")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_BROKER", "DOORMAN_"))}
    env.update(ENV, DOORMAN_RABBITMQ_MANAGEMENT_URL=server.url, DOORMAN_RABBITMQ_TIMEOUT="600")
    p = subprocess.Popen([str(BIN / "doorman-collect"), "--once", "--broker-url", vhost.url()],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        wait_for(lambda: server.requests >= 1, 30, "collect to ask the management API")
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        server.close()
    assert p.returncode == 0, err
    [snap] = records(out)
    assert snap["error"] is None and snap["redis_connected"] is True


def test_one_error_class_and_a_total_deadline_for_every_call():
    """The helper itself: a drip ends at the deadline, a big body at the cap (or cut, for sinks),
    bad gzip and truncation are `HttpError` like a refused connection."""
    from doorman import httpcall

    s = httpcall.session()
    for mode in ("drip", "badgzip", "truncated", "60mb"):
        server = HostileHttp(mode)
        try:
            with pytest.raises(httpcall.HttpError):
                httpcall.call(s, "GET", server.url + "/", deadline=3, max_bytes=1024 * 1024)
        finally:
            server.close()
    server = HostileHttp("60mb")
    try:
        r = httpcall.call(s, "GET", server.url + "/", deadline=10, max_bytes=1000, over="cut")
        assert r.cut and len(r.content) == 1000 and r.status_code == 200
    finally:
        server.close()
    with pytest.raises(httpcall.HttpError):
        httpcall.call(s, "GET", f"http://127.0.0.1:{free_closed_port()}/", deadline=3, max_bytes=10)


def free_closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_dripping_heartbeat_monitor_and_sink_end_at_their_deadline():
    """Heartbeat pings and sinks take the same helper: a drip is a failure said in words, never a hang."""
    from doorman.notify.heartbeat import requests_get
    from doorman.sinks.http import HttpSink, Request

    server = HostileHttp("drip")
    try:
        get = requests_get()
        with pytest.raises(Exception) as e:
            get(server.url + "/ping", 2.0)
        assert type(e.value).__name__ == "HttpError" and "within 2 s" in str(e.value)
        from doorman import httpcall

        result = HttpSink(httpcall.session(), timeout=(1.0, 1.0)).post(Request(server.url + "/hook", {"a": 1}))
        assert result.outcome == "retry" and "within 2 s" in (result.error or "")
    finally:
        server.close()
