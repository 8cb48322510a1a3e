"""Task events: how fast Doorman's reader keeps up, what it costs in CPU and memory (issue 24).

A generator publishes the exact bytes Celery's EventDispatcher publishes on Redis (kombu's JSON
envelope, base64 body, `task.multi` batches of 24 events from several worker hostnames, with
args/kwargs/result reprs like a real worker's) at rising rates to a redis-server; `doorman-collect`
runs as a daemon beside it, as in production. For each rate: the events it counted against the
events published (no loss = equal, and no subscription gap), and its CPU per 1,000 events. Then
its RSS after 10,000 distinct task names.

BENCH_TASK_SECONDS (default 60) is how long each rate is held; BENCH_TASK_RATES the rates.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
import time
import uuid

import orjson

from bench import peers
from tests.support.process import BIN
from tests.support.redis import RedisServer

SECONDS = float(os.environ.get("BENCH_TASK_SECONDS", "60"))
RATES = [int(r) for r in os.environ.get("BENCH_TASK_RATES", "25000,50000,100000,150000,200000").split(",")]
BATCH = 24
HOSTS = [f"celery@worker-{i}" for i in range(8)]
CHANNEL = "/0.celeryev/task.multi"
UNHEARD = [0]  # messages published while no subscriber listened (Redis cut it: a gap)
TICK = 0.05  # seconds between publishing bursts


def batch(names: list[str], host: str, now: float, first: int = 0) -> list[dict]:
    """24 events of 8 tasks (received, started, succeeded), as a prefork worker buffers them."""
    out = []
    for k in range(BATCH // 3):
        u = str(uuid.uuid4())
        name = names[(first + k) % len(names)]
        common = {"hostname": host, "utcoffset": 0, "pid": 4242, "clock": 1000 + k}
        out.append({"uuid": u, "name": name, "args": "(1, 2)", "kwargs": "{'key': 'value'}", "root_id": u,
                    "parent_id": None, "retries": 0, "eta": None, "expires": None, "timestamp": now,
                    "type": "task-received", "local_received": now, **common})
        out.append({"uuid": u, "timestamp": now + 0.001, "type": "task-started", **common})
        out.append({"uuid": u, "result": "3", "runtime": 0.0042, "timestamp": now + 0.005,
                    "type": "task-succeeded", **common})
    return out


def envelope(events: list[dict]) -> bytes:
    """kombu's Redis envelope around a JSON body, as `Producer.publish` writes it for celeryev."""
    return orjson.dumps({
        "body": base64.b64encode(orjson.dumps(events)).decode(), "content-encoding": "utf-8",
        "content-type": "application/json", "headers": {"hostname": events[0]["hostname"]},
        "properties": {"delivery_mode": 1, "delivery_info": {"exchange": "celeryev", "routing_key": "task.multi"},
                       "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    })


def messages(count: int, names: list[str]) -> list[bytes]:
    now = time.time()
    return [envelope(batch(names, HOSTS[i % len(HOSTS)], now, i * BATCH // 3)) for i in range(count)]


def publish(client, pool: list[bytes], rate: int, seconds: float) -> int:
    """PUBLISH `rate` events/s (as messages of 24) for `seconds`; returns events published."""
    per_tick = rate / BATCH * TICK
    sent, owed, i = 0, 0.0, 0  # `i`: messages published, heard or not (the pace); `sent`: events heard
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        owed = rate / BATCH * elapsed - i
        n = int(min(owed, per_tick * 4))
        if n > 0:
            pipe = client.pipeline(transaction=False)
            for _ in range(n):
                pipe.publish(CHANNEL, pool[i % len(pool)])
                i += 1
            unheard = sum(1 for receivers in pipe.execute() if not receivers)
            sent += (n - unheard) * BATCH  # a PUBLISH no subscriber heard (none yet, or cut) is not Doorman's loss
            UNHEARD[0] += unheard
        else:
            time.sleep(TICK / 5)
    return sent


class Collector:
    """`doorman-collect` as a daemon; its last snapshot's `tasks`, CPU and RSS from /proc."""

    def __init__(self, url: str):
        self.out = tempfile.NamedTemporaryFile(prefix="doorman-bench-", suffix=".ndjson", delete=False)
        self.proc = subprocess.Popen([str(BIN / "doorman-collect"), "--redis-url", url, "--interval", "0.5"],
                                     stdout=self.out, stderr=subprocess.DEVNULL)

    def tasks(self) -> dict:
        with open(self.out.name, "rb") as f:
            lines = f.read().splitlines()
        for line in reversed(lines):
            try:
                return orjson.loads(line)["tasks"]
            except orjson.JSONDecodeError:
                continue
        return {}

    def cpu(self) -> float:
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def counted(self, want: int, timeout: float) -> tuple[int, int]:
        """(events read, gaps) once `want` events are read or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while True:
            t = self.tasks() or {}
            got = (t.get("reader") or {}).get("events", 0)
            if got >= want or time.monotonic() > deadline:
                return got, (t.get("lost") or {}).get("gaps", 0)
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        os.unlink(self.out.name)


def proc_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def exporter_counted(peer: peers.Peer) -> int | None:
    """Every celery_task_*_total sample of one scrape, summed (each event bumps one); None: gone."""
    if peer.proc.poll() is not None:
        return None
    try:
        metrics = peers.exporter_metrics(peer)
    except Exception:  # noqa: BLE001 - a peer that stopped answering is reported, not a crash
        return None
    return int(sum(v for (name, _labels), v in metrics.items()
                   if name.startswith("celery_task_") and name.endswith("_total")))


def exporter_column(pool: list[bytes]) -> int | None:
    """The same rates against celery-exporter (from `make bench-peers`) on a redis-server of its own:
    the highest rate it kept without loss, or None when it is not installed."""
    ok, version = peers.installed("exporter")
    if not ok:
        print(f"celery-exporter: {version}")
        return None
    server = RedisServer().start()
    client = server.client()
    peer = None
    try:
        peer = peers.start_exporter(server.url, ["celery"])
        deadline = time.monotonic() + 60
        while client.execute_command("PUBSUB", "NUMPAT") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)  # its event receiver subscribed
        print(f"celery-exporter {version}, same generator, a redis-server of its own:", flush=True)
        print(f"{'events/s':>10} {'published':>10} {'counted':>10} {'lost':>8} {'CPU ms/1k':>10} {'RSS MiB':>8}")
        kept, total = None, 0
        for rate in RATES:
            cpu0 = proc_cpu(peer.proc.pid)
            sent = publish(client, pool, rate, SECONDS)
            sent += UNHEARD[0] * BATCH
            UNHEARD[0] = 0
            total += sent
            time.sleep(3)  # its queue drains
            counted = exporter_counted(peer)
            if counted is None:
                print(f"{rate:>10} {sent:>10} {'-':>10} {'all':>8}   celery-exporter exited or stopped answering "
                      f"(its counts are gone): {peer.log_tail()[-300:]!r}", flush=True)
                break
            cpu = proc_cpu(peer.proc.pid) - cpu0
            lost = total - counted
            print(f"{rate:>10} {sent:>10} {counted:>10} {lost:>8} {cpu * 1e6 / max(sent, 1):>10.2f} "
                  f"{peer.rss_mib() or 0:>8.1f}", flush=True)
            if lost:
                break
            kept = rate
        print(f"celery-exporter: highest rate kept without loss: {kept or 0} events/s")
        return kept or 0
    finally:
        if peer is not None:
            peer.stop()
        server.cleanup()


def main() -> None:
    server = RedisServer().start()
    client = server.client()
    try:
        names = [f"app.tasks.task_{i}" for i in range(50)]
        pool = messages(2000, names)
        collector = Collector(server.url)
        deadline = time.monotonic() + 60
        while not ((collector.tasks() or {}).get("reader") or {}).get("subscribed") and time.monotonic() < deadline:
            time.sleep(0.2)  # nothing is published before the reader listens
        print(f"{'events/s':>10} {'published':>10} {'counted':>10} {'lost':>6} {'gaps':>5} {'CPU ms/1k':>10} "
              f"{'RSS MiB':>8}   ({SECONDS:.0f} s per rate, batches of {BATCH}, {len(HOSTS)} hostnames)", flush=True)
        total, before, kept = 0, 0, None
        for rate in RATES:
            cpu0, unheard0 = collector.cpu(), UNHEARD[0]
            heard = publish(client, pool, rate, SECONDS)
            sent = heard + (UNHEARD[0] - unheard0) * BATCH
            total += heard
            got, gaps = collector.counted(total, 30)
            cpu = collector.cpu() - cpu0
            counted, before = got - before, got
            lost = sent - counted
            print(f"{rate:>10} {sent:>10} {counted:>10} {lost:>6} {gaps:>5} {cpu * 1e6 / max(counted, 1):>10.2f} "
                  f"{collector.rss_mib():>8.1f}", flush=True)
            if lost or gaps:
                print(f"  reader: {collector.tasks().get('reader')}, lost: {collector.tasks().get('lost')}, "
                      f"published with no subscriber: {UNHEARD[0]}, redis: "
                      f"{ {k: v for k, v in client.info('stats').items() if 'disconnect' in k or 'pubsub' in k} }")
                break
            kept = rate
        print(f"highest rate kept without loss: {kept or 0} events/s")
        doorman_kept = kept or 0
        collector.stop()
        collector = Collector(server.url)  # a fresh one: RSS from the names alone, not an overload's peak
        while not ((collector.tasks() or {}).get("reader") or {}).get("subscribed") and time.monotonic() < deadline + 120:
            time.sleep(0.2)
        total = 0
        distinct = [f"app.generated.task_{i}_{uuid.uuid4().hex[:8]}" for i in range(10_000)]
        flood = messages(10_000 // (BATCH // 3), distinct)
        publish(client, flood, 20_000, len(flood) * BATCH / 20_000)
        collector.counted(total + len(flood) * BATCH, 30)
        t = collector.tasks()
        print(f"RSS after 10,000 distinct task names: {collector.rss_mib():.1f} MiB "
              f"(by_name {len(t['by_name'])} kept, {t['omitted']['names']} folded into (other))")
        collector.stop()
    finally:
        server.cleanup()
    theirs = exporter_column(pool)
    if theirs is not None:
        print(f"side by side: Doorman kept {doorman_kept} events/s without loss, celery-exporter {theirs}")


if __name__ == "__main__":
    main()
