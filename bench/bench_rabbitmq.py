"""RabbitMQ: time per snapshot at 1, 100 and 1,000 queues (management API, and the AMQP fallback);
one-shot wall time and RSS beside `celery inspect ping`; kill -9 of the last worker → workers_down
at a webhook. Against the machine's rabbitmq-server, in a throw-away vhost; nothing is asserted."""

from __future__ import annotations

import os
import tempfile
import time

import amqp

from bench.bench_collect import fmt, run_measured
from doorman import brokers
from doorman.collect.snapshot import Collector
from doorman.config.load import load_config
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.process import BIN, wait_for
from tests.support.rabbit import Vhost, wait_listening
from tests.support.receiver import Receiver
from tests.support.workers import Worker, enqueue

CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens: the AMQP fallback


def time_snapshots(url: str, runs: int, management: str | None = None,
                   queues: list[str] | None = None) -> tuple[list[float], int]:
    env = {"REDIS_URL": url}
    if management:
        env["DOORMAN_RABBITMQ_MANAGEMENT_URL"] = management
    if queues:
        env["MONITORED_QUEUES"] = ",".join(queues)
    cfg = load_config(None, env=env)
    c = Collector(cfg, brokers.connect(cfg))
    snap = c.snapshot()  # warm-up: connections
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        snap = c.snapshot()
        out.append((time.perf_counter() - t) * 1000)
    assert snap["redis_connected"] and snap["error"] is None, snap["error"]
    c.close()
    return out, len(snap["queues"])


def declare(v: Vhost, n: int) -> None:
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest", virtual_host=v.name)
    conn.connect()
    ch = conn.channel()
    for i in range(n):
        ch.queue_declare(queue=f"q{i}", durable=True, auto_delete=False)  # as Celery declares them
    conn.close()


def per_snapshot() -> None:
    print("Per snapshot (in-process Collector.snapshot, no worker, median of 20; q0 holds 1,000 messages):")
    print("| queues | management API (one HTTP call) | AMQP fallback (passive declares, configured queues) |")
    print("|---|---|---|")
    v = Vhost()
    try:
        made = 0
        for n in (1, 100, 1000):
            declare(v, n)
            if not made:
                enqueue(v.url(), 1000, task="demo.add", args=(2, 3), queue="q0")
            made = n
            wait_for(lambda n=n: len(v.queues()) >= n, 30, f"{n} queues")
            names = [f"q{i}" for i in range(n)]
            mgmt, _ = time_snapshots(v.url(), 20, queues=names)
            passive, _ = time_snapshots(v.url(), 20, CLOSED_PORT, queues=names)
            print(f"| {n} | {fmt(mgmt)} | {fmt(passive)} |", flush=True)
    finally:
        v.delete()


def oneshot() -> None:
    print("\nOne-shot, healthy (1 prefork worker, -c 2), whole process, 10 runs each, alternated:")
    v = Vhost()
    w = Worker(v.url(), "bench@rabbit", concurrency=2)
    env = {**os.environ, "REDIS_URL": v.url()}
    collect = [str(BIN / "doorman-collect"), "--once"]
    ping = [str(BIN / "celery"), "-A", "doorman.demoapp", "inspect", "ping"]
    results: dict[str, list[tuple[float, float, int]]] = {"collect": [], "ping": []}
    try:
        wait_listening(v, w)
        for _ in range(10):
            results["collect"].append(run_measured(collect, env))
            results["ping"].append(run_measured(ping, env))
    finally:
        w.kill9()
        v.delete()
    print("| command | wall | peak RSS | exit codes |")
    print("|---|---|---|---|")
    for name, label in (("collect", "doorman-collect --once"), ("ping", "celery -A app inspect ping")):
        walls = [r[0] * 1000 for r in results[name]]
        print(f"| `{label}` | {fmt(walls)} | {fmt([r[1] for r in results[name]], 'MiB')} | "
              f"{sorted({r[2] for r in results[name]})} |")


def detection(trials: int) -> None:
    print(f"\nkill -9 of the last worker (5 tasks pending) → workers_down POST at the webhook, {trials} trials "
          "(`collect --interval 30 | analyze | notify`):")
    took = []
    for _ in range(trials):
        v = Vhost()
        receiver = Receiver()
        w = Worker(v.url(), "busy@bench", queues="busy")
        pipe = None
        try:
            wait_listening(v, w)
            enqueue(v.url(), 5, task="demo.add", args=(2, 3))
            pipe = DaemonPipeline(v.url(), receiver.url("/h"), interval=30,
                                  workdir=tempfile.mkdtemp(prefix="doorman-bench-")).start()
            pipe.wait_heartbeat("busy@bench", timeout=30)
            time.sleep(1 + len(took) * 0.4)  # a different phase of the 2 s heartbeat each trial
            t = time.monotonic()
            w.kill9()
            wait_for(lambda r=receiver: r.delivered("/h"), 30, "workers_down")
            took.append(time.monotonic() - t)
        finally:
            if pipe:
                pipe.stop()
            receiver.close()
            w.kill9()
            v.delete()
    print(f"| Doorman on RabbitMQ | {fmt(took, 's')} |")


def main() -> None:
    per_snapshot()
    oneshot()
    detection(int(os.environ.get("BENCH_TRIALS", "5")))


if __name__ == "__main__":
    main()
