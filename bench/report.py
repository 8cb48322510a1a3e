"""`make bench`: one report of every benchmark, as a markdown table on stdout and JSON in bench-results/.

    a. detection after kill -9 of the last worker: Doorman vs Flower vs celery-exporter
    b. one-shot healthy check: wall time and peak RSS vs `celery inspect ping`
    c. collection cost vs queue count and depth
    d. doorman-analyze replay and the daemon's RSS (their own benchmarks, output kept as printed)
    e. queue depth with priorities vs each peer
    f. ghost workers and a queue nobody consumes vs each peer (liveness_cases.py)

a, b, c, e and f use one redis-server started here; d and any other bench/bench_*.py run as
their own processes, their output kept verbatim. BENCH_TRIALS (10), BENCH_EXPORTER_TRIALS (1) and
BENCH_ONESHOT_RUNS (10) set the repetitions. Figures are medians (min–max). Nothing is asserted.

`--only detection,oneshot` measures just those parts (`detection` is a, e and f) into report.json;
`--docs` writes the first tables of docs/performance.md (detection and the one-shot check, with the
report's date and machine) from report.json, between its `bench-report` markers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import bench_detection as det
from bench import liveness_cases
from bench.bench_collect import run_measured, time_snapshots
from tests.support.process import BIN, ROOT
from tests.support.redis import RedisServer
from tests.support.workers import Worker, enqueue

OUT = ROOT / "bench-results"
DOCS = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench-report:begin (generated: python -m bench.report --docs) -->", "<!-- bench-report:end -->"
PARTS = ("detection", "oneshot", "cost", "others")
COVERED = {"collect", "detection"}  # measured here directly; the others run as their own processes


def machine() -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
        return "?"

    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    return {
        "nproc": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name"),
        "memory": f"{int(first('/proc/meminfo', 'MemTotal').split()[0]) / 2**20:.1f} GiB", "python": platform.python_version(),
        "redis_server": next((w.split("=", 1)[1] for w in redis_v if w.startswith("v=")), "?"),
        "os": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# ---------------------------------------------------------------- b. one-shot healthy check

# A pipeline's stages forked from a minimal launcher (see bench_collect.LAUNCHER for why): wall time
# of the whole line and each stage's own peak RSS from wait4.
LINE_LAUNCHER = """
import json, os, sys, time
argvs = [a.split("\\x1f") for a in sys.argv[1:]]
t = time.perf_counter()
null = os.open(os.devnull, os.O_RDWR)
prev, pids = null, []
for i, argv in enumerate(argvs):
    last = i == len(argvs) - 1
    if not last:
        r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(prev, 0)
        os.dup2(null if last else w, 1)
        os.dup2(null, 2)
        os.execv(argv[0], argv)
    if prev != null:
        os.close(prev)
    if not last:
        os.close(w)
        prev = r
    pids.append(pid)
stages = {}
for pid in pids:
    _, status, usage = os.wait4(pid, 0)
    stages[pid] = (usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))
print(json.dumps({"wall": time.perf_counter() - t, "rss": [stages[p][0] for p in pids],
                  "codes": [stages[p][1] for p in pids]}))
