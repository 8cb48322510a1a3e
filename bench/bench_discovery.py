"""Queue discovery vs the size of the keyspace (issue 16): `doorman-collect --once` with an empty
database vs 5,000,000 unrelated keys, discovery cache cold and warm; the old full-SCAN cost for
comparison; and the Redis time a daemon spends on discovery per minute.

Two redis-servers started here, one empty and one filled by DEBUG POPULATE (in seconds); no
worker. Redis's own time comes from INFO commandstats (`cmdstat_scan`). The daemon runs with a 5 s check interval instead
of the default 30 s (six times the snapshots, so the per-minute cap, not the per-snapshot budget,
is what binds) for BENCH_DISCOVERY_DAEMON_SECONDS (120), scaled to per minute. Nothing is asserted.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

from bench.bench_collect import fmt, run_measured
from tests.support.process import BIN, ROOT
from tests.support.redis import RedisServer

TIMEOUT_SECONDS = 900
RUNS = int(os.environ.get("BENCH_ONESHOT_RUNS", "10"))
KEYS = 5_000_000


def scan_stats(client) -> tuple[int, int]:
    """(SCAN calls, usec Redis spent in them) since the last CONFIG RESETSTAT."""
    s = client.info("commandstats").get("cmdstat_scan", {})
    return int(s.get("calls", 0)), int(s.get("usec", 0))


def once(servers: dict[str, RedisServer], home: str) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """{(database, cache): (wall ms, Redis ms of SCAN) of RUNS `--once` runs}, the four kinds
    alternated run by run so a busy moment of the machine falls on all of them alike."""
    collect = [str(BIN / "doorman-collect"), "--once"]
    out: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for label, server in servers.items():
        run_measured(collect, {**os.environ, "REDIS_URL": server.url, "XDG_CACHE_HOME": f"{home}/warm-{label}"})
    for _ in range(RUNS):
        for label, server in servers.items():
            client = server.client()
            for warmth in ("cold", "warm"):
                cache_home = f"{home}/{warmth}-{label}"
                if warmth == "cold":
                    shutil.rmtree(cache_home, ignore_errors=True)
                client.config_resetstat()
                wall, _rss, code = run_measured(collect, {**os.environ, "REDIS_URL": server.url,
                                                          "XDG_CACHE_HOME": cache_home})
                assert code == 0, code
                walls, scans = out.setdefault((label, warmth), ([], []))
                walls.append(wall * 1000)
                scans.append(scan_stats(client)[1] / 1000)
    return out


def full_scan(client) -> tuple[float, float]:
    """(wall s, Redis s) of one full `SCAN MATCH _kombu.binding.* COUNT 1000`, as every run did before."""
    client.config_resetstat()
    t = time.perf_counter()
    for _ in client.scan_iter(match="_kombu.binding.*", count=1000):
        pass
    return time.perf_counter() - t, scan_stats(client)[1] / 1e6


def daemon(server: RedisServer, cache_home: str, seconds: float) -> tuple[int, float, int]:
    """(snapshots, Redis ms of SCAN per minute, SCAN calls) of a doorman-collect daemon."""
    client = server.client()
    client.config_resetstat()
    env = {**os.environ, "REDIS_URL": server.url, "XDG_CACHE_HOME": cache_home, "CHECK_INTERVAL": "5"}
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen([str(BIN / "doorman-collect")], env=env, cwd=ROOT, stdout=out,
                             stderr=subprocess.DEVNULL)
        t = time.monotonic()
        time.sleep(seconds)
        calls, usec = scan_stats(client)
        elapsed = time.monotonic() - t
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        out.seek(0)
        snapshots = len(out.read().splitlines())
    return snapshots, usec / 1000 / (elapsed / 60), calls


def main() -> None:
    empty = RedisServer().start()
    full = RedisServer(extra=["--enable-debug-command", "yes"]).start()
    client = full.client()
    home = tempfile.mkdtemp(prefix="doorman-bench-discovery-")
    try:
        client.execute_command("DEBUG", "POPULATE", KEYS, "result")
        label = f"{KEYS:,} unrelated keys"
        results = once({"empty": empty, label: full}, home)
        print(f"`doorman-collect --once`, {RUNS} runs each (alternated), no worker, default settings:")
        print("| database | discovery cache | wall | Redis time in SCAN per run |")
        print("|---|---|---|---|")
        for (db, warmth), (walls, scans) in results.items():
            print(f"| {db} | {warmth} | {fmt(walls)} | {fmt(scans)} |")
        for warmth in ("cold", "warm"):
            ratio = statistics.median(results[label, warmth][0]) / statistics.median(results["empty", warmth][0])
            print(f"\n{label} / empty, cache {warmth} (median wall): {ratio:.2f}x")
        wall, redis_s = full_scan(client)
        print(f"\nFor comparison, one full SCAN of {KEYS:,} keys (what every --once run did before): "
              f"{wall:.2f} s wall, {redis_s:.2f} s of Redis time")
        seconds = float(os.environ.get("BENCH_DISCOVERY_DAEMON_SECONDS", "120"))
        snaps, per_minute, calls = daemon(full, os.path.join(home, "daemon"), seconds)
        print(f"\nDaemon, {KEYS:,} keys, check_interval 5 s (default 30 s), default discovery settings, "
              f"{seconds:.0f} s: {snaps} snapshots, {calls} SCAN calls, "
              f"{per_minute:.2f} ms of Redis time in SCAN per minute (cap: discovery_max_ms_per_minute = 10)")
    finally:
        empty.cleanup()
        full.cleanup()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
