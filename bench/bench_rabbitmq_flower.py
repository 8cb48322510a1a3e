"""Flower beside Doorman on the same RabbitMQ (issue 26 item 6): the machine's rabbitmq-server, the
same throw-away vhost, the same real workers, both watching at once. Nothing is asserted.

* kill -9 of the last worker (5 tasks waiting in `celery`, which it does not consume) → Flower's
  `/api/workers?status=1` shows it offline, polled every POLL seconds, and Doorman's
  `workers_down` POSTed at a webhook by the daemon line (`collect --interval 30 | analyze |
  notify`, default settings, as bench_rabbitmq): both timed from the same kill, in the same trial;
* kill -9 of one of three workers → Flower offline, and Doorman's `worker_lost`;
* depth right after a burst: 7 tasks published to `celery`, which no worker consumes, then Flower's
  `/api/queues/length` (the management API, `--broker_api`) and `doorman-collect --once`'s
  `queues.celery.pending` read at once and 1, 3, 6 and 10 s later, and Flower polled every POLL s
  for when it first shows the burst;
* the resident memory of the Flower that watched the kill trials, beside a `doorman-collect
  --interval 30` line that ran through the same trials, and `doorman-collect --once`'s peak.

One vhost and one Flower serve each series (a fresh worker name per trial, a fresh daemon line per
trial), so Flower's memory is that of a Flower that has seen every trial. A peer that is not
installed (`make bench-peers`) is reported with the reason; Doorman's figures are measured anyway.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from typing import Any

import amqp
import orjson
import requests

from bench import peers
from bench.bench_collect import run_measured
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.process import BIN, cli, wait_for
from tests.support.rabbit import ADMIN, HOST, MGMT, PORT, Vhost, wait_listening
from tests.support.receiver import Receiver
from tests.support.workers import Worker, enqueue

POLL = 0.25  # seconds between two reads of Flower's /api/workers?status=1
CAP = 30.0  # seconds after the kill before a tool is reported as not having noticed
BROKER_API = f"http://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:15672/api/"
BURST = 7
MARKS = (0.0, 1.0, 3.0, 6.0, 10.0)
WATCH = 15.0  # seconds Flower's queue length is watched for the burst


def spread(values: list[float], unit: str = "s", digits: int = 2) -> str:
    if not values:
        return "—"
    return (f"{statistics.median(values):.{digits}f} {unit} ({min(values):.{digits}f}–"
            f"{max(values):.{digits}f})")


def drop(v: Vhost) -> None:
    """Delete the vhost, and say so if RabbitMQ still lists it."""
    v.delete()
    left = requests.get(f"{MGMT}/api/vhosts/{v.path}", auth=ADMIN, timeout=10).status_code != 404
    print(f"  vhost {v.name} {'NOT deleted' if left else 'deleted'}", flush=True)


def flower_or_reason(url: str) -> tuple[peers.Peer | None, str]:
    ok, info = peers.installed("flower")
    if not ok:
        return None, info
    try:
        return peers.start_flower(url, broker_api=BROKER_API), info
    except RuntimeError as e:
        return None, f"did not start: {e}"


def flower_online(flower: peers.Peer, names: list[str]) -> bool:
    try:
        status = peers.flower_workers(flower)
    except (requests.RequestException, ValueError):
        return False
    return all(status.get(name) is True for name in names)


def kill_trial(v: Vhost, flower: peers.Peer | None, receiver: Receiver, n: int, workers: int,
               alert: str) -> dict[str, Any]:
    hook = f"/h/{alert}/{n}"
    ws = [Worker(v.url(), f"w{i}@{alert}-t{n}", queues="busy") for i in range(workers)]
    pipe = None
    out: dict[str, Any] = {"doorman": None, "flower": None, "flower_errors": 0}
    try:
        for w in ws:
            wait_listening(v, w)
        if workers == 1:
            enqueue(v.url(), 5, task="demo.add", args=(2, 3))
        pipe = DaemonPipeline(v.url(), receiver.url(hook), interval=30,
                              workdir=tempfile.mkdtemp(prefix="doorman-bench-flower-")).start()
        for w in ws:
            pipe.wait_heartbeat(w.name, timeout=30)
        wait_for(lambda p=pipe: any(((s.get("connections") or {}).get("consumers") or 0) >= workers
                                    for s in p.snapshots()), 30, "the pidbox queues found")
        if flower:
            wait_for(lambda: flower_online(flower, [w.name for w in ws]), 30, "Flower to show the workers online")
        time.sleep(1 + n * 0.4)  # a different phase of the 2 s heartbeat each trial
        killed = ws[0].name
        t = time.monotonic()
        ws[0].kill9()
        next_poll = t
        while time.monotonic() < t + CAP and (out["doorman"] is None or (flower and out["flower"] is None)):
            if out["doorman"] is None:
                hits = [r for r in receiver.at(hook) if r.json.get("alert_type") == alert]
                if hits:
                    out["doorman"] = hits[0].at - t
            if flower and out["flower"] is None and time.monotonic() >= next_poll:
                asked = time.monotonic()
                next_poll = asked + POLL
                try:
                    if peers.flower_workers(flower).get(killed) is False:
                        out["flower"] = asked - t
                except (requests.RequestException, ValueError):
                    out["flower_errors"] += 1
            time.sleep(0.01)
        if pipe.procs:
            out["collect_rss"] = peers.rss_mib(pipe.procs[0].pid)
    finally:
        if pipe:
            pipe.stop()
        for w in ws:
            w.kill9()
    return out


def kills(trials: int) -> dict[str, Any]:
    """Both kill series on one vhost, one Flower and one long-lived daemon line (for its memory)."""
    v = Vhost()
    receiver = Receiver()
    flower, flower_info = flower_or_reason(v.url())
    line = None
    res: dict[str, Any] = {"flower_info": flower_info, "flower_up": flower is not None, "series": {}}
    try:
        line = DaemonPipeline(v.url(), receiver.url("/line"), interval=30,
                              workdir=tempfile.mkdtemp(prefix="doorman-bench-flower-line-")).start()
        for label, workers, alert in (("last worker", 1, "workers_down"), ("one of three", 3, "worker_lost")):
            runs = []
            for n in range(trials):
                r = kill_trial(v, flower, receiver, n, workers, alert)
                runs.append(r)
                print(f"  {label} trial {n + 1}: doorman {r['doorman']}, flower {r['flower']}", flush=True)
            res["series"][label] = (alert, runs)
        res["flower_rss"] = flower.rss_mib() if flower else None
        line.check_running()
        res["line_rss"] = {os.path.basename(str(p.args[0])): peers.rss_mib(p.pid) for p in line.procs}
    finally:
        if line:
            line.stop()
        if flower:
            flower.stop()
        receiver.close()
        drop(v)
    return res


def mgmt_messages(v: Vhost, queue: str) -> int | None:
    r = requests.get(f"{MGMT}/api/queues/{v.path}/{queue}", auth=ADMIN, timeout=10)
    return r.json().get("messages") if r.status_code == 200 else None


def flower_length(flower: peers.Peer, queue: str) -> Any:
    try:
        return peers.flower_queue_lengths(flower).get(queue, "absent")
    except (requests.RequestException, ValueError) as e:
        return f"error {type(e).__name__}"


def watch_flower(flower: peers.Peer, t0: float, stop: threading.Event, seen: dict[str, Any]) -> None:
    """Flower's queue length every POLL s from the burst: when it first showed the burst."""
    while not stop.is_set():
        asked = time.monotonic()
        if flower_length(flower, "celery") == BURST:
            seen["first"] = asked - t0
            return
        stop.wait(max(0.0, asked + POLL - time.monotonic()))


