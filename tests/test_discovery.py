"""Queue discovery whose cost does not grow with the keyspace (docs/discovery.md), against real
redis-servers this module starts, filled with unrelated keys by `DEBUG POPULATE`.

Budgets are checked by counting SCAN calls (INFO commandstats of the test's own server) with a
timer that says each call took a fixed time: bounds on calls, never on durations."""

from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path

import pytest

from doorman.brokers.redis.broker import RedisConnection
from doorman.brokers.redis.discovery import Scanner
from doorman.brokers.redis.keys import Keys
from doorman.collect.snapshot import Collector
from doorman.config.load import load_config
from tests.support.process import cli, collect_once, records
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e

KEYS = Keys()
DEBUG = ["--enable-debug-command", "yes"]


def filled(make_redis, n: int, **kw):
    server = make_redis(extra=DEBUG, **kw)
    client = server.client()
    client.execute_command("DEBUG", "POPULATE", n, "unrelated")
    return server, client


def scans(client) -> int:
    return int(client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0))


def ticking(ms: float):
    """A timer on which every SCAN (two readings) takes exactly `ms` milliseconds."""
    counter = itertools.count()
    return lambda: next(counter) * ms / 1000


def bind(client, exchange: str, queue: str) -> None:
    """What kombu writes when a producer declares `queue` bound to `exchange`."""
    client.sadd(KEYS.binding(exchange), f"{queue}{KEYS.sep}{KEYS.sep}{queue}")


def test_a_consumed_queue_is_found_at_once_with_no_cache_and_no_scan(make_redis, workers, tmp_path):
    server, client = filled(make_redis, 200_000, password="pw-Secret-7")
    workers(server.url, "wd@test", client=client, queues="fresh-q")
    enqueue(server.url, 1, task="demo.add", args=(1, 2), queue="never-consumed")  # its own exchange
    client.config_resetstat()
    before = client.dbsize()
    cache = tmp_path / "cache" / "d.json"
    env = {"DOORMAN_DISCOVERY_BUDGET_MS": "0.01", "DOORMAN_DISCOVERY_CACHE": str(cache)}
    snap = collect_once(server.url, env=env)
    assert snap["queues"]["fresh-q"]["source"] == "binding"
    assert snap["queues"]["fresh-q"]["consumed_by"] == ["wd@test"]
    assert "never-consumed" not in snap["queues"]  # documented: it waits for the SCAN
    assert scans(client) == 0 and snap["discovery"]["redis_ms"] == 0
    assert client.dbsize() == before  # nothing left behind
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600 and stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    text = cache.read_text()
    assert "pw-Secret-7" not in text and str(server.port) not in text and "fresh-q" in text

    snap = collect_once(server.url)  # default budget, default cache location ($XDG_CACHE_HOME)
    [default] = (Path(os.environ["XDG_CACHE_HOME"]) / "celery-doorman").iterdir()
    assert default.name.startswith("discovery-") and str(server.port) not in default.name
    assert snap["discovery"]["keys"] == before and snap["discovery"]["last_pass_at"] is None


def test_a_queue_on_an_unknown_exchange_is_found_after_enough_snapshots(make_redis):
    server, client = filled(make_redis, 50_000)
    bind(client, "hidden-x", "hidden-q")
    cfg = load_config(None, env={"REDIS_URL": server.url, "DOORMAN_INSPECT": "false", "DOORMAN_DISCOVERY_CACHE": "",
                                 "DOORMAN_DISCOVERY_BUDGET_MS": "1", "DOORMAN_DISCOVERY_INTERVAL": "3600",
                                 "DOORMAN_DISCOVERY_MAX_MS_PER_MINUTE": "100000"})
    collector = Collector(cfg, RedisConnection(cfg, timer=ticking(0.5)))
    client.config_resetstat()
    before = client.dbsize()
    taken, calls = 0, 0
    try:
        while taken < 500:
            snap = collector.snapshot()
            taken += 1
            assert snap["redis_connected"], snap["error"]
            done = snap["discovery"]["last_pass_at"] is not None
            # 0.5 ms a call, 1 ms a snapshot: two calls each (one, when the first ends the pass)
            assert scans(client) - calls in ((1, 2) if done else (2,))
            calls = scans(client)
            if done:
                break
        assert taken > 3  # 50,000 keys do not fit a 1 ms budget: the pass took several snapshots
        assert snap["queues"]["hidden-q"]["source"] == "binding"
        for _ in range(3):  # the pass is over and the next is not due: no SCAN, still found
            snap = collector.snapshot()
            assert "hidden-q" in snap["queues"] and snap["discovery"]["redis_ms"] == 0
        assert scans(client) == calls
    finally:
        collector.close()
    assert client.dbsize() == before


def test_the_per_minute_cap_holds_whatever_the_check_interval(make_redis):
    server, client = filled(make_redis, 200_000)
    now, said = [1_000_000.0], []
    scanner = Scanner(client, KEYS, interval=60, budget_ms=5, per_minute_ms=10, check_interval=1,
                      clock=lambda: now[0], timer=ticking(2.0), warn=said.append)
    client.config_resetstat()
    scanner.step()
    assert scans(client) == 3  # 2 ms a call: 0, 2, 4 ms spent, then less than a call's worth is left
    scanner.step()  # at once again: the bucket is empty
    assert scans(client) == 3
    for _ in range(600):  # ten minutes, a snapshot every second
        now[0] += 1
        scanner.step()
    assert not scanner.state.last_pass_at  # 200,000 keys: far from done
    # 6 ms at start, then at most 10 ms a minute (+ one call of overshoot): never one call per snapshot
    assert 45 <= scans(client) <= (6 + 100 + 2) / 2
    assert scanner.report()["pass_seconds"] > 60
    # said once, naming the knobs: a pass takes longer than discovery_interval
    assert len(said) == 1 and "discovery_interval=60" in said[0] and "`exchanges`" in said[0]


def test_the_cursor_survives_across_once_runs(make_redis, tmp_path):
    server, client = filled(make_redis, 200_000)
    cache = tmp_path / "d.json"
    env = {"DOORMAN_DISCOVERY_BUDGET_MS": "1", "DOORMAN_DISCOVERY_MAX_MS_PER_MINUTE": "100000",
           "DOORMAN_DISCOVERY_CACHE": str(cache)}
    before = client.dbsize()
    first = collect_once(server.url, env=env)
    one = json.loads(cache.read_text())["scan"]
    assert one["scanning"] and one["cursor"] != 0 and one["scanned"] == first["discovery"]["scanned"] > 0
    second = collect_once(server.url, env=env)
    two = json.loads(cache.read_text())["scan"]
    assert two["pass_started"] == one["pass_started"]  # the same pass, carried on
    assert two["scanned"] == second["discovery"]["scanned"] > one["scanned"] and two["cursor"] != one["cursor"]
    assert client.dbsize() == before


def test_a_broker_without_scan_costs_no_snapshot_only_the_scan(make_redis):
    """SCAN renamed away (or behind a proxy that lacks it): one warning; configured queues still read."""
    server = make_redis(extra=["--rename-command", "SCAN", ""])
    enqueue(server.url, 2, task="demo.add", args=(1, 2))
    got = cli("doorman-collect", "--once", "--redis-url", server.url)
    [snap] = records(got.stdout)
    assert got.returncode == 0 and snap["redis_connected"] is True and snap["error"] is None, got.stderr
    assert snap["queues"]["celery"]["pending"] == 2
    assert got.stderr.decode().count("refuses SCAN") == 1
