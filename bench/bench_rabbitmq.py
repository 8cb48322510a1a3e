"""RabbitMQ: time per snapshot at 1, 100 and 1,000 queues (management API, and the AMQP fallback);
one-shot wall time and RSS beside `celery inspect ping`; kill -9 of the last worker → workers_down
and of one of three → worker_lost at a webhook (seen from the workers' pidbox queues); what the
pidbox probes cost with 100 workers. Against the machine's rabbitmq-server, in a throw-away vhost;
nothing is asserted."""

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
    print("| queues | default: management API (one HTTP call) + pipelined passive declares | "
          "AMQP fallback (passive declares only, configured queues) |")
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


def one_of_three(trials: int) -> None:
    print(f"\nkill -9 of one of three workers → worker_lost POST at the webhook, {trials} trials:")
    took = []
    for _ in range(trials):
        v = Vhost()
        receiver = Receiver()
        ws = [Worker(v.url(), f"w{i}@bench", queues="busy") for i in (1, 2, 3)]
        pipe = None
        try:
            for w in ws:
                wait_listening(v, w)
            pipe = DaemonPipeline(v.url(), receiver.url("/h"), interval=30,
                                  workdir=tempfile.mkdtemp(prefix="doorman-bench-")).start()
            for w in ws:
                pipe.wait_heartbeat(w.name, timeout=30)
            wait_for(lambda p=pipe: any((s.get("connections") or {}).get("consumers") == 3 for s in p.snapshots()),
                     30, "the three pidbox queues found")
            time.sleep(1 + len(took) * 0.4)
            t = time.monotonic()
            ws[0].kill9()
            wait_for(lambda r=receiver: r.delivered("/h"), 30, "worker_lost")
            took.append(time.monotonic() - t)
        finally:
            if pipe:
                pipe.stop()
            receiver.close()
            for w in ws:
                w.kill9()
            v.delete()
    print(f"| Doorman on RabbitMQ, worker_lost | {fmt(took, 's')} |")


def detection_event_exchange(trials: int) -> None:
    """The same measurement on a private rabbitmq-server node with `rabbitmq_event_exchange` on."""
    import subprocess
    from pathlib import Path

    from doorman.simulate.rabbit import RabbitVhost
    from tests.support.process import free_port

    print(f"\nkill -9 of the last worker → workers_down, rabbitmq_event_exchange enabled (a private node), "
          f"{trials} trials:")
    rv = RabbitVhost(free_port(), Path(tempfile.mkdtemp(prefix="doorman-bench-")))
    took: list[float] = []
    try:
        rv.start(timeout=180)
        assert rv.node and rv.base
        subprocess.run(["rabbitmq-plugins", "-n", rv.node, "enable", "--online", "rabbitmq_event_exchange"],
                       env={**os.environ, "RABBITMQ_ENABLED_PLUGINS_FILE": str(rv.base / "enabled_plugins")},
                       capture_output=True, timeout=120, check=True)
        for i in range(trials):
            receiver = Receiver()
            w = Worker(rv.url, f"busy{i}@bench", queues="busy")
            pipe = None
            try:
                wait_for(lambda w=w: rv.listening([w.name]), 60, "the worker to listen")
                enqueue(rv.url, 5, task="demo.add", args=(2, 3))
                pipe = DaemonPipeline(rv.url, receiver.url("/h"), interval=30,
                                      workdir=tempfile.mkdtemp(prefix="doorman-bench-"))
                pipe.env.update(rv.env)
                pipe.start()
                pipe.wait_heartbeat(w.name, timeout=30)
                wait_for(lambda p=pipe: any((s.get("connections") or {}).get("source") == "event_exchange"
                                            for s in p.snapshots()), 60, "the event exchange followed")
                time.sleep(1 + i * 0.4)
                t = time.monotonic()
                w.kill9()
                wait_for(lambda r=receiver: r.delivered("/h"), 30, "workers_down")
                took.append(time.monotonic() - t)
            finally:
                if pipe:
                    pipe.stop()
                receiver.close()
                w.kill9()
    finally:
        rv.stop()
    print(f"| Doorman on RabbitMQ, event exchange | {fmt(took, 's')} |")


def probe_cost(workers: int = 100, runs: int = 20) -> None:
    """One liveness poll with `workers` live workers: their pidbox queues are exclusive queues held
    by another connection (as Celery 5.5+ declares them). By passive declares each probe answers
    405 and the channel is reopened (two round trips per worker); by the management API's list of
    queue names, one HTTP call (what collect does past `DECLARE_MAX` workers)."""
    from doorman.brokers.rabbitmq import liveness as rabbit
    from doorman.brokers.rabbitmq.broker import RabbitConnection

    print(f"\nOne liveness poll, {workers} live workers, median of {runs}:")
    v = Vhost()
    holder = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest", virtual_host=v.name)
    holder.connect()
    try:
        ch = holder.channel()
        for i in range(workers):
            ch.queue_declare(queue=f"w{i}@bench.celery.pidbox", exclusive=True, auto_delete=True)
        cfg = load_config(None, env={"REDIS_URL": v.url()})
        print("| path | one poll | calls per second at liveness_poll_seconds 0.5 |\n|---|---|---|")
        for label, limit, rate in (("passive declares", workers, f"{4 * workers} AMQP round trips (2 per worker)"),
                                   ("management API list of names", 0, "2 HTTP calls")):
            rabbit.DECLARE_MAX = limit
            broker = RabbitConnection(cfg)
            broker.topology()  # the listing names the workers
            took = []
            for _ in range(runs):
                t = time.perf_counter()
                table = broker.connections()
                took.append((time.perf_counter() - t) * 1000)
            assert len(table.consumers) == workers and table.source, table
            broker.close()
            print(f"| {label} (`{table.source}`) | {fmt(took)} | {rate} |", flush=True)
    finally:
        rabbit.DECLARE_MAX = 8
        holder.close()
        v.delete()


def main() -> None:
    per_snapshot()
    oneshot()
    trials = int(os.environ.get("BENCH_TRIALS", "5"))
    detection(trials)
    one_of_three(trials)
    detection_event_exchange(trials)
    probe_cost()


if __name__ == "__main__":
    main()