def depth(trials: int) -> dict[str, Any]:
    """A queue nobody consumes (no worker in the vhost ever), emptied before each burst until the tool
    that lags (Flower, or the management API without it) shows it empty."""
    v = Vhost()
    flower, flower_info = flower_or_reason(v.url())
    res: dict[str, Any] = {"flower_info": flower_info, "flower_up": flower is not None, "trials": [],
                           "first": [], "missed": 0}
    conn = amqp.Connection(f"{HOST}:{PORT}", userid=ADMIN[0], password=ADMIN[1], virtual_host=v.name)
    conn.connect()
    env = {"REDIS_URL": v.url()}
    try:
        ch = conn.channel()
        ch.queue_declare(queue="celery", durable=True, auto_delete=False)  # as Celery declares it
        for n in range(trials):
            ch.queue_purge("celery")
            wait_for(lambda: (flower_length(flower, "celery") if flower else mgmt_messages(v, "celery")) == 0, 30,
                     "celery shown empty")
            time.sleep(n * 5.0 / trials)  # phases spread over the broker's 5 s statistics emission
            before = flower_length(flower, "celery") if flower else None
            enqueue(v.url(), BURST, task="demo.add", args=(2, 3), queue="celery")
            t0 = time.monotonic()
            stop, seen = threading.Event(), {"first": None}
            watcher = threading.Thread(target=watch_flower, args=(flower, t0, stop, seen), daemon=True) if flower else None
            if watcher:
                watcher.start()
            reads: list[dict[str, Any]] = []
            for mark in MARKS:
                time.sleep(max(0.0, t0 + mark - time.monotonic()))
                row: dict[str, Any] = {"mark": mark}
                if flower:
                    row["flower_at"] = time.monotonic() - t0
                    row["flower"] = flower_length(flower, "celery")
                row["doorman_at"] = time.monotonic() - t0
                snap = orjson.loads(cli("doorman-collect", "--once", env=env).stdout)
                row["doorman"] = (snap.get("queues") or {}).get("celery", {}).get("pending")
                row["doorman_total"] = snap.get("pending_tasks")
                row["doorman_source"] = (snap.get("queues") or {}).get("celery", {}).get("depth_source")
                reads.append(row)
            if watcher:
                watcher.join(max(0.0, t0 + WATCH - time.monotonic()))
                stop.set()
                watcher.join(15)
                if seen["first"] is None:
                    res["missed"] += 1
                else:
                    res["first"].append(seen["first"])
            res["trials"].append({"before": before, "reads": reads, "first": seen["first"]})
            print(f"  depth trial {n + 1}: before {before}; " + "; ".join(
                f"+{r['mark']:g} s flower {r.get('flower')} doorman {r['doorman']}" for r in reads)
                + f"; Flower first showed {BURST} at {seen['first']}", flush=True)
        res["flower_rss"] = flower.rss_mib() if flower else None
        res["once"] = [run_measured([str(BIN / "doorman-collect"), "--once"], {**os.environ, **env})
                       for _ in range(3)]
    finally:
        conn.close()
        if flower:
            flower.stop()
        drop(v)
    return res


