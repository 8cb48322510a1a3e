"""Daemon memory: doorman-collect --interval | doorman-analyze | doorman-notify --dry-run, chained with
OS pipes exactly as bin/doorman-run does, against a local redis-server with one real worker.

Goal (the Kubernetes limit is 128Mi): under 100 MiB for the three processes together. Every
process's peak RSS is read from /proc/PID/status (VmHWM, reset by exec, so the parent's memory is
not counted) while it runs; VmRSS of all three is sampled to give the peak of the sum. Nothing is
asserted. BENCH_DAEMON_COUNT (default 10000) sets the number of checks.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.support.process import BIN
from tests.support.redis import RedisServer
from tests.support.workers import Worker, enqueue

STAGES = ("doorman-collect", "doorman-analyze", "doorman-notify")


def status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class Sampler(threading.Thread):
    def __init__(self, pids: dict[str, int], every: float = 0.05):
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.hwm = dict.fromkeys(pids, 0)
        self.rss_at: dict[str, list[int]] = {name: [] for name in pids}
        self.peak_sum = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            total = 0
            for name, pid in self.pids.items():
                hwm, rss = status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS")
                if hwm:
                    self.hwm[name] = max(self.hwm[name], hwm)
                if rss:
                    self.rss_at[name].append(rss)
                    total += rss
            self.peak_sum = max(self.peak_sum, total)
            self.done.wait(self.every)


def mib(kib: float) -> str:
    return f"{kib / 1024:6.1f} MiB"


def main() -> None:
    count = int(os.environ.get("BENCH_DAEMON_COUNT", "10000"))
    server = RedisServer().start()
    worker = None
    tmp = tempfile.mkdtemp(prefix="doorman-bench-daemon-")
    try:
        worker = Worker(server.url, "bench1@daemon").wait_ready(server.client())
        enqueue(server.url, 20, queue="waiting")  # nobody consumes it: backlog and latency alerts fire
        env = {**os.environ, "REDIS_URL": server.url, "MONITORED_QUEUES": "celery,waiting",
               "MAX_QUEUE_SIZE": "10", "MAX_WAIT_TIME": "5", "ALERT_COOLDOWN_SECONDS": "1",
               "DOORMAN_SPOOL": f"{tmp}/spool.ndjson"}
        collect = subprocess.Popen([str(BIN / "doorman-collect"), "--interval", "0.01", "--count", str(count)],
                                   env=env, stdout=subprocess.PIPE)
        analyze = subprocess.Popen([str(BIN / "doorman-analyze"), "--state", f"{tmp}/state.json"], env=env,
                                   stdin=collect.stdout, stdout=subprocess.PIPE)
        notify = subprocess.Popen([str(BIN / "doorman-notify"), "--dry-run"], env=env, stdin=analyze.stdout,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        collect.stdout.close()
        analyze.stdout.close()
        procs = dict(zip(STAGES, (collect, analyze, notify), strict=True))
        sampler = Sampler({name: p.pid for name, p in procs.items()})
        started = time.monotonic()
        sampler.start()
        deliveries = sum(1 for _ in notify.stdout)
        codes = {name: p.wait() for name, p in procs.items()}
        elapsed = time.monotonic() - started
        sampler.done.set()
        sampler.join()
    finally:
        if worker:
            worker.kill9()
        server.cleanup()

    print(f"{count} checks in {elapsed:.1f} s ({count / elapsed:.0f} checks/s), 1 worker, "
          f"{deliveries} delivery records (dry run); exit codes {codes}")
    print(f"{'process':<18}{'peak RSS (VmHWM)':>18}{'median RSS':>14}")
    for name in STAGES:
        samples = sorted(sampler.rss_at[name]) or [0]
        print(f"{name:<18}{mib(sampler.hwm[name]):>18}{mib(samples[len(samples) // 2]):>14}")
    print(f"{'sum of peaks':<18}{mib(sum(sampler.hwm.values())):>18}")
    print(f"{'peak of the sum':<18}{mib(sampler.peak_sum):>18}   (goal: under 100 MiB; k8s limit 128Mi)")


if __name__ == "__main__":
    main()
