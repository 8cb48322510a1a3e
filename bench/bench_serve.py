"""doorman-serve's figures, measured on a real `doorman-serve` process over real HTTP.

- a /metrics scrape with 1,000 queues and 500 workers: p50 and p99 (goal: p99 < 20 ms);
- 7 days of 10 s snapshots taken in (60,480 snapshots, 5 queues and 4 workers each), then the
  dashboard's 7-day queries (goal: < 200 ms), serve's RSS after the intake (goal: < 80 MiB) and
  the SQLite file's size.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import orjson
import requests

from tests.support.serve import Serve, alert, snapshot

SCRAPES = 300
DAYS = 7
STEP = 10.0


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def timed(session: requests.Session, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(url, timeout=30)
        r.raise_for_status()
        out.append((time.perf_counter() - t) * 1000)
    return sorted(out)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))]


def scrape(tmp: Path) -> None:
    now = time.time()
    snap = snapshot(now, {f"queue-{i:04d}": i % 50 for i in range(1000)},
                    [(f"worker-{i:03d}@host-{i % 20}", True, i % 4) for i in range(500)],
                    oldest={f"queue-{i:04d}": float(i) for i in range(0, 1000, 3)})
    stream = tmp / "big.ndjson"
    stream.write_bytes(orjson.dumps(snap) + b"\n")
    serve = Serve(tmp, str(stream), args=("--history", "none")).wait_up()
    try:
        with requests.Session() as s:
            deadline = time.monotonic() + 30
            while 'queue_name="queue-0999"' not in s.get(serve.url + "/metrics", timeout=5).text:
                if time.monotonic() > deadline:
                    raise RuntimeError("serve did not take the snapshot in")
                time.sleep(0.1)
            body = s.get(serve.url + "/metrics", timeout=5).content
            times = timed(s, serve.url + "/metrics", SCRAPES)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        print(f"/metrics, 1,000 queues + 500 workers ({series:,} series, {len(body) / 1024:.0f} KiB), "
              f"{SCRAPES} scrapes over one keep-alive connection:")
        print(f"  p50 {pct(times, 0.5):6.2f} ms   p99 {pct(times, 0.99):6.2f} ms   max {times[-1]:6.2f} ms   "
              f"(goal: p99 < 20 ms; celery-exporter ~2 s per scrape)")
    finally:
        serve.stop()


def week(tmp: Path) -> None:
    end = time.time()
    n = int(DAYS * 86400 / STEP)
    start = end - (n - 1) * STEP
    data = tmp / "week.ndjson"
    workers = [("w1@a", True, 1), ("w2@a", True, 1), ("w3@b", True, 0), ("w4@b", True, 2)]
    with open(data, "wb") as f:
        for i in range(n):
            ts = start + i * STEP
            queues = {"celery": (i * 7) % 120, "default": (i * 3) % 40, "emails": i % 5, "reports": (i // 360) % 30,
                      "critical": 0}
            f.write(orjson.dumps(snapshot(ts, queues, workers, oldest={"celery": float(i % 90)}, unacked=i % 4)))
            f.write(b"\n")
            if i % 2000 == 1000:
                f.write(orjson.dumps(alert(ts, fingerprint=f"{i:032x}", started_at=ts)) + b"\n")
            if i % 2000 == 1100:
                f.write(orjson.dumps(alert(ts, status="resolved", fingerprint=f"{i - 100:032x}",
                                           started_at=ts - 1000)) + b"\n")
    size_in = data.stat().st_size
    history = tmp / "xdg" / "doorman" / "history.sqlite3"
    with open(data, "rb") as stdin:
        serve = Serve(tmp, stdin=stdin)
        try:
            serve.wait_up()
            t0 = time.perf_counter()
            with requests.Session() as s:
                last = round(start + (n - 1) * STEP, 3)
                while True:
                    clusters = s.get(serve.url + "/api/v1/status", timeout=30).json()["clusters"]
                    if clusters and abs(clusters[0]["ts"] - last) < 0.01:
                        break
                    if serve.proc.poll() is not None:
                        raise RuntimeError(serve.stderr)
                    time.sleep(0.2)
                intake = time.perf_counter() - t0
                rss, hwm = rss_mib(serve.proc.pid)
                print(f"intake: {n:,} snapshots ({DAYS} days of {STEP:g} s; {size_in / 2**20:.0f} MiB of NDJSON) "
                      f"through stdin in {intake:.1f} s ({n / intake:,.0f} snapshots/s)")
                print(f"serve RSS after the intake: {rss:.1f} MiB (peak {hwm:.1f} MiB; goal < 80 MiB)")
                for path in ("/api/v1/history?range=7d", "/api/v1/alerts?range=7d", "/api/v1/history?range=24h",
                             "/api/v1/history?range=1h"):
                    times = timed(s, serve.url + path, 15)
                    print(f"{path:<28} p50 {pct(times, 0.5):7.1f} ms   max {times[-1]:7.1f} ms"
                          + ("   (goal < 200 ms)" if "7d" in path else ""))
                points = len(s.get(serve.url + "/api/v1/history?range=7d", timeout=30).json()["ts"])
                print(f"7-day chart: {points} points per series (downsampled from {n:,} snapshots)")
        finally:
            serve.stop()
    files = [history, history.with_name(history.name + "-wal")]
    total = sum(p.stat().st_size for p in files if p.exists())
    print(f"SQLite history for {DAYS} days: {total / 2**20:.1f} MiB ({history.stat().st_size / 2**20:.1f} MiB file + "
          f"WAL; 20 queues at most per snapshot)")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="doorman-bench-serve-") as d:
        scrape(Path(d))
    with tempfile.TemporaryDirectory(prefix="doorman-bench-serve-") as d:
        week(Path(d))


if __name__ == "__main__":
    main()
