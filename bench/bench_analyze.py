"""`make bench` figures for doorman-analyze: replay throughput and memory.

Realistic snapshots (3 queues with priority heads, 4 workers, a few running tasks; every few
thousand snapshots an incident: backlog spike, workers dying, broker blip, a zombie) are fed
1. through the engine with in-memory state, 2. through the engine with a state file saved the way
the CLI saves it, 3. through the real command (`doorman-analyze --state F < day.ndjson`), and
4. a million through the engine, printing RSS along the way to show memory stays flat.
Goal: >= 50,000 snapshots/s; memory flat.
"""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from doorman.analyze.engine import Engine
from doorman.analyze.state import StateFile
from doorman.config.load import make_config
from doorman.timefmt import iso

T0 = 1_800_000_000.0
STEP = 10.0
CONFIG = make_config(thresholds={"max_queue_size": 1000, "critical_queues": ["payments"],
                                 "queues": {"emails": {"max_queue_size": 400}}})


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def base_snapshots(n: int = 1000) -> list[dict]:
    """n distinct snapshots of a busy but mostly healthy cluster, with incidents mixed in."""
    out = []
    names = ["w1@app-1", "w2@app-1", "w3@app-2", "w4@app-2"]
    for i in range(n):
        phase = i % 500
        pending = {"celery": 20 + (i * 7) % 40, "emails": 5 + (i * 3) % 10, "payments": (i * 5) % 4}
        if 100 <= phase < 140:
            pending["celery"] = 200 + (phase - 100) * 40  # a backlog builds and explodes
        alive = [True, True, phase < 200 or phase >= 230, phase < 300 or phase >= 320]
        if 300 <= phase < 310:
            alive = [False] * 4
        queues = {}
        for q, p in pending.items():
            heads = [{"task_id": f"{q}-{i // 3}-{pri}", "task_name": "app.work", "priority": pri,
                      "published_at": None, "age_seconds": None} for pri in (0, 9)] if p else []
            queues[q] = {"pending": p, "by_priority": {"0": p // 2, "3": 0, "6": 0, "9": p - p // 2},
                         "oldest": {**heads[-1], "age_source": None} if heads else None, "heads": heads,
                         "source": "config"}
        ws = [{"name": nm, "alive": a, "responded": a, "active": 1 if a else None, "last_heartbeat": None,
               "heartbeat_freq": None} for nm, a in zip(names, alive, strict=True)]
        active = [{"task_id": f"run-{i // 10}-{k}", "task_name": "app.work", "worker": names[k],
                   "started_at": None, "runtime_seconds": 3000.0 if 400 <= phase < 410 and k == 0 else 1.5,
                   "queue": "celery", "pid": 100 + k} for k in range(4) if alive[k]]
        snap = {"v": 1, "kind": "snapshot", "ts": "", "cluster": "prod", "broker": "redis://redis:6379/0",
                "seq": i + 1, "trigger": "interval", "redis_connected": True, "error": None,
                "pending_tasks": sum(pending.values()), "queues": queues, "alive_workers": sum(alive),
                "workers": ws, "active_tasks": len(active), "active": active,
                "unacked": {"count": len(active), "oldest_delivered_at": None, "oldest_age_seconds": None,
                            "visibility_timeout": 3600.0}, "workers_subscribed": sum(alive), "collect_ms": 3.2}
        if 450 <= phase < 453:
            snap.update(redis_connected=False, error="ConnectionError: refused", pending_tasks=None, queues={},
                        alive_workers=None, workers=[], active=[], active_tasks=None, unacked=None)
        out.append(snap)
    return out


def stream(n: int, bases: list[dict]):
    for i in range(n):
        s = dict(bases[i % len(bases)])
        s["ts"] = iso(T0 + i * STEP)
        yield s


def run_engine(n: int, bases: list[dict], store: StateFile | None = None, marks: tuple[int, ...] = ()) -> tuple:
    engine = Engine(CONFIG, store.load() if store else None)
    snaps = list(stream(n, bases)) if not marks else None
    gc.freeze()  # the pre-built snapshots are a bench artefact (the CLI holds one at a time): keep GC off them
    alerts = 0
    started = time.perf_counter()
    for i, s in enumerate(snaps if snaps is not None else stream(n, bases), start=1):
        out = engine.process(s)
        alerts += len(out)
        if store:
            store.save(engine.state, urgent=bool(out))
        if i in marks:
            print(f"  after {i:>9,} snapshots: RSS {_rss_mb():6.1f} MB, state {len(orjson.dumps(engine.state)):,} bytes",
                  flush=True)
    elapsed = time.perf_counter() - started
    if store:
        store.close(engine.state)
    del snaps
    gc.unfreeze()
    return elapsed, alerts


def main() -> None:
    n = 100_000
    bases = base_snapshots()
    size = sum(len(orjson.dumps(s)) for s in bases) / len(bases)
    print(f"snapshots: {n:,} realistic ({size:.0f} bytes each as NDJSON), 1 every {STEP:g} s of stream time")

    elapsed, alerts = run_engine(n, bases)
    print(f"engine, state in memory:     {n / elapsed:>9,.0f} snapshots/s  ({alerts} alerts)")

    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "state.json")
        elapsed, alerts = run_engine(n, bases, StateFile(path, print))
        print(f"engine + state file:         {n / elapsed:>9,.0f} snapshots/s  ({alerts} alerts, each followed "
              f"by a state write; otherwise at most 1 write/s)")

        data = Path(d) / "day.ndjson"
        with open(data, "wb") as f:
            for s in stream(n, bases):
                f.write(orjson.dumps(s) + b"\n")
        cmd = [str(Path(sys.executable).parent / "doorman-analyze"), "--state", str(Path(d) / "cli.json")]
        started = time.perf_counter()
        with open(data, "rb") as f:
            r = subprocess.run(cmd, stdin=f, capture_output=True, check=True)
        elapsed = time.perf_counter() - started
        print(f"doorman-analyze --state F:   {n / elapsed:>9,.0f} snapshots/s  (whole process incl. start-up, "
              f"NDJSON parse and validation; {len(r.stdout.splitlines())} alerts)")

    print(f"peak RSS so far: {_peak_mb():.1f} MB")
    print("1,000,000 snapshots through the engine (generated on the fly), in-memory state:")
    run_engine(1_000_000, bases, marks=(100_000, 500_000, 1_000_000))
    print(f"peak RSS: {_peak_mb():.1f} MB")


if __name__ == "__main__":
    main()