def kills_table(k: dict[str, Any]) -> str:
    flower_col = f"Flower {k['flower_info']}" if k["flower_up"] else "Flower"
    rows = [f"| kill -9 | Doorman alert at the webhook | {flower_col}: `/api/workers?status=1` shows it offline "
            f"(polled every {POLL:g} s) | Flower − Doorman, same trial |", "|---|---|---|---|"]
    for label, (alert, runs) in k["series"].items():
        d = [r["doorman"] for r in runs if r["doorman"] is not None]
        f = [r["flower"] for r in runs if r["flower"] is not None]
        both = [r["flower"] - r["doorman"] for r in runs if r["flower"] is not None and r["doorman"] is not None]
        missed_d = len(runs) - len(d)
        missed_f = len(runs) - len(f)
        dcell = f"`{alert}` {spread(d)}" + (f", {missed_d} of {len(runs)} not within {CAP:g} s" if missed_d else "")
        if k["flower_up"]:
            fcell = spread(f) + (f", {missed_f} of {len(runs)} not within {CAP:g} s" if missed_f else "")
            errors = sum(r["flower_errors"] for r in runs)
            fcell += f" ({errors} failed polls)" if errors else ""
            diff = spread(both)
        else:
            fcell, diff = f"not measured: {k['flower_info']}", "—"
        rows.append(f"| {label} ({len(runs)} trials) | {dcell} | {fcell} | {diff} |")
    return "\n".join(rows)


