"""doorman-serve: following files, the series, /healthz, auth, history. Real processes, real promtool.

The scenarios a user meets: serve follows the files the daemon appends to (through rotation and
truncation), exposes them to Prometheus, answers its probes, and refuses to open itself to the
network without a token.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from doorman.serve.follow import FileFollower
from doorman.serve.health import health
from doorman.serve.history import History, Reader
from doorman.serve.metrics import exposition_maker
from doorman.serve.state import Limits, State
from tests.support.exporter import promtool_problems
from tests.support.process import BIN, require, wait_for
from tests.support.serve import XSS, Serve, alert, lines, snapshot


def promtool() -> str:
    return require("promtool", "prometheus")


# --- following files --------------------------------------------------------------------------

def test_follow_reads_appends_partial_lines_rotation_and_truncation(tmp_path):
    path = tmp_path / "s.ndjson"
    got: list[tuple[int, bytes]] = []
    said: list[str] = []
    f = FileFollower(str(path), lambda _n, no, raw: got.append((no, raw)), said.append, backlog=1 << 20)
    f.poll()
    assert "not there" in said[0]
    path.write_bytes(b"a\nb\nhalf")
    f.poll()
    assert got == [(1, b"a"), (2, b"b")]  # the partial line waits for its newline
    with open(path, "ab") as out:
        out.write(b"-line\n")
    f.poll()
    assert got[-1] == (3, b"half-line")
    with open(path, "ab") as out:  # rotation by rename: the old file's last lines, then the new file
        out.write(b"last-old\n")
    path.rename(tmp_path / "s.ndjson.1")
    path.write_bytes(b"new1\n")
    f.poll()
    assert got[-2:] == [(4, b"last-old"), (1, b"new1")]
    assert any("rotated" in s for s in said)
    path.write_bytes(b"")  # truncation (copytruncate), then new lines
    f.poll()
    with open(path, "ab") as out:
        out.write(b"t1\n")
    f.poll()
    assert got[-1] == (1, b"t1")
    assert any("truncated" in s for s in said)
    f.close()


def test_follow_starts_near_the_end_of_a_big_file_with_exact_line_numbers(tmp_path):
    path = tmp_path / "big.ndjson"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(1, 1001)))
    got: list[tuple[int, bytes]] = []
    f = FileFollower(str(path), lambda _n, no, raw: got.append((no, raw)), lambda _m: None, backlog=50)
    f.poll()
    assert got and got[-1] == (1000, b"line 1000")
    assert all(raw == b"line %d" % no for no, raw in got)
    assert len(got) < 10


# --- state and series --------------------------------------------------------------------------

def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_use_celery_exporter_names_carry_cluster_and_escape_hostile_names(tmp_path):
    state = State()
    t = time.time()
    state.snapshot(snapshot(t, {"celery": 7, XSS: 2}, [("w1@h", True, 1), ("w2@k", True, 0)], oldest={"celery": 42.5},
                            unacked=3))
    state.alert(alert(t))
    text = exposition_maker(state, lambda: t + 5)().decode()
    fams = families(text)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    assert samples[("celery_queue_length", (("cluster", "default"), ("queue_name", "celery")))] == 7
    assert samples[("celery_queue_length", (("cluster", "default"), ("queue_name", XSS)))] == 2
    assert samples[("celery_worker_up", (("cluster", "default"), ("hostname", "h")))] == 1  # the exporter's: after @
    assert samples[("celery_worker_tasks_active", (("cluster", "default"), ("hostname", "h")))] == 1
    assert samples[("doorman_queue_oldest_age_seconds", (("cluster", "default"), ("queue_name", "celery")))] == 42.5
    assert samples[("doorman_unacked_tasks", (("cluster", "default"),))] == 3
    assert samples[("doorman_snapshot_age_seconds", (("cluster", "default"),))] == pytest.approx(5, abs=0.01)
    assert samples[("doorman_alerts_firing", (("alert_type", "backlog_explosion"), ("cluster", "default"),
                                              ("severity", "critical")))] == 1
    assert samples[("doorman_alerts_emitted_total", (("alert_type", "backlog_explosion"), ("cluster", "default"),
                                                     ("severity", "critical"), ("status", "firing")))] == 1
    assert all("cluster" in s.labels for f in fams.values() for s in f.samples)
    assert promtool_problems(promtool(), text) == []


def test_cardinality_caps_and_gone_workers_expire(tmp_path):
    state = State(Limits(max_queues=3, max_workers=2, worker_expiry=60))
    t = 1_800_000_000.0
    state.snapshot(snapshot(t, {f"q{i}": i for i in range(10)}, [("a@h", True, 0), ("b@h", True, 0), ("c@h", True, 0)]))
    c = state.clusters["default"]
    assert sorted(c.queues) == ["q7", "q8", "q9"] and c.queues_omitted == 7
    assert len(c.workers) == 2 and c.workers_omitted == 1
    state.snapshot(snapshot(t + 30, {}, [("a@h", True, 0)]))  # b is gone: up 0, kept for now
    assert {n: w.alive for n, w in c.workers.items()} == {"a@h": True, "b@h": False}  # c was over the cap
    state.snapshot(snapshot(t + 61, {}, [("a@h", True, 0)]))  # 61 s after they were last alive
    assert list(c.workers) == ["a@h"]


def test_healthz_fresh_stale_broker_down_and_no_data():
    state = State()
    assert health(state, 1000.0, 10)[0] == 503 and health(state, 1000.0, 10)[1]["reason"] == "no_data"
    state.snapshot(snapshot(1_800_000_000.0))
    assert health(state, 1_800_000_029.0, 10)[0] == 200
    code, body = health(state, 1_800_000_031.0, 10)  # older than 3 x check_interval
    assert (code, body["reason"]) == (503, "stale")
    state.snapshot(snapshot(1_800_000_040.0, connected=False))
    assert health(state, 1_800_000_041.0, 10)[1]["reason"] == "broker_down"


# --- history -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_history_downsamples_keeps_maxima_prunes_and_is_private(tmp_path):
    path = tmp_path / "state" / "doorman" / "h.sqlite3"
    h = History(str(path), retention=7 * 86400)
    t0 = 1_800_000_000.0
    n = 8 * 8640 // 4  # 8 days of 40 s snapshots
    for i in range(n):
        pending = 500 if i == n - 100 else i % 7
        h.snapshot("default", t0 + i * 40, snapshot(t0 + i * 40, {"celery": pending}), 1)
    end = t0 + (n - 1) * 40
    h.prune(end)
    r = Reader(str(path))
    s = r.series("default", end - 7 * 86400, end)
    assert 500 < len(s["ts"]) <= 600
    assert max(v for v in s["queues"]["celery"]["pending"] if v is not None) == 500  # the spike survives
    assert r.db.execute("SELECT min(ts) FROM samples").fetchone()[0] >= end - 7 * 86400
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    h.close()
    r.close()


# --- the command -------------------------------------------------------------------------------

@pytest.mark.slow
def test_serve_follows_a_file_reports_bad_lines_and_keeps_history_across_restart(tmp_path):
    stream = tmp_path / "stream.ndjson"
    t = time.time()
    stream.write_bytes(lines(snapshot(t - 20, {"celery": 4})) + b"not json\n"
                       + lines({"v": 1, "kind": "delivery"}, alert(t - 15)))
    serve = Serve(tmp_path, str(stream)).wait_up()
    try:
        wait_for(lambda: 'celery_queue_length{cluster="default",queue_name="celery"} 4.0' in serve.get("/metrics").text,
                 10, "the first snapshot in /metrics")
        with open(stream, "ab") as out:
            out.write(lines(snapshot(t - 5, {"celery": 9}), alert(t - 4, status="resolved", started_at=t - 15)))
        wait_for(lambda: 'queue_name="celery"} 9.0' in serve.get("/metrics").text, 10, "the appended snapshot")
        assert f"{stream}:2: not valid JSON" in serve.stderr
        assert "delivery" not in serve.stderr  # other kinds are ignored quietly
        assert serve.get("/healthz").status_code == 200
        assert serve.get("/livez").text == "ok\n"
    finally:
        serve.stop()
    assert serve.proc.returncode == 0
    # a restart with nothing to read: the history is still there
    serve = Serve(tmp_path, str(tmp_path / "absent.ndjson")).wait_up()
    try:
        h = serve.get("/api/v1/history?range=1h&cluster=default").json()
        assert h["queues"]["celery"]["pending"][-2:] == [4, 9]
        [a] = serve.get("/api/v1/alerts?range=1h&cluster=default").json()["alerts"]
        assert a["alert_type"] == "backlog_explosion"
        assert a["resolved_at"] == pytest.approx(t - 4, abs=0.01)
        assert serve.get("/healthz").json()["reason"] == "no_data"
        assert serve.get("/healthz").status_code == 503
    finally:
        serve.stop()
    db = tmp_path / "xdg" / "doorman" / "history.sqlite3"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and stat.S_IMODE(db.parent.stat().st_mode) == 0o700


@pytest.mark.slow
def test_serve_reads_stdin(tmp_path):
    serve = Serve(tmp_path, args=("--history", "none"), stdin=subprocess.PIPE)
    try:
        serve.wait_up()
        assert serve.proc.stdin is not None
        serve.proc.stdin.write(lines(snapshot(time.time(), {"celery": 3})) + b"[]\n")
        serve.proc.stdin.flush()
        wait_for(lambda: 'queue_name="celery"} 3.0' in serve.get("/metrics").text, 10, "stdin's snapshot")
        assert "<stdin>:2: expected a JSON object" in serve.stderr
    finally:
        serve.stop()


def run_serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    e.update({"XDG_STATE_HOME": str(tmp_path / "xdg"), **(env or {})})
    return subprocess.run([str(BIN / "doorman-serve"), *args], capture_output=True, text=True, timeout=30, env=e,
                          stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_public_address_needs_a_token_or_an_explicit_no_auth(tmp_path):
    r = run_serve(tmp_path, "--listen", "0.0.0.0:0")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "DOORMAN_SERVE_TOKEN" in r.stderr and "Traceback" not in r.stderr
    r = run_serve(tmp_path, "--retention", "soon")
    assert (r.returncode, r.stderr.count("\n")) == (2, 1) and "--retention" in r.stderr
    r = run_serve(tmp_path, "--listen", "nonsense")
    assert (r.returncode, r.stderr.count("\n")) == (2, 1) and "--listen" in r.stderr


@pytest.mark.slow
def test_no_auth_warns_and_a_token_guards_everything_but_the_probes(tmp_path):
    serve = Serve(tmp_path, args=("--no-auth",))  # loopback anyway: --no-auth alone changes nothing
    serve.stop()
    token = "s3cret-token-value"
    serve = Serve(tmp_path, str(tmp_path / "none.ndjson"), env={"DOORMAN_SERVE_TOKEN": token}).wait_up()
    try:
        assert serve.get("/metrics").status_code == 401
        assert serve.get("/").status_code == 401
        assert serve.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert serve.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        basic = base64.b64encode(f"prometheus:{token}".encode()).decode()
        assert serve.get("/api/v1/status", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert serve.get("/livez").status_code == 200
        assert serve.get("/healthz").status_code == 503
        page = serve.get("/", headers={"Authorization": f"Bearer {token}"})
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert "<script>" not in page.text and token not in page.text
    finally:
        serve.stop()
    assert token not in serve.stderr
    e = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    proc = subprocess.Popen([str(BIN / "doorman-serve"), "--listen", "0.0.0.0:0", "--no-auth", "--history", "none"],
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=e, text=True)
    try:
        assert proc.stderr is not None
        assert "--no-auth" in proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(10)


def test_hostile_shapes_never_crash_serve_and_stay_bounded(tmp_path):
    said: list[str] = []
    state = State(Limits(max_clusters=2))
    history = History(str(tmp_path / "h" / "h.sqlite3"), retention=86400)
    from doorman.serve.ingest import Ingest

    ingest = Ingest(state, history, said.append)
    t = time.time()
    long_name = "q" * 10_000
    odd = snapshot(t, {long_name: 2**62, "x": 1}, [("w@h", True, 1)])
    odd["queues"]["x"]["by_priority"] = {"0": "many", "1" * 500: 3}
    odd["workers"] += [{"name": "<b>\n\u0000" * 100, "alive": True, "active": True}]
    odd["unacked"] = ["not", "an", "object"]
    odd["collect_ms"] = "slow"
    records = [odd, {**snapshot(t), "queues": []}, snapshot(t, cluster="a"), snapshot(t, cluster="b"),
               snapshot(t, cluster="c"), {**alert(t), "severity": "apocalyptic"}, {**alert(t), "subject": None},
               {"kind": "alert"}, {"kind": "snapshot"}, {"kind": "other", "anything": 1}]
    for i, rec in enumerate(records, start=1):
        ingest.line("hostile", i, orjson.dumps(rec))
    assert len(state.clusters) == 2  # capped: `c` refused, once said
    assert any("'c' ignored" in s for s in said)
    assert any(s.startswith("hostile:6: not an alert: severity") for s in said)
    assert any(s.startswith("hostile:9: not a snapshot") for s in said)
    assert any(s.startswith("hostile:2: not a snapshot: queues must be an object") for s in said)
    c = state.clusters["default"]
    assert max(len(q) for q in c.queues) == 200
    assert set(c.workers) == {"w@h", ("<b>\n\u0000" * 100)[:200]}
    text = exposition_maker(state, lambda: t)().decode()
    assert promtool_problems(promtool(), text) == []
    assert health(state, t, 30)[0] in (200, 503)
    history.close()
