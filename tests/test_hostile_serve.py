"""Issue 28, doorman-serve against any client: each finding of the review replayed against a real
`doorman-serve` process over real sockets. Each fails on 867c2be."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import orjson
import pytest
import requests

from tests.support.process import BIN, wait_for
from tests.support.serve import Serve, alert, lines, snapshot


@pytest.fixture
def serve_factory(tmp_path):
    started: list[Serve] = []

    def start(*files: str, args: tuple[str, ...] = ("--history", "none"), env: dict[str, str] | None = None) -> Serve:
        s = Serve(tmp_path, *files, args=args, env=env)
        started.append(s)
        return s.wait_up()

    yield start
    for s in started:
        s.stop()


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_200_idle_connections_neither_stall_livez_nor_grow_threads(tmp_path, serve_factory):
    """PoC: 200 idle connections held 203 threads; under the unit's TasksMax=64 /livez stopped
    answering. Now idle connections wait in a selector, the thread count stays bounded."""
    s = serve_factory()
    before = threads_of(s.proc.pid)
    idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(200)]
    half = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(20)]
    for c in half:  # a request begun and never finished: each may hold a thread for one read timeout
        c.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        for _ in range(5):
            assert s.get("/livez").text == "ok\n"
        assert threads_of(s.proc.pid) <= before + 8 + 2, threads_of(s.proc.pid)
        assert "can't start new thread" not in s.stderr and "Traceback" not in s.stderr
    finally:
        for c in idle + half:
            c.close()


def test_a_dns_rebinding_host_is_refused_and_loopback_names_and_ips_are_not(serve_factory):
    """PoC: without a Host check a rebinding page read the loopback dashboard, API and metrics."""
    s = serve_factory(env={"DOORMAN_SERVE_ALLOWED_HOSTS": "dash.example.org"})
    for host in ("evil.example.com", "evil.example.com:9808", "127.0.0.1.nip.io"):
        r = requests.get(s.url + "/api/v1/status", headers={"Host": host}, timeout=5)
        assert r.status_code == 421, host
        assert requests.get(s.url + "/metrics", headers={"Host": host}, timeout=5).status_code == 421
    for host in (f"127.0.0.1:{s.port}", "localhost", f"[::1]:{s.port}", "10.1.2.3:9808", "dash.example.org",
                 socket.gethostname()):
        assert requests.get(s.url + "/api/v1/status", headers={"Host": host}, timeout=5).status_code == 200, host


def test_a_post_carrying_a_second_request_gets_one_answer_or_a_close(serve_factory):
    """PoC: the body was never read, so a POST carrying a second request got two answers (405,
    then 200): behind a proxy that reuses connections, answers can reach the wrong client."""
    s = serve_factory()
    smuggled = b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for body in (smuggled, b"x" * 10):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        req = b"POST /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        c.sendall(req + (smuggled if body != smuggled else b""))
        got = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            got += chunk
        c.close()
        assert got.count(b"HTTP/1.1 ") == 1, got
        assert got.startswith(b"HTTP/1.1 405")
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.sendall(b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999\r\n\r\n")
    assert c.recv(4096).startswith(b"HTTP/1.1 413")
    c.close()
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 8000 + b"\r\n" * 1
              + b"X-Pad2: " + b"a" * 9000 + b"\r\n\r\n")
    assert c.recv(4096).startswith(b"HTTP/1.1 431")
    c.close()


def test_a_future_dated_snapshot_neither_freezes_serve_nor_wipes_history_and_health_is_not_ok(tmp_path,
                                                                                          serve_factory):
    """PoC: one snapshot 30 days ahead froze serve (later ones looked older), /healthz stayed ok
    with a negative age, and the history was wiped (121 samples -> 1)."""
    now = time.time()
    stream = tmp_path / "stream.ndjson"
    stream.write_bytes(lines(*[snapshot(now - 60 + i, queues={"celery": i}) for i in range(60)],
                             snapshot(now + 30 * 86400, queues={"celery": 999}),
                             alert(now + 30 * 86400, alert_type="forged_future")))
    s = serve_factory(str(stream), args=("--history", str(tmp_path / "h" / "history.sqlite3")))
    wait_for(lambda: "ahead of this clock" in s.stderr, 20, "the future-dated line to be refused")
    assert s.stderr.count("ahead of this clock") == 1
    with open(stream, "ab") as f:
        f.write(lines(snapshot(time.time(), queues={"celery": 7})))
    status = wait_for(lambda: (lambda st: st if st["clusters"] and st["clusters"][0]["pending"] == 7 else None)(
        s.get("/api/v1/status").json()), 20, "the real snapshot after the forged one")
    assert status["clusters"][0]["age_seconds"] >= 0
    hist = s.get("/api/v1/history?range=1h").json()
    assert len([p for p in hist["pending"] if p is not None]) > 10  # not wiped
    assert "forged_future" not in str(s.get("/api/v1/alerts?range=1h").json())


def test_healthz_never_calls_a_negative_age_ok():
    from doorman.serve.health import health
    from doorman.serve.state import State

    state = State()
    snap = snapshot(time.time() + 100)
    assert state.snapshot(snap)
    code, body = health(state, time.time(), 30)
    assert code == 503 and body["clusters"][0]["reason"] == "stale"


def test_alert_rows_are_capped(tmp_path, monkeypatch):
    from doorman.serve import history

    monkeypatch.setattr(history, "MAX_ALERT_ROWS", 50)
    h = history.History(str(tmp_path / "d" / "h.sqlite3"), 7 * 86400)
    now = time.time()
    for i in range(200):
        h.alert("default", alert(now + i, fingerprint=f"{i:032x}"), now + i, now + i)
    assert h.db.execute("SELECT count(*) FROM alerts").fetchone()[0] <= 50
    assert h.db.execute("SELECT min(started_at) FROM alerts").fetchone()[0] >= now + 150  # the newest kept
    h.close()


def run_serve(history: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    env.update(DOORMAN_CONFIG="", XDG_STATE_HOME=str(tmp_path / "xdg"))
    return subprocess.run([str(BIN / "doorman-serve"), "--listen", "127.0.0.1:0", "--history", history],
                          stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=30)


def test_a_history_file_planted_by_another_user_is_refused(tmp_path):
    """PoC: a history file planted by another user in a 1777 directory was used by a root serve and
    showed a forged alert. Now: one line naming it, exit 2 (the tests run as root: chown)."""
    assert os.geteuid() == 0, "this test plants files owned by another uid: run as root"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "history.sqlite3"
    planted.write_bytes(b"")
    os.chown(planted, 65534, 65534)
    p = run_serve(str(planted), tmp_path)
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and b"writable by other users" in p.stderr

    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    other = own / "history.sqlite3"
    other.write_bytes(b"")
    os.chown(other, 65534, 65534)
    p = run_serve(str(other), tmp_path)
    assert p.returncode == 2 and b"belongs to another user" in p.stderr and b"Traceback" not in p.stderr


def test_a_symlinked_history_file_is_refused(tmp_path):
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    (own / "history.sqlite3").symlink_to(target)
    p = run_serve(str(own / "history.sqlite3"), tmp_path)
    assert p.returncode == 2 and b"symbolic link" in p.stderr and b"Traceback" not in p.stderr
    assert target.read_bytes() == b"precious"


def test_control_bytes_in_names_are_escaped_in_metrics(tmp_path, serve_factory):
    """PoC: raw ESC, BEL and NUL bytes from queue names reached /metrics label values."""
    stream = tmp_path / "s.ndjson"
    evil = "q\x1b]0;pwned\x07\x00\x9b"
    stream.write_bytes(lines(snapshot(time.time(), queues={evil: 3}, workers=[("w\x1b[2J@h", True, 0)])))
    s = serve_factory(str(stream))
    text = wait_for(lambda: (lambda b: b if b"celery_queue_length{" in b else None)(s.get("/metrics").content),
                    20, "the queue in /metrics")
    assert not any(b < 0x20 and b != 0x0A for b in text) and b"\x7f" not in text
    assert "\x9b" not in text.decode()
    assert b'queue_name="q\\\\x1b]0;pwned\\\\x07\\\\x00\\\\x9b"' in text
    assert orjson.loads(orjson.dumps(text.decode()))  # valid UTF-8 text
