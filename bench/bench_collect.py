"""Collection cost: per-snapshot time vs queue count and depth; one-shot wall time and RSS vs `celery inspect ping`.

Everything runs against a redis-server started here on a free loopback port, with a real worker.
Figures are medians (min–max) of repeated runs; nothing is asserted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from doorman import brokers
from doorman.collect.snapshot import Collector
from doorman.config.load import load_config
from tests.support.process import BIN, LAUNCHER_RSS, ROOT
from tests.support.redis import RedisServer
from tests.support.workers import Worker, enqueue


def fmt(values: list[float], unit: str = "ms") -> str:
    return f"{statistics.median(values):.2f} {unit} ({min(values):.2f}–{max(values):.2f})"


def time_snapshots(url: str, queues: list[str], runs: int = 40) -> list[float]:
    cfg = load_config(None, env={"REDIS_URL": url, "MONITORED_QUEUES": ",".join(queues)})
    c = Collector(cfg, brokers.connect(cfg))
    c.snapshot()  # warm-up: connection and discovery
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        snap = c.snapshot()
        out.append((time.perf_counter() - t) * 1000)
    assert snap["redis_connected"], snap["error"]
    c.close()
    return out


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one process."""
    out = subprocess.run([sys.executable, "-S", "-c", LAUNCHER_RSS, *args],
                         env={**env, "DOORMAN_LAUNCHER_QUIET": "1"}, capture_output=True,
                         cwd=ROOT, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def main() -> None:
    server = RedisServer().start()
    client = server.client()
    try:
        if os.environ.get("BENCH_ONESHOT_ONLY") != "1":
            per_snapshot(server, client)
        oneshot(server, client)
    finally:
        server.cleanup()


def per_snapshot(server: RedisServer, client) -> None:
    print("Per snapshot (in-process Collector.snapshot, no worker, median of 40):")
    print("| queues | depth of queue 1 | time per snapshot |")
    print("|---|---|---|")
    for n in (1, 100, 1000):
        names = [f"q{i}" for i in range(n)]
        print(f"| {n} | 0 | {fmt(time_snapshots(server.url, names))} |", flush=True)
    enqueue(server.url, 1, task="demo.add", args=(2, 3), queue="q0")
    msg = client.lindex("q0", 0)
    pipe = client.pipeline(transaction=False)
    for _ in range(100):
        pipe.rpush("q0", *([msg] * 10_000))
        pipe.execute()
    depth = client.llen("q0")
    for n in (1, 100, 1000):
        names = [f"q{i}" for i in range(n)]
        print(f"| {n} | {depth:,} | {fmt(time_snapshots(server.url, names))} |", flush=True)
    client.delete("q0")


def oneshot(server: RedisServer, client) -> None:
    print("\nOne-shot, healthy (1 prefork worker, -c 2), whole process, 10 runs each, alternated:")
    w = Worker(server.url, "bench@local", concurrency=2)
    env = {**os.environ, "REDIS_URL": server.url}
    collect = [str(BIN / "doorman-collect"), "--once"]
    ping = [str(BIN / "celery"), "-A", "doorman.demoapp", "inspect", "ping"]
    results: dict[str, list[tuple[float, float, int]]] = {"collect": [], "ping": []}
    try:
        w.wait_ready(client)
        for _ in range(10):
            results["collect"].append(run_measured(collect, env))
            results["ping"].append(run_measured(ping, env))
    finally:
        w.kill9()
    print("| command | wall | peak RSS | exit codes |")
    print("|---|---|---|---|")
    for name, label in (("collect", "doorman-collect --once"), ("ping", "celery -A app inspect ping")):
        walls = [r[0] * 1000 for r in results[name]]
        rss = [r[1] for r in results[name]]
        codes = sorted({r[2] for r in results[name]})
        print(f"| `{label}` | {fmt(walls)} | {fmt(rss, 'MiB')} | {codes} |")
    ratio = statistics.median(r[0] for r in results["collect"]) / statistics.median(
        r[0] for r in results["ping"])
    print(f"\ncollect / inspect ping wall-time ratio (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
