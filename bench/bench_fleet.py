"""`make bench` figures for many brokers in one doorman-collect (issue 16): 50 clusters on real
redis-servers plus one black-holed broker (it accepts the connection and never answers), collected
every second for FLEET_SECONDS (30). Goal: every healthy cluster's snapshots stay on schedule, the
worst lateness under 100 ms.

Lateness of a snapshot = its start (`ts`) minus its slot on the cluster's own schedule (first
snapshot + (seq - 1) × interval); "emitted" adds the snapshot's own `collect_ms`. 10 redis-servers
with 5 databases each give 50 distinct broker URLs. Also: collect's RSS (now and peak) and CPU.
Nothing is asserted.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import orjson
import yaml

from bench.bench_daemon import status_kib
from doorman.timefmt import parse_iso
from tests.support.blackhole import BlackHole
from tests.support.process import BIN
from tests.support.redis import RedisServer

SERVERS, DBS, INTERVAL = 10, 5, 1.0
SECONDS = float(os.environ.get("FLEET_SECONDS") or 30)
TIMEOUT_SECONDS = SECONDS + 300


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def figures(name: str, values: list[float]) -> str:
    return (f"{name}: median {statistics.median(values):.1f} ms, p99 {pct(values, 0.99):.1f} ms, "
            f"max {max(values):.1f} ms over {len(values)} snapshots")


def main() -> None:
    servers = [RedisServer().start() for _ in range(SERVERS)]
    hole = BlackHole()
    tmp = tempfile.mkdtemp(prefix="doorman-fleet-")
    clusters = [{"name": f"c{i:02d}", "broker_url": f"redis://127.0.0.1:{s.port}/{db}"}
                for i, (s, db) in enumerate((s, db) for s in servers for db in range(DBS))]
    clusters.append({"name": "hole", "broker_url": hole.url()})
    path = Path(tmp) / "fleet.yaml"
    path.write_text(yaml.safe_dump({"clusters": clusters}))
    path.chmod(0o600)
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--config", str(path), "--interval", str(INTERVAL)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        time.sleep(5)  # start-up (imports, 51 threads) is not the steady state
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(max(0.0, SECONDS - 5))
        cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        rss, hwm = status_kib(proc.pid, "VmRSS"), status_kib(proc.pid, "VmHWM")
        threads = len(os.listdir(f"/proc/{proc.pid}/task"))
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        stop_s = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        hole.close()
        for s in servers:
            s.cleanup()
    snaps = [orjson.loads(line) for line in lines]
    late, emitted, firsts, counts = [], [], [], []
    for c in clusters[:-1]:
        mine = [s for s in snaps if s["cluster"] == c["name"] and s["trigger"] == "interval"]
        counts.append(len(mine))
        if not mine:
            continue
        first = parse_iso(mine[0]["ts"])
        firsts.append(first)
        for s in mine:
            slot = first + (s["seq"] - 1) * INTERVAL
            late.append((parse_iso(s["ts"]) - slot) * 1000)
            emitted.append(late[-1] + s["collect_ms"])
    steady = [e for e, s in zip(emitted, [s for c in clusters[:-1] for s in snaps if s["cluster"] == c["name"]
                                         and s["trigger"] == "interval"], strict=True) if s["seq"] > 2]
    down = [s for s in snaps if s["cluster"] == "hole"]
    print(f"{len(clusters) - 1} healthy clusters on {SERVERS} redis-servers + 1 black-holed, interval {INTERVAL:g} s, "
          f"{SECONDS:g} s run")
    print(f"snapshots per healthy cluster: min {min(counts)}, max {max(counts)} (all connected: "
          f"{all(s['redis_connected'] for s in snaps if s['cluster'] != 'hole')})")
    print(figures("lateness (start vs schedule)", late))
    print(figures("lateness (emitted vs schedule)", emitted))
    print(figures("lateness (emitted vs schedule) after each cluster's first two", steady))
    print(f"first snapshots spread over {(max(firsts) - min(firsts)) * 1000:.0f} ms (by design: the clusters' "
          "ticks are spread over the interval)")
    print(f"black-holed cluster: {len(down)} snapshots, all down: {all(not s['redis_connected'] for s in down)}")
    print(f"goal max lateness < 100 ms: {'met' if max(late) < 100 else 'NOT met'} (start), "
          f"{'met' if max(emitted) < 100 else 'NOT met'} (emitted)")
    print(f"collect: CPU {cpu * 100:.1f}% of one core, RSS {(rss or 0) / 1024:.1f} MiB (peak {(hwm or 0) / 1024:.1f} MiB), "
          f"{threads} threads; SIGTERM to exit {stop_s:.1f} s (exit {code})")


if __name__ == "__main__":
    main()
