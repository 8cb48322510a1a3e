"""Detection of a kill -9'd last worker, and queue depth with priorities: Doorman vs Flower vs celery-exporter.

All three watch one redis-server started here (127.0.0.1, free port), in the same run:

* Doorman: the real daemon line `doorman-collect --interval 30 | doorman-analyze | doorman-notify`
  with GENERIC_WEBHOOK_URL at an HTTP receiver on 127.0.0.1; the time is kill → the workers_down
  POST arriving.
* Flower: `/api/workers?status=1` polled every 0.2 s until the worker says false. Flower alerts
  nobody; this is only when its API would let someone find out.
* celery-exporter: `celery_worker_up{hostname}` on `/metrics` until 0 (its worker timeout is 300 s,
  so only BENCH_EXPORTER_TRIALS trials, default 1, capped at 330 s).

Each trial: a fresh database, one prefork worker busy with a sleep task (queue `busy`), 5 tasks
pending in `celery`, the kill at a random phase of the 2 s heartbeat. Peers come from
`make bench-peers`; a missing one is reported with the reason. Nothing is asserted. The queue-depth
part and the peers live in queue_depth.py.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
from datetime import datetime
from typing import Any

from bench import liveness_cases, peers
from bench.queue_depth import Peers, depth_table, queue_depth
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.receiver import Receiver
from tests.support.redis import RedisServer
from tests.support.workers import Worker, enqueue

HOOK = "/hooks/bench"
FLOWER_POLL = 0.2
CAPS = {"doorman": 60.0, "flower": 60.0, "exporter": 330.0}


def spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "values": []}
    return {"n": len(values), "median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def fmt_spread(s: dict[str, Any], unit: str = "s", digits: int = 2) -> str:
    if not s["n"]:
        return "—"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f} {unit}"
    return f"{s['median']:.{digits}f} {unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


# ---------------------------------------------------------------- detection after kill -9

def _poll_until(fn, stop: threading.Event, cap: float, every: float, result: dict[str, Any], key: str,
                since: float) -> None:
    """Call fn() until it returns True; record seconds from `since` to the answer that said so."""
    deadline = since + cap
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if fn():
                result[key] = time.monotonic() - since
                return
        except Exception as e:  # noqa: BLE001 - a peer's error is a figure too, not a crash of the bench
            result.setdefault(f"{key}_errors", []).append(str(e)[:200])
        stop.wait(every)
    result.setdefault(key, None)


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def one_trial(server: RedisServer, ps: Peers, receiver: Receiver, n: int, with_exporter: bool) -> dict[str, Any]:
    client = server.client()
    client.flushdb()
    host = f"trial{n}"
    name = f"w{n}@{host}"
    worker = Worker(server.url, name, concurrency=1, queues="busy")
    pipe = DaemonPipeline(server.url, receiver.url(f"{HOOK}/{n}"), interval=30,
                          workdir=tempfile.mkdtemp(prefix="doorman-bench-detect-"))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    result: dict[str, Any] = {"trial": n, "worker": name}
    try:
        worker.wait_ready(client)
        enqueue(server.url, 1, task="demo.sleep", args=(600,), queue="busy")
        enqueue(server.url, 5, task="demo.add", args=(2, 3), queue="celery")
        pipe.start()
        pipe.wait_heartbeat(name)
        flower, exporter = ps.running.get("flower"), ps.running.get("exporter") if with_exporter else None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                client.llen("busy") == 0
                and (not flower or peers.flower_workers(flower).get(name) is True)
                and (not exporter or peers.exporter_value(peers.exporter_metrics(exporter), "celery_worker_up",
                                                          "hostname", host) == 1)):
            time.sleep(0.2)
        time.sleep(random.uniform(0, 2))  # any phase of the heartbeat cycle

        killed_at, killed_wall = time.monotonic(), time.time()
        worker.kill9()
        if flower:
            threads.append(threading.Thread(target=_poll_until, daemon=True, args=(
                lambda: peers.flower_workers(flower).get(name) is False, stop, CAPS["flower"], FLOWER_POLL,
                result, "flower", killed_at)))
        if exporter:
            def exporter_down() -> bool:
                m = peers.exporter_metrics(exporter)
                if "exporter_active_worker_count_zero" not in result and peers.exporter_value(
                        m, "celery_active_worker_count", "queue_name", "busy") == 0:
                    result["exporter_active_worker_count_zero"] = time.monotonic() - killed_at
                return peers.exporter_value(m, "celery_worker_up", "hostname", host) == 0
            threads.append(threading.Thread(target=_poll_until, daemon=True, args=(
                exporter_down, stop, CAPS["exporter"], 0.0, result, "exporter", killed_at)))
        for t in threads:
            t.start()

        deadline = killed_at + CAPS["doorman"]
        while time.monotonic() < deadline:
            hits = [r for r in receiver.at(f"{HOOK}/{n}") if r.json.get("alert_type") == "workers_down"]
            if hits:
                alert = hits[0].json
                result["doorman"] = hits[0].at - killed_at
                raised_by = next((s for s in pipe.snapshots() if s["ts"] == alert["ts"]), None)
                if raised_by:
                    result["trigger"] = raised_by["trigger"]
                    result["snapshot_after_kill"] = _epoch(raised_by["ts"]) - killed_wall
                    hb = [w.get("last_heartbeat") for w in raised_by["workers"] if w["name"] == name]
                    if hb and hb[0]:
                        result["last_heartbeat_before_kill"] = killed_wall - _epoch(hb[0])
                result["message"] = alert["message"]
                break
            time.sleep(0.02)
        result.setdefault("doorman", None)
        for t in threads:
            t.join(CAPS["exporter"] + 30)
    finally:
        stop.set()
        pipe.stop()
        worker.kill9()
    return result


def detection(server: RedisServer, ps: Peers, trials: int, exporter_trials: int) -> dict[str, Any]:
    receiver = Receiver()
    runs = []
    try:
        for n in range(1, trials + 1):
            with_exporter = "exporter" in ps.running and n <= exporter_trials
            r = one_trial(server, ps, receiver, n, with_exporter)
            runs.append(r)
            print(f"  trial {n}: doorman {r.get('doorman')}, flower {r.get('flower')}"
                  + (f", exporter {r.get('exporter')}" if with_exporter else ""), flush=True)
    finally:
        receiver.close()

    def col(key: str) -> list[float]:
        return [r[key] for r in runs if r.get(key) is not None]

    def missed(key: str, runs_with: list[dict[str, Any]]) -> int:
        return sum(1 for r in runs_with if r.get(key) is None)

    exporter_runs = [r for r in runs if "exporter" in r]
    return {
        "trials": trials, "runs": runs,
        "doorman": {**spread(col("doorman")), "missed": missed("doorman", runs),
                    "how": "kill → workers_down POST at the webhook (`collect --interval 30 \\| analyze \\| notify`)"},
        "flower": {**spread(col("flower")), "missed": missed("flower", [r for r in runs if "flower" in r]),
                   "how": f"kill → `/api/workers?status=1` says false (polled every {FLOWER_POLL} s); no alert"}
        if "flower" in ps.running else {"n": 0, "why": ps.missing.get("flower")},
        "exporter": {**spread(col("exporter")), "missed": missed("exporter", exporter_runs),
                     "cap": CAPS["exporter"],
                     "active_worker_count_zero": spread(col("exporter_active_worker_count_zero")),
                     "how": "kill → `celery_worker_up` 0 on `/metrics` (each scrape ~2 s); no alert"}
        if "exporter" in ps.running else {"n": 0, "why": ps.missing.get("exporter")},
        "breakdown": {
            "last_heartbeat_before_kill": spread(col("last_heartbeat_before_kill")),
            "snapshot_after_kill": spread(col("snapshot_after_kill")),
            "snapshot_to_post": spread([r["doorman"] - r["snapshot_after_kill"] for r in runs
                                        if r.get("doorman") is not None and r.get("snapshot_after_kill") is not None]),
            "triggers": sorted({r["trigger"] for r in runs if r.get("trigger")}),
        },
    }


# ---------------------------------------------------------------- tables

def detection_table(d: dict[str, Any], ps: Peers) -> str:
    rows = ["| tool | what is measured | trials | kill → detected, median (min–max) | alerts anyone? |",
            "|---|---|---|---|---|"]
    doorman = d["doorman"]
    rows.append(f"| **Doorman** | {doorman['how']} | {doorman['n']}"
                f"{' (' + str(doorman['missed']) + ' missed)' if doorman['missed'] else ''}"
                f" | **{fmt_spread(doorman)}** | yes: webhook POST (Slack/PagerDuty the same way) |")
    for key, label in (("flower", f"Flower {ps.versions.get('flower', '')}"),
                       ("exporter", f"celery-exporter {ps.versions.get('exporter', '')}")):
        s = d[key]
        if "why" in s:
            rows.append(f"| {label} | — | 0 | not measured: {s['why']} | — |")
            continue
        missed = f", {s['missed']} not within {CAPS[key]:g} s" if s.get("missed") else ""
        note = " (one trial only: it takes ~300 s)" if key == "exporter" and s["n"] <= 1 else ""
        rows.append(f"| {label} | {s['how']} | {s['n']}{note}{missed} | {fmt_spread(s)} | no |")
    return "\n".join(rows)


def run(server: RedisServer, trials: int, exporter_trials: int) -> tuple[dict[str, Any], Peers]:
    """Start the peers, measure queue depth first (before any worker exists), then detection, then
    the ghost and unconsumed cases (liveness_cases.py)."""
    ps = Peers(server.url)
    try:
        depth = queue_depth(server, ps)
        det = detection(server, ps, trials, exporter_trials)
        cases = liveness_cases.run(server, ps)
        rss = {name: p.rss_mib() for name, p in ps.running.items()}
    finally:
        ps.stop()
    return {"queue_depth": depth, "detection": det, "liveness_cases": cases, "peer_rss_mib_at_end": rss,
            "peer_versions": ps.versions, "peers_missing": ps.missing}, ps


def main() -> None:
    trials = int(os.environ.get("BENCH_TRIALS", "10"))  # issue 12: the median over 10 runs
    exporter_trials = int(os.environ.get("BENCH_EXPORTER_TRIALS", "1"))
    server = RedisServer().start()
    try:
        res, ps = run(server, trials, exporter_trials)
    finally:
        server.cleanup()
    print("\nDetection after kill -9 of the last worker (5 tasks pending):\n")
    print(detection_table(res["detection"], ps))
    print("\nGhost workers and a queue nobody consumes:\n")
    print(liveness_cases.cases_table(res["liveness_cases"], ps))
    print("\nQueue depth with priorities:\n")
    print(depth_table(res["queue_depth"], ps))


if __name__ == "__main__":
    main()
