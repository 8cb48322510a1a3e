"""doorman-serve as celery-exporter: the same workload scraped from both, and /metrics under load.

- side by side: real workers (-E) run a known mix (tests/support/exporter_app.py) on a redis-server of the
  bench's own; doorman-collect (daemon, task events) -> doorman-serve, and celery-exporter (from
  `make bench-peers`) watch it. Every counter is summed by (series, name, exception) on both sides
  and compared; where one side lost events, the table says by how much.
- /metrics with 1,000 task names x 50 workers (50,000 label sets before serve's caps): p50/p99 of a
  scrape (goal: p99 < 20 ms), the series after the caps, and how long serve takes to fold and
  render such a snapshot.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import requests

from bench import peers
from bench.bench_serve import pct, rss_mib
from tests.support.exporter import WRow, workload_snapshot
from tests.support.process import BIN, ROOT
from tests.support.redis import RedisServer
from tests.support.serve import Serve

SCRAPES = 300
COUNTERS = ("sent", "received", "started", "succeeded", "failed", "rejected", "revoked", "retried")
MIX = {"ok": 40, "value": 8, "key": 4, "flaky": 6, "revoked": 3}


def timed_as_prometheus(session: requests.Session, url: str, n: int) -> tuple[list[float], int]:
    """Scrapes as Prometheus makes them (Accept-Encoding: gzip), the body read as sent: the time is
    serve's, not the client's decompression."""
    out, size = [], 0
    for _ in range(n):
        t = time.perf_counter()
        with session.get(url, timeout=30, stream=True, headers={"Accept-Encoding": "gzip"}) as r:
            r.raise_for_status()
            size = len(r.raw.read(decode_content=False))
        out.append((time.perf_counter() - t) * 1000)
    return sorted(out), size


def big_scrape(tmp: Path) -> None:
    t = time.time()
    rows = [WRow(f"app.tasks.task_{n:04d}", f"celery@worker-{w:02d}", "celery",
                 {"received": 3, "started": 3, "succeeded": 2, "failed": 1}, exceptions={"ValueError": 1},
                 runtimes=[0.01, 0.2], waits=[0.1, 0.3])
            for n in range(1000) for w in range(50)]
    # as the collector sends them: its own cap (max_task_series, 5,000), the rest summed under (other)
    kept, rest = rows[:5000], rows[5000:]
    other = WRow("(other)", "(other)", "(other)", {k: sum(r.counts.get(k, 0) for r in rest) for k in rest[0].counts},
                 exceptions={"ValueError": len(rest)}, runtimes=[0.01, 0.2] * len(rest), waits=[0.1, 0.3] * len(rest))
    snap = workload_snapshot(t, t - 600, rows=[*kept, other])
    snap["workers"] = [{"name": f"celery@worker-{w:02d}", "alive": True, "active": 1, "queues": ["celery"],
                        "concurrency": 4} for w in range(50)]
    stream = tmp / "big.ndjson"
    stream.write_bytes(b"")
    serve = Serve(tmp, str(stream), args=("--history", "none")).wait_up()
    try:
        with requests.Session() as s:
            t0 = time.perf_counter()
            with open(stream, "ab") as out:
                out.write(orjson.dumps(snap) + b"\n")
            while "celery_task_received_total" not in s.get(serve.url + "/metrics", timeout=30).text:
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError("serve did not take the snapshot in: " + serve.stderr[-500:])
                time.sleep(0.05)
            taken = time.perf_counter() - t0
            body = s.get(serve.url + "/metrics", timeout=30).content
            times, gz_size = timed_as_prometheus(s, serve.url + "/metrics", SCRAPES)
            rss, hwm = rss_mib(serve.proc.pid)
        samples = [line for line in body.splitlines() if line and not line.startswith(b"#")]
        task_sets = {line.split(b"}")[0] for line in samples if line.startswith(b"celery_task_received_total")}
        omitted = [line.decode() for line in samples if line.startswith(b"doorman_series_omitted")
                   and b"task_" in line and not line.endswith(b" 0.0")]
        print(f"/metrics, 1,000 task names x 50 workers ({len(rows):,} label sets; the collector's snapshot "
              f"{len(kept) + 1:,}, serve's caps {len(task_sets):,}; {len(samples):,} samples, {len(body) / 1024:.0f} KiB), {SCRAPES} scrapes:")
        print(f"  p50 {pct(times, 0.5):6.2f} ms   p99 {pct(times, 0.99):6.2f} ms   max {times[-1]:6.2f} ms   "
              f"(goal: p99 < 20 ms; gzip as Prometheus asks: {gz_size / 1024:.0f} KiB sent)")
        print(f"  snapshot line ({len(orjson.dumps(snap)) / 2**20:.1f} MiB) to /metrics: {taken:.2f} s; "
              f"serve RSS {rss:.0f} MiB (peak {hwm:.0f} MiB)")
        print("  " + "; ".join(omitted))
    finally:
        serve.stop()


def run_mix(url: str) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.exporter_app import app

    app.conf.broker_url = url
    for i in range(MIX["ok"]):
        app.send_task("mix.ok", args=(i,))
    for _ in range(MIX["value"]):
        app.send_task("mix.fail", args=("value",))
    for _ in range(MIX["key"]):
        app.send_task("mix.fail", args=("key",))
    for i in range(MIX["flaky"]):
        app.send_task("mix.flaky", args=(str(i),))
    time.sleep(5)  # the rest done: the slow ones start at once
    slow = [app.send_task("mix.slow", args=(60,)) for _ in range(MIX["revoked"])]
    time.sleep(3)
    for r in slow:
        app.control.revoke(r.id, terminate=True)


def counters(text: str) -> dict[tuple[str, str, str], float]:
    """{(outcome, task name, exception): value} summed over hosts and queues."""
    out: dict[tuple[str, str, str], float] = {}
    for line in text.splitlines():
        m = peers.SAMPLE.match(line)
        if not m or not m.group(1).startswith("celery_task_") or not m.group(1).endswith("_total"):
            continue
        labels = dict(kv.split("=", 1) for kv in m.group(2).replace('"', "").split(",") if "=" in kv)
        key = (m.group(1)[len("celery_task_"):-len("_total")], labels.get("name", ""), labels.get("exception", ""))
        out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def side_by_side(tmp: Path) -> None:
    ok, version = peers.installed("exporter")
    if not ok:
        print(f"side by side: celery-exporter {version}")
    server = RedisServer().start()
    url = server.url
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOORMAN_", "REDIS_URL", "CHECK_", "MAX_"))}
    env.update(REDIS_URL=url, DOORMAN_CONFIG="", XDG_STATE_HOME=str(tmp / "xdg"))
    stream = tmp / "snapshots.ndjson"
    procs: list[subprocess.Popen] = []
    exporter = None
    serve = None
    try:
        procs.append(subprocess.Popen([str(BIN / "doorman-collect"), "--interval", "1"], env=env,
                                      stdout=open(stream, "wb"), stderr=open(tmp / "collect.err", "wb")))
        if ok:
            exporter = peers.start_exporter(url, ["celery"])
        for i in (1, 2):
            procs.append(subprocess.Popen(
                [str(BIN / "celery"), "-A", "tests.support.exporter_app", "worker", "-E", "-n", f"celery@bench-{i}", "-c", "2",
                 "-l", "WARNING", "--without-mingle"], cwd=ROOT, env={**os.environ, "REDIS_URL": url},
                stdout=open(tmp / f"w{i}.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True))
        serve = Serve(tmp, str(stream), args=("--history", "none")).wait_up()
        time.sleep(8)  # workers up, both watchers subscribed
        run_mix(url)
        time.sleep(15)  # retries, the revocations, a few snapshots
        # a label set born after serve's first look is shown at 0 until a scrape has read it (so that
        # increase() sees its first counts): read it once, let a snapshot pass, then compare
        serve.get("/metrics")
        time.sleep(3)
        doorman = counters(serve.get("/metrics").text)
        theirs = counters(requests.get(exporter.base() + "/metrics", timeout=60).text) if exporter else {}
        keys = sorted(set(doorman) | set(theirs))
        print(f"side by side, the mix {MIX} on 2 workers (-E, -c 2):")
        print("| counter | task | exception | doorman-serve | celery-exporter | difference |")
        print("|---|---|---|---|---|---|")
        for k in keys:
            d, e = doorman.get(k), theirs.get(k)
            diff = "" if d == e else (f"{(d or 0) - (e or 0):+g}")
            print(f"| {k[0]} | {k[1]} | {k[2]} | {d if d is not None else '—'} | {e if e is not None else '—'} | {diff} |")
        if not doorman:
            print("doorman-serve has no celery_task_* series: the snapshots carry no `tasks` section")
        differ = [k for k in keys if (doorman.get(k) or 0) != (theirs.get(k) or 0)]
        print(f"counters that differ: {len(differ)} of {len(keys)}")
    finally:
        if serve is not None:
            serve.stop()
        if exporter is not None:
            exporter.stop()
        for p in procs:
            p.terminate()
            p.wait(30)
        server.stop()
        server.cleanup()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="doorman-bench-exporter-") as d:
        big_scrape(Path(d))
    with tempfile.TemporaryDirectory(prefix="doorman-bench-exporter-") as d:
        side_by_side(Path(d))


if __name__ == "__main__":
    main()
