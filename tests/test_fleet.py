"""doorman-collect over a `clusters:` list of real redis-servers, one of them black-holed (it
accepts the connection and never answers): every healthy cluster gets its snapshots, the
black-holed one reports down, a stop signal stops all, and analyze keys alerts by cluster."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import defaultdict

import orjson
import pytest
import yaml

from doorman.collect.fleet import Fleet
from doorman.collect.run import run as collect
from doorman.config.load import make_config
from tests.support.blackhole import BlackHole
from tests.support.process import BIN, cli, records, wait_for
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e

SECRET = "hole-pw-7f3a"


@pytest.fixture
def hole():
    with BlackHole() as h:
        yield h


@pytest.fixture
def fleet(tmp_path, make_redis, hole):
    """Three healthy clusters on two redis-servers (two databases of the first) and a black hole."""
    one, two = make_redis(), make_redis()
    enqueue(f"redis://127.0.0.1:{two.port}/0", 3)  # only cluster c has work waiting
    data = {"redis_timeout": 1, "clusters": [
        {"name": "a", "broker_url": f"redis://127.0.0.1:{one.port}/0"},
        {"name": "b", "broker_url": f"redis://127.0.0.1:{one.port}/1"},
        {"name": "c", "broker_url": f"redis://127.0.0.1:{two.port}/0"},
        {"name": "hole", "broker_url": hole.url(SECRET)},
    ]}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def by_cluster(lines: list[dict]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for snap in lines:
        out[snap["cluster"]].append(snap)
    return out


def test_once_takes_one_snapshot_of_each_and_the_black_hole_is_down(fleet, hole):
    p = cli("doorman-collect", "--once", "--config", str(fleet))
    assert p.returncode == 0, p.stderr
    snaps = by_cluster(records(p.stdout))
    assert sorted(snaps) == ["a", "b", "c", "hole"] and all(len(s) == 1 for s in snaps.values())
    assert [snaps[c][0]["pending_tasks"] for c in "abc"] == [0, 0, 3]
    assert all(snaps[c][0]["redis_connected"] and snaps[c][0]["error"] is None for c in "abc")
    down = snaps["hole"][0]
    assert down["redis_connected"] is False and "Timeout" in down["error"] and down["pending_tasks"] is None
    assert hole.accepted, "the black hole was never reached"
    err = p.stderr.decode()
    assert "cluster hole check #1" in err and SECRET not in err and SECRET.encode() not in p.stdout


def test_count_is_per_cluster_and_a_slow_broker_holds_no_other(fleet):
    p = cli("doorman-collect", "--interval", "0.2", "--count", "3", "--config", str(fleet))
    assert p.returncode == 0, p.stderr
    snaps = by_cluster(records(p.stdout))
    for c in "abc":
        assert [s["seq"] for s in snaps[c]] == [1, 2, 3]
        assert all(s["redis_connected"] and s["trigger"] == "interval" for s in snaps[c])
    assert [s["redis_connected"] for s in snaps["hole"]] == [False] * 3


def test_a_stop_signal_stops_every_cluster_after_the_snapshot_in_hand(fleet):
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--interval", "0.2", "--config", str(fleet)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: all(sum(f'"cluster":"{c}"'.encode() in line for line in lines) >= 3 for c in "abc"),
                 30, "three snapshots of every healthy cluster")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    snaps = by_cluster([orjson.loads(line) for line in lines])  # every line whole
    for c in "abc":
        assert [s["seq"] for s in snaps[c]] == list(range(1, len(snaps[c]) + 1))
    assert snaps["hole"] and not any(s["redis_connected"] for s in snaps["hole"])
    assert SECRET.encode() not in proc.stderr.read()


def test_collect_then_analyze_keys_alerts_by_cluster(fleet):
    collected = cli("doorman-collect", "--once", "--config", str(fleet))
    assert collected.returncode == 0, collected.stderr
    p = cli("doorman-analyze", "--config", str(fleet), input=collected.stdout)
    assert p.returncode == 0, p.stderr
    alerts = sorted((a["cluster"], a["alert_type"], a["status"]) for a in records(p.stdout))
    assert alerts == [("a", "celery_disconnected", "firing"), ("b", "celery_disconnected", "firing"),
                      ("c", "workers_down", "firing"), ("hole", "redis_down", "firing")]  # c's 3 tasks wait


def test_a_broker_that_fails_at_once_leaves_the_others_on_schedule(tmp_path, make_redis):
    server = make_redis()
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"clusters": [
        {"name": "ok", "broker_url": f"redis://127.0.0.1:{server.port}/0"},
        {"name": "broken", "broker_url": f"unix://{tmp_path}"},  # a directory, not a socket: refused at once
    ]}))
    path.chmod(0o600)
    p = cli("doorman-collect", "--interval", "0.2", "--count", "2", "--config", str(path))
    assert p.returncode == 0, p.stderr
    snaps = by_cluster(records(p.stdout))
    assert [s["seq"] for s in snaps["ok"]] == [1, 2] and all(s["redis_connected"] for s in snaps["ok"])
    assert [s["redis_connected"] for s in snaps["broken"]] == [False, False]


def test_a_collector_that_raises_is_reported_scrubbed_and_started_again(make_redis):
    """The fleet's own promise, whatever the cause: one cluster's crash ends neither the others nor
    itself. The crash is injected (a first call that raises); every snapshot is a real one."""
    server = make_redis()
    cfg = make_config(check_interval=0.1, clusters=[
        {"name": "ok", "broker_url": f"redis://127.0.0.1:{server.port}/0"},
        {"name": "flaky", "broker_url": f"redis://:{SECRET}@127.0.0.1:{server.port}/1"}])
    calls: list[str] = []

    def collect_one(c, emit, **kw):
        calls.append(c.cluster)
        if c.cluster == "flaky" and calls.count("flaky") == 1:
            raise RuntimeError(f"boom at {c.broker_url}")
        return collect(c, emit, **kw)

    lines: list[dict] = []
    said: list[str] = []
    failed = Fleet(cfg.clusters, lambda snap, n: lines.append(snap), said.append, count=2,
                   collect_one=collect_one).run()
    snaps = by_cluster(lines)
    assert failed == 1 and calls.count("flaky") == 2 and calls.count("ok") == 1
    assert [s["seq"] for s in snaps["ok"]] == [1, 2] and [s["seq"] for s in snaps["flaky"]] == [1, 2]
    assert len(said) == 1 and "cluster flaky: the collector failed (RuntimeError: boom at" in said[0]
    assert SECRET not in said[0]


def test_a_brokers_discovery_warning_names_its_cluster(tmp_path, make_redis):
    plain, no_scan = make_redis(), make_redis(extra=["--rename-command", "SCAN", ""])
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump({"clusters": [{"name": "plain", "broker_url": plain.url},
                                                 {"name": "noscan", "broker_url": no_scan.url}]}))
    path.chmod(0o600)
    p = cli("doorman-collect", "--once", "--config", str(path))
    assert p.returncode == 0 and sorted(s["cluster"] for s in records(p.stdout)) == ["noscan", "plain"], p.stderr
    [line] = [ln for ln in p.stderr.decode().splitlines() if "refuses SCAN" in ln]
    assert line.startswith("doorman-collect: cluster noscan: queue discovery: the broker refuses SCAN"), line