"""


def run_line(stages: list[list[str]], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-S", "-c", LINE_LAUNCHER, *("\x1f".join(s) for s in stages)],
                         env=env, capture_output=True, cwd=ROOT, check=True, timeout=120).stdout
    return orjson.loads(out)


def oneshot(server: RedisServer, runs: int) -> dict[str, Any]:
    worker = Worker(server.url, "bench@oneshot", concurrency=2)
    tmp = tempfile.mkdtemp(prefix="doorman-bench-oneshot-")
    env = {**os.environ, "REDIS_URL": server.url, "DOORMAN_CONFIG": "", "DOORMAN_SPOOL": f"{tmp}/spool.ndjson",
           "XDG_STATE_HOME": tmp}
    collect = [str(BIN / "doorman-collect"), "--once"]
    line = [collect, [str(BIN / "doorman-analyze"), "--state", f"{tmp}/state.json"],
            [str(BIN / "doorman-notify"), "--dry-run"]]
    ping = [str(BIN / "celery"), "-A", "doorman.demoapp", "inspect", "ping"]
    got: dict[str, list] = {"collect": [], "line": [], "ping": []}
    try:
        worker.wait_ready(server.client())
        for _ in range(runs):  # alternated, so drift on a shared machine hits all three alike
            got["collect"].append(run_measured(collect, env))
            got["line"].append(run_line(line, env))
            got["ping"].append(run_measured(ping, env))
    finally:
        worker.kill9()
    return {
        "runs": runs,
        "collect": {"wall_s": det.spread([r[0] for r in got["collect"]]),
                    "rss_mib": det.spread([r[1] for r in got["collect"]]),
                    "exit_codes": sorted({r[2] for r in got["collect"]})},
        "line": {"wall_s": det.spread([r["wall"] for r in got["line"]]),
                 "rss_mib_largest_stage": det.spread([max(r["rss"]) for r in got["line"]]),
                 "rss_mib_sum_of_stages": det.spread([sum(r["rss"]) for r in got["line"]]),
                 "exit_codes": sorted({tuple(r["codes"]) for r in got["line"]})},
        "ping": {"wall_s": det.spread([r[0] for r in got["ping"]]), "rss_mib": det.spread([r[1] for r in got["ping"]]),
                 "exit_codes": sorted({r[2] for r in got["ping"]})},
    }


def oneshot_table(o: dict[str, Any]) -> str:
    f = det.fmt_spread
    rows = ["| command (1 prefork worker up) | wall | peak RSS | exit codes |", "|---|---|---|---|",
            f"| `doorman-collect --once` | {f(o['collect']['wall_s'])} | {f(o['collect']['rss_mib'], 'MiB', 1)} "
            f"| {o['collect']['exit_codes']} |",
            f"| `doorman-collect --once \\| doorman-analyze \\| doorman-notify --dry-run` | {f(o['line']['wall_s'])} "
            f"| largest stage {f(o['line']['rss_mib_largest_stage'], 'MiB', 1)}; sum of the three "
            f"{f(o['line']['rss_mib_sum_of_stages'], 'MiB', 1)} | {[list(c) for c in o['line']['exit_codes']]} |",
            f"| `celery -A doorman.demoapp inspect ping` | {f(o['ping']['wall_s'])} | {f(o['ping']['rss_mib'], 'MiB', 1)} "
            f"| {o['ping']['exit_codes']} |"]
    return "\n".join(rows)


# ---------------------------------------------------------------- c. collection cost

def fill(client: Any, queue: str, n: int, url: str) -> int:
    """n copies of one real Celery message in `queue` (the monitor's cost must not depend on n)."""
    enqueue(url, 1, task="demo.add", args=(2, 3), queue=queue)
    message = client.lindex(queue, 0)
    pipe = client.pipeline(transaction=False)
    left = n - 1
    while left > 0:
        chunk = min(left, 10_000)
        pipe.lpush(queue, *([message] * chunk))
        pipe.execute()
        left -= chunk
    return client.llen(queue)


def collection_cost(server: RedisServer) -> list[dict[str, Any]]:
    client = server.client()
    client.flushdb()
    rows = []
    for depth in (0, 1_000_000):
        actual = fill(client, "q0", depth, server.url) if depth else 0
        for n in (1, 100, 1000):
            ms = time_snapshots(server.url, [f"q{i}" for i in range(n)])
            rows.append({"queues": n, "depth_q0": actual, "ms": det.spread(ms)})
            print(f"  {n} queues, depth {actual:,}: {det.fmt_spread(rows[-1]['ms'], 'ms')}", flush=True)
    client.flushdb()
    return rows


def cost_table(rows: list[dict[str, Any]]) -> str:
    out = ["| queues | messages in queue q0 | time per snapshot (in-process, no worker, 40 runs) |", "|---|---|---|"]
    out += [f"| {r['queues']:,} | {r['depth_q0']:,} | {det.fmt_spread(r['ms'], 'ms')} |" for r in rows]
    return "\n".join(out)


# ---------------------------------------------------------------- d. the other benchmarks

def others() -> dict[str, Any]:
    out = {}
    found = sorted(Path(__file__).parent.glob("bench_*.py"))
    if not found:  # a moved folder must not turn `make bench` into a silent subset
        raise SystemExit(f"no bench_*.py beside {__file__}")
    for path in found:
        name = path.stem[len("bench_"):]
        if name in COVERED:
            continue
        print(f"  running bench_{name} ...", flush=True)
        t = time.monotonic()
        # a benchmark that runs longer (the one-hour chaos soak) says so with TIMEOUT_SECONDS
        limit = float(getattr(importlib.import_module(f"bench.bench_{name}"), "TIMEOUT_SECONDS", 1800))
        try:
            p = subprocess.run([sys.executable, "-m", "bench.run", name], cwd=ROOT, capture_output=True,
                               text=True, timeout=limit)
            out[name] = {"exit_code": p.returncode, "seconds": time.monotonic() - t,
                         "output": p.stdout.split(f"=== {name} ===", 1)[-1].strip() + (
                             f"\n[stderr]\n{p.stderr[-2000:]}" if p.returncode else "")}
        except subprocess.TimeoutExpired:
            out[name] = {"exit_code": None, "seconds": time.monotonic() - t, "output": f"timed out after {limit:g} s"}
    return out


# ---------------------------------------------------------------- the report

def render(r: dict[str, Any], ps: det.Peers) -> str:
    m = r["machine"]
    d = r["detection"]["detection"]
    b = d["breakdown"]
    parts = [
        f"Machine: {m['nproc']} CPU ({m['cpu']}), {m['memory']} RAM, Python {m['python']}, "
        f"redis-server {m['redis_server']}; {m['date']}. Peers: "
        + ", ".join(f"{k} {v}" for k, v in r["detection"]["peer_versions"].items())
        + "".join(f"; {k}: {v}" for k, v in r["detection"]["peers_missing"].items()) + ".",
        "", "### a. Detection after `kill -9` of the last worker (5 tasks pending, default check_interval 30)", "",
        det.detection_table(d, ps), "",
        f"Doorman's breakdown: the last heartbeat came {det.fmt_spread(b['last_heartbeat_before_kill'])} before "
        f"the kill; the snapshot that raised the alert started {det.fmt_spread(b['snapshot_after_kill'])} after "
        f"it (trigger: {', '.join(b['triggers']) or '?'}), and its alert reached the webhook "
        f"{det.fmt_spread(b['snapshot_to_post'])} after the snapshot started (collect, analyze, notify, HTTP)."
        + (f" celery-exporter's `celery_active_worker_count` for the dead worker's queue fell to 0 after "
           f"{det.fmt_spread(d['exporter']['active_worker_count_zero'])}."
           if d["exporter"].get("active_worker_count_zero", {}).get("n") else ""),
        "", "Peers' RSS at the end of the run: " + (", ".join(
            f"{k} {v:.1f} MiB" for k, v in r["detection"]["peer_rss_mib_at_end"].items() if v) or "—") + ".",
        "", "### b. One-shot healthy check", "", oneshot_table(r["oneshot"]),
        "", "### c. Collection cost vs queue count and depth", "", cost_table(r["collection_cost"]),
        "", "### d. Other benchmarks (their own output)", "",
    ]
    for name, o in r["others"].items():
        parts += [f"`bench_{name}` (exit {o['exit_code']}, {o['seconds']:.0f} s):", "", "```", o["output"], "```", ""]
    parts += ["### e. Queue depth with priorities", "", det.depth_table(r["detection"]["queue_depth"], ps)]
    parts += ["", "### f. Ghost workers and a queue nobody consumes", "",
              liveness_cases.cases_table(r["detection"]["liveness_cases"], ps)]
    return "\n".join(parts)


def machine_line(m: dict[str, Any]) -> str:
    return (f"{m['nproc']} CPU ({m['cpu']}), {m['memory']} RAM, {m['os']}, Python {m['python']}, "
            f"redis-server {m['redis_server']}")


def docs_tables(r: dict[str, Any]) -> str:
    """The generated head of docs/performance.md: what report.json holds of a (detection) and b
    (one-shot check), with its date and machine."""
    from types import SimpleNamespace

    out = [f"Measured {r['machine']['date']} by `make bench` (bench-results/report.json) on "
           f"{machine_line(r['machine'])}."]
    if "detection" in r:
        d = r["detection"]
        ps = SimpleNamespace(versions=d["peer_versions"])
        out += ["", "**Dead workers**: `kill -9` of the last worker, 5 tasks pending, default settings "
                "([how it is measured](#dead-workers-kill--9-of-the-last-worker-5-tasks-pending)):", "",
                det.detection_table(d["detection"], ps)]  # type: ignore[arg-type]
    if "oneshot" in r:
        out += ["", f"**One-shot healthy check** (cron; {r['oneshot']['runs']} runs each, alternated):", "",
                oneshot_table(r["oneshot"])]
    return "\n".join(out)


def write_docs(report_path: Path = OUT / "report.json", docs: Path = DOCS) -> None:
    """Replace what lies between the markers of docs/performance.md with the report's tables."""
    r = orjson.loads(report_path.read_bytes())
    text = docs.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{docs}: the markers {BEGIN!r} and {END!r} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    docs.write_text(f"{head}{BEGIN}\n{docs_tables(r)}\n{END}{tail}")
    print(f"written: {docs}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("--only", help=f"comma-separated parts to measure ({', '.join(PARTS)}); default all")
    parser.add_argument("--docs", action="store_true", help="write docs/performance.md's first tables from report.json")
    args = parser.parse_args(argv)
    if args.docs:
        write_docs()
        return
    parts = set(args.only.split(",")) if args.only else set(PARTS)
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    trials = int(os.environ.get("BENCH_TRIALS", "10"))
    exporter_trials = int(os.environ.get("BENCH_EXPORTER_TRIALS", "1"))
    runs = int(os.environ.get("BENCH_ONESHOT_RUNS", "10"))
    report: dict[str, Any] = {"machine": machine()}
    ps = None
    server = RedisServer().start()
    try:
        if "detection" in parts:
            print("a+e+f. detection, queue depth, ghost and unconsumed cases vs the peers", flush=True)
            report["detection"], ps = det.run(server, trials, exporter_trials)
        if "oneshot" in parts:
            print("b. one-shot healthy check", flush=True)
            report["oneshot"] = oneshot(server, runs)
        if "cost" in parts:
            print("c. collection cost", flush=True)
            report["collection_cost"] = collection_cost(server)
    finally:
        server.cleanup()
    if "others" in parts:
        print("d. other benchmarks", flush=True)
        report["others"] = others()
    OUT.mkdir(exist_ok=True)
    (OUT / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if parts == set(PARTS) and ps is not None:
        text = render(report, ps)
        (OUT / "report.md").write_text(text + "\n")
        print("\n" + text)
        print(f"\n(written: {OUT / 'report.json'}, {OUT / 'report.md'}; docs/performance.md: "
              "python -m bench.report --docs)")
    else:
        print("\n" + docs_tables(report))
        print(f"\n(written: {OUT / 'report.json'}; docs/performance.md: python -m bench.report --docs)")


if __name__ == "__main__":
    main()