def _cell(values: list[Any]) -> str:
    return " / ".join("—" if v is None else str(v) for v in values)


def depth_table(d: dict[str, Any]) -> str:
    n = len(d["trials"])
    flower_col = f"Flower {d['flower_info']} `/api/queues/length`" if d["flower_up"] else "Flower"
    rows = [f"{BURST} tasks published to `celery` (nobody consumes it; emptied, and shown empty by Flower, before "
            f"each burst), {n} trials, one value per trial:", "",
            f"| after the burst | {flower_col} | `doorman-collect --once`: `queues.celery.pending` |", "|---|---|---|"]
    if d["flower_up"]:
        rows.append(f"| just before it | {_cell([t['before'] for t in d['trials']])} | |")
    for i, mark in enumerate(MARKS):
        reads = [t["reads"][i] for t in d["trials"]]
        fcell = (_cell([r.get("flower") for r in reads]) if d["flower_up"]
                 else f"not measured: {d['flower_info']}")
        rows.append(f"| +{mark:g} s | {fcell} | {_cell([r['doorman'] for r in reads])} |")
    late = max(r["doorman_at"] - r["mark"] for t in d["trials"] for r in t["reads"])
    sources = sorted({str(r["doorman_source"]) for t in d["trials"] for r in t["reads"]})
    rows += ["", f"Flower is read first at each mark, then `doorman-collect --once` is started (at most "
                 f"{late:.2f} s after the mark; it reads depth during its ~0.5 s run). Doorman's `depth_source`: "
                 f"{', '.join(sources)}."]
    if d["flower_up"]:
        missed = f", {d['missed']} of {n} not within {WATCH:g} s" if d["missed"] else ""
        rows.append(f"Flower, polled every {POLL:g} s from the burst, first showed {BURST}: "
                    f"{spread(d['first'])}{missed}.")
    return "\n".join(rows)


def rss_table(k: dict[str, Any], d: dict[str, Any]) -> str:
    line = k.get("line_rss") or {}
    rows = ["| process | RSS |", "|---|---|"]
    if k["flower_up"]:
        rows.append(f"| Flower, after the {sum(len(r) for _, r in k['series'].values())} kill trials | "
                    f"{k['flower_rss']:.1f} MiB |")
        if d.get("flower_rss") is not None:
            rows.append(f"| Flower, after the {len(d['trials'])} depth trials (no worker ever) | {d['flower_rss']:.1f} MiB |")
    else:
        rows.append(f"| Flower | not measured: {k['flower_info']} |")
    stages = {name: mib for name, mib in line.items() if name != "tee" and mib is not None}
    for name, mib in stages.items():
        rows.append(f"| `{name}` of a `doorman-collect --interval 30 \\| doorman-analyze \\| doorman-notify` line "
                    f"that ran through the same kill trials | {mib:.1f} MiB |")
    if stages:
        rows.append(f"| that line, its three stages together | {sum(stages.values()):.1f} MiB |")
    once = [r[1] for r in d.get("once", [])]
    if once:
        rows.append(f"| `doorman-collect --once`, peak, {len(once)} runs | {spread(once, 'MiB', 1)} |")
    return "\n".join(rows)


def main() -> None:
    trials = int(os.environ.get("BENCH_TRIALS", "5"))
    load = open("/proc/loadavg").read().split()[:3]
    print(f"load average at the start: {' '.join(load)} ({os.cpu_count()} cores)", flush=True)
    k = kills(trials)
    d = depth(trials)
    print("\n" + kills_table(k) + "\n\n" + depth_table(d) + "\n\n" + rss_table(k, d))
    load = open("/proc/loadavg").read().split()[:3]
    print(f"\nload average at the end: {' '.join(load)}", flush=True)


if __name__ == "__main__":
    main()
