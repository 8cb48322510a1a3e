"""Who watches Doorman (issue 16): the dead-man's switch and the watchdog alert.

The real pipeline `doorman-collect | doorman-analyze | doorman-notify` against a redis-server the
test owns, and a real HTTP receiver on 127.0.0.1 standing in for healthchecks.io: one ping per
cycle, `/fail` while the broker is down, none once a stage is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import orjson
import pytest

from doorman.contract.tick import tick, tick_problem
from doorman.notify.heartbeat import Pinger, fail_url
from tests.support.notify import notify_env
from tests.support.process import BIN, records, wait_for
from tests.support.receiver import Receiver
from tests.support.scenario import snap

PING = "/ping/HBSECRET0123456789"
FAIL = PING + "/fail"
HOOK = "/hook/HOOKSECRET98765"


@pytest.fixture
def monitor():
    """A receiver that also answers GET, as a healthchecks.io-style monitor does."""
    r = Receiver()
    handler = r.server.RequestHandlerClass
    handler.do_GET = handler.do_POST  # type: ignore[attr-defined]  # same recording, no body
    yield r
    r.close()


def pipeline_env(tmp_path, monitor: Receiver, **extra: str) -> dict[str, str]:
    return {**os.environ, **notify_env(tmp_path, hook=monitor.url(HOOK)), "DOORMAN_HEARTBEAT_URL": monitor.url(PING),
            "DOORMAN_HEARTBEAT_TIMEOUT_SECONDS": "2", **extra}


def start_pipeline(url: str, env: dict[str, str], *collect_args: str) -> list[subprocess.Popen]:
    """The three stages as three processes joined by pipes, so the test can kill any one of them."""
    collect = subprocess.Popen([str(BIN / "doorman-collect"), "--redis-url", url, *collect_args],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    analyze = subprocess.Popen([str(BIN / "doorman-analyze")], stdin=collect.stdout, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env)
    notify = subprocess.Popen([str(BIN / "doorman-notify")], stdin=analyze.stdout, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env)
    assert collect.stdout is not None and analyze.stdout is not None
    collect.stdout.close()
    analyze.stdout.close()
    return [collect, analyze, notify]


@pytest.mark.e2e
def test_one_ping_per_cycle_fail_while_the_broker_is_down_none_once_a_stage_dies(tmp_path, own_redis, monitor):
    env = pipeline_env(tmp_path, monitor, DOORMAN_INSPECT_TIMEOUT="0.2")

    # three cycles, then EOF: three pings, the last one sent before doorman-notify exits
    stages = start_pipeline(own_redis.url, env, "--count", "3", "--interval", "1.5")  # ticks a batch apart
    out, err = stages[2].communicate(timeout=60)
    for p in stages[:2]:
        p.wait(10)
    assert len(monitor.at(PING)) == 3 and monitor.at(FAIL) == []
    assert all(r.headers.get("Content-Length") in (None, "0") for r in monitor.at(PING))  # a plain GET
    hooked = [r.json for r in monitor.at(HOOK)]
    assert hooked and all(a["kind"] == "alert" for a in hooked)  # no tick ever reaches a destination
    assert all(r["kind"] == "delivery" for r in records(out))  # nor stdout
    assert b"HBSECRET" not in err + out

    # a daemon: pings on every cycle, /fail while the broker cannot be read, none after kill -9
    stages = start_pipeline(own_redis.url, env, "--interval", "0.5")
    try:
        wait_for(lambda: len(monitor.at(PING)) >= 6, 30, "the daemon's pings")
        own_redis.stop()
        wait_for(lambda: len(monitor.at(FAIL)) >= 2, 30, "pings to /fail while the broker is down")
        assert any(r.json["alert_type"] == "redis_down" for r in monitor.at(HOOK))  # alerts still go out
        stages[1].send_signal(signal.SIGKILL)  # doorman-analyze dies
        stages[2].wait(30)  # notify reads EOF and ends
        seen = len(monitor.requests)
        time.sleep(2)  # four collect intervals
        assert len(monitor.requests) == seen
    finally:
        for p in stages:
            if p.poll() is None:
                p.kill()
            p.wait(10)
    assert b"HBSECRET" not in stages[2].stderr.read()  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_hanging_monitor_never_holds_up_an_alert(tmp_path, monitor):
    """The monitor takes the first ping and never answers; the next cycle's alert goes out anyway,
    long before that ping's timeout."""
    from tests.support.receiver import Reply
    from tests.support.scenario import queue

    monitor.script(PING, Reply(200, delay=30))
    env = pipeline_env(tmp_path, monitor, DOORMAN_HEARTBEAT_TIMEOUT_SECONDS="6")
    analyze = subprocess.Popen([str(BIN / "doorman-analyze")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env=env)
    notify = subprocess.Popen([str(BIN / "doorman-notify")], stdin=analyze.stdout, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env)
    assert analyze.stdin is not None and analyze.stdout is not None
    analyze.stdout.close()
    try:
        analyze.stdin.write(orjson.dumps(snap(0.0, workers=[], cluster="c1")) + b"\n")  # celery_disconnected
        analyze.stdin.flush()
        [ping] = wait_for(lambda: monitor.at(PING), 20, "the first ping")
        analyze.stdin.write(orjson.dumps(snap(30.0, queues={"celery": queue(9)}, workers=[], cluster="c1")) + b"\n")
        analyze.stdin.flush()
        wait_for(lambda: any(r.json["alert_type"] == "workers_down" for r in monitor.delivered(HOOK)), 20,
                 "the second cycle's alert")
        [second] = [r for r in monitor.delivered(HOOK) if r.json["alert_type"] == "workers_down"]
        assert second.at - ping.at < 6 and ping.answered is None  # delivered while the ping still hangs
    finally:
        analyze.stdin.close()
        notify.wait(30)
        analyze.wait(10)
    err = notify.stderr.read().decode()  # type: ignore[union-attr]
    assert "heartbeat ping to heartbeat_url failed" in err and "did not answer within 6 s" in err
    assert "HBSECRET" not in err


def test_ticks_and_fail_urls():
    up, down = snap(0.0, cluster="c1"), snap(30.0, connected=False, cluster="c1")
    assert tick(up, 2) == {"v": 1, "kind": "tick", "ts": up["ts"], "cluster": "c1", "broker_ok": True, "alerts": 2}
    assert tick(down, 0)["broker_ok"] is False
    assert tick_problem(tick(up, 0)) is None
    assert tick_problem({"kind": "tick", "ts": "x", "cluster": "c", "broker_ok": True, "alerts": True})
    assert fail_url("https://hc-ping.com/abc/", "/fail") == "https://hc-ping.com/abc/fail"
    assert fail_url("https://x.example/p?k=1", "/fail") == "https://x.example/p/fail?k=1"


def test_the_pinger_sends_the_newest_ping_and_fails_when_any_cycle_could_not_read_the_broker():
    got: list[str] = []
    said: list[str] = []

    def get(url: str, timeout: float) -> int:
        got.append(url)
        return 200 if "down" not in url else 503

    pinger = Pinger("https://m.example/hb", "/fail", 1.0, said.append, get)
    pinger.ticks([{"broker_ok": True}, {"broker_ok": False}])
    pinger.close(5)
    assert got == ["https://m.example/hb/fail"] and said == []


def test_watchdog_fires_only_when_asked_and_even_while_the_broker_is_down():
    from doorman.analyze.engine import Engine
    from tests.support.scenario import cfg

    assert [a["alert_type"] for a in Engine(cfg()).process(snap(0.0))] == []
    on = cfg().replace(watchdog=True)
    engine = Engine(on)
    [first] = engine.process(snap(0.0))
    assert (first["alert_type"], first["severity"], first["status"]) == ("watchdog", "info", "firing")
    down = [a["alert_type"] for a in engine.process(snap(400.0, connected=False))]
    assert "watchdog" in down and "redis_down" in down  # a reminder after the cooldown; never inhibited
