"""Liveness from Redis's connection table: kill -9 → webhook, and the CLIENT LIST parse.

* kill -9 of the last worker → `workers_down` POSTed at an HTTP receiver on 127.0.0.1, through the
  real daemon line `doorman-collect --interval 30 | doorman-analyze | doorman-notify` at default
  settings (liveness_poll_seconds 0.5, liveness_confirm_seconds 0.5); the median of
  BENCH_LIVENESS_TRIALS (default 10). Goal: ≤ 1.0 s.
* kill -9 of one of three workers → `worker_lost`, same line, same count. Goal: ≤ 1.5 s.
* `parse_client_list` on a 10,000-client `CLIENT LIST` reply in Redis 7's exact format (1,250
  workers' 8 connections each), and one
  real `CLIENT LIST` round trip plus parse against a redis-server holding 1,000 open connections.
  Goal: < 20 ms for 10,000.

Each trial: a fresh database, fresh prefork workers (`-c 1`), 5 tasks waiting in `celery` (which
no worker consumes), the kill at a random phase of the 2 s heartbeat and of the 0.5 s poll.
Figures are printed, never asserted. The side-by-side with Flower and celery-exporter for the same
kill is bench_detection (its Doorman column uses this same daemon line).
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import tempfile
import time
from typing import Any

from doorman.brokers.redis.clients import parse_client_list
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.receiver import Receiver
from tests.support.redis import RedisServer
from tests.support.workers import Worker, enqueue

HOOK = "/hooks/liveness"
CAP = 30.0


def fmt(values: list[float]) -> str:
    if not values:
        return "—"
    return (f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f}, "
            f"n={len(values)})")


def trial(server: RedisServer, receiver: Receiver, n: int, workers: int, alert: str) -> float | None:
    client = server.client()
    client.flushdb()
    started = [Worker(server.url, f"w{i}@t{n}", concurrency=1, queues="busy") for i in range(workers)]
    pipe = DaemonPipeline(server.url, receiver.url(f"{HOOK}/{n}"), interval=30,
                          workdir=tempfile.mkdtemp(prefix="doorman-bench-liveness-"))
    try:
        for w in started:
            w.wait_ready(client)
        enqueue(server.url, 5, task="demo.add", args=(2, 3), queue="celery")
        pipe.start()
        for w in started:
            pipe.wait_heartbeat(w.name)
        time.sleep(random.uniform(0, 2))
        killed_at = time.monotonic()
        started[0].kill9()
        while time.monotonic() < killed_at + CAP:
            hits = [r for r in receiver.at(f"{HOOK}/{n}") if r.json.get("alert_type") == alert]
            if hits:
                return hits[0].at - killed_at
            time.sleep(0.01)
        return None
    finally:
        pipe.stop()
        for w in started:
            w.kill9()


# The 8 connections a Celery 5.7 prefork worker holds on Redis (tests/test_liveness.py shows them):
# its consumer, the pidbox and gossip subscribers, and pool/producer connections.
WORKER_CONNECTIONS = (("brpop", 0), ("psubscribe", 1), ("psubscribe", 1), ("evalsha", 0), ("publish", 0),
                      ("ping", 0), ("exec", 0), ("evalsha", 0))


def client_list_lines(n: int) -> bytes:
    """A `CLIENT LIST` reply of `n` clients in Redis 7.0's format: n / 8 workers' connections."""
    out = []
    for i in range(n):
        cmd, psub = WORKER_CONNECTIONS[i % len(WORKER_CONNECTIONS)]
        out.append(f"id={i + 4} addr=10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:{40000 + i % 20000} "
                   f"laddr=10.0.0.1:6379 fd={i + 8} name= age={i % 900} idle={i % 7} flags={'b' if cmd == 'brpop' else 'N'} "
                   f"db=0 sub=0 psub={psub} ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 "
                   f"rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=1800 events=r cmd={cmd} user=default "
                   f"redir=-1 resp=2\n")
    return "".join(out).encode()


def parse_figures() -> dict[str, Any]:
    raw = client_list_lines(10_000)
    times, cpu = [], []
    for _ in range(20):
        t, c = time.perf_counter(), time.process_time()
        table = parse_client_list(raw)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out = {"bytes": len(raw), "consumers": len(table.consumers), "median_ms": statistics.median(times) * 1000,
           "min_ms": min(times) * 1000, "max_ms": max(times) * 1000, "cpu_ms": statistics.median(cpu) * 1000, "load": os.getloadavg()[0]}
    server = RedisServer(extra=["--maxclients", "2000"]).start()
    socks = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", server.port))
            socks.append(s)
        client = server.client()
        real = []
        for _ in range(10):
            t = time.perf_counter()
            parse_client_list(client.execute_command("CLIENT", "LIST"))
            real.append(time.perf_counter() - t)
        out["real_1000_ms"] = statistics.median(real) * 1000
    finally:
        for s in socks:
            s.close()
        server.cleanup()
    return out


def main() -> None:
    p = parse_figures()
    print(f"CLIENT LIST parse, 10,000 clients ({p['bytes'] / 1e6:.1f} MB, {p['consumers']} consumers): "
          f"median {p['median_ms']:.1f} ms (min {p['min_ms']:.1f}, max {p['max_ms']:.1f}), 20 runs, CPU median {p['cpu_ms']:.1f} ms "
          f"(goal < 20 ms; load average {p['load']:.1f} on {os.cpu_count()} cores)", flush=True)
    print(f"CLIENT LIST round trip + parse, 1,000 real connections: median {p['real_1000_ms']:.1f} ms", flush=True)
    trials = int(os.environ.get("BENCH_LIVENESS_TRIALS", "10"))
    server = RedisServer().start()
    receiver = Receiver()
    try:
        for label, workers, alert, goal in (("last of one worker", 1, "workers_down", 1.0),
                                            ("one of three workers", 3, "worker_lost", 1.5)):
            got, missed = [], 0
            for n in range(trials):
                value = trial(server, receiver, n + (100 if workers > 1 else 0), workers, alert)
                if value is None:
                    missed += 1
                else:
                    got.append(value)
            extra = f", {missed} not delivered within {CAP:.0f} s" if missed else ""
            print(f"kill -9 of the {label} → {alert} at the webhook: {fmt(got)}{extra} (goal ≤ {goal} s median)",
                  flush=True)
    finally:
        receiver.close()
        server.cleanup()


if __name__ == "__main__":
    main()
