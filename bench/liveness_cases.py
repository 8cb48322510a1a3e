"""Ghost workers and a queue nobody consumes: Doorman, Flower and celery-exporter side by side, in
the same run as bench_detection's kill -9 (its part f; issue 12 item 6).

Each case runs on a fresh database of bench_detection's redis-server, with its peers watching:

* `ghost (no consumer connection)`: the worker reaches Redis through doorman/simulate/partition.py's
  relay, which leaves its BRPOP connection half-open (Redis drops it, the worker never hears);
* `ghost (hung pool)`: the worker's pool process is SIGSTOPped, its main process heartbeats on;
* `queue nobody consumes`: the worker runs with `-Q celery`; the tasks go to `reports`.

Then 5 tasks are sent (to `celery`, or `reports`; none in the second ghost case) and every tool is
watched for WINDOW = 2 × THRESHOLD seconds from the fault:

* Doorman: the daemon line `collect --interval 1 | analyze | notify`, GHOST_AFTER_SECONDS and
  UNCONSUMED_AFTER_SECONDS = THRESHOLD, MONITORED_QUEUES `celery,busy,reports` (the names the
  exporter gets; unnamed, a new queue is found by its kombu binding within the daemon's 60 s
  discovery interval); the time from the fault to the alert's POST. With tasks waiting, a ghost
  with no consumer connection is reported as case b (both hold). Doorman counts every connection
  whose last command was BRPOP as a consumer, and the peers hold such connections from their own
  inspect replies: with them on the same Redis case a is masked, which the case with nothing sent
  shows (`consumers_listed`).
* Flower: `/api/workers?status=1` and `/api/queues/length`, every 0.5 s.
* celery-exporter (started with `-Q celery,busy,reports`: it learns queue names only from workers'
  `active_queues` or `-Q`): `celery_worker_up`, `celery_queue_length` and
  `celery_active_worker_count`, scrape after scrape (~2 s each).

What each showed is printed; nothing is asserted.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from typing import Any

from bench import peers
from bench.queue_depth import Peers
from doorman.simulate.partition import Partition
from doorman.simulate.procs import children_of
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.receiver import Receiver
from tests.support.redis import RedisServer
from tests.support.workers import Worker, enqueue

THRESHOLD = 5.0
WINDOW = 2 * THRESHOLD
TASKS = 5
CASES = (("ghost-a", f"ghost (no consumer connection), {TASKS} tasks sent", "ghost_worker", "celery", TASKS),
         ("ghost-a-idle", "ghost (no consumer connection), nothing sent", "ghost_worker", "celery", 0),
         ("ghost-b", f"ghost (hung pool), {TASKS} tasks sent", "ghost_worker", "celery", TASKS),
         ("unconsumed", f"queue nobody consumes, {TASKS} tasks sent to it", "queue_unconsumed", "reports", TASKS))


def _watch_flower(p: peers.Peer, name: str, queue: str, stop: threading.Event, seen: dict[str, Any]) -> None:
    while not stop.is_set():
        try:
            seen["status"].add(peers.flower_workers(p).get(name))
            seen["queue"].add(peers.flower_queue_lengths(p).get(queue))
        except Exception as e:  # noqa: BLE001 - a peer's error is a figure too
            seen["errors"].append(str(e)[:200])
        stop.wait(0.5)


def _watch_exporter(p: peers.Peer, host: str, queue: str, stop: threading.Event, seen: dict[str, Any]) -> None:
    while not stop.is_set():
        try:
            m = peers.exporter_metrics(p)
            seen["worker_up"].add(peers.exporter_value(m, "celery_worker_up", "hostname", host))
            seen["queue_length"].add(peers.exporter_value(m, "celery_queue_length", "queue_name", queue))
            seen["active_workers"].add(peers.exporter_value(m, "celery_active_worker_count", "queue_name", queue))
        except Exception as e:  # noqa: BLE001
            seen["errors"].append(str(e)[:200])


def _ready(ps: Peers, client: Any, name: str, host: str) -> None:
    """Until both peers have seen the worker alive (30 s at most)."""
    flower, exporter = ps.running.get("flower"), ps.running.get("exporter")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if ((not flower or peers.flower_workers(flower).get(name) is True)
                    and (not exporter or peers.exporter_value(peers.exporter_metrics(exporter), "celery_worker_up",
                                                              "hostname", host) == 1)):
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(0.3)


def one_case(server: RedisServer, ps: Peers, receiver: Receiver, key: str, alert: str, queue: str,
             tasks: int) -> dict[str, Any]:
    client = server.client()
    client.flushdb()
    host = f"{key}-case"
    name = f"w@{host}"
    relay = Partition("127.0.0.1", server.port) if key.startswith("ghost-a") else None
    worker = Worker(relay.url() if relay else server.url, name, concurrency=1, queues="celery")
    hook = f"/hooks/cases/{key}"
    pipe = DaemonPipeline(server.url, receiver.url(hook), interval=1,
                          workdir=tempfile.mkdtemp(prefix="doorman-bench-cases-"))
    pipe.env.update({"GHOST_AFTER_SECONDS": f"{THRESHOLD:g}", "UNCONSUMED_AFTER_SECONDS": f"{THRESHOLD:g}",
                     "MONITORED_QUEUES": "celery,busy,reports"})  # what the exporter is told with -Q
    stop = threading.Event()
    threads: list[threading.Thread] = []
    out: dict[str, Any] = {"case": key, "worker": name, "queue": queue}
    flower_seen: dict[str, Any] = {"status": set(), "queue": set(), "errors": []}
    exporter_seen: dict[str, Any] = {"worker_up": set(), "queue_length": set(), "active_workers": set(), "errors": []}
    try:
        worker.wait_ready(client)
        pipe.start()
        pipe.wait_heartbeat(name)
        _ready(ps, client, name, host)
        fault_at = time.monotonic()
        if relay:
            deadline = fault_at + 10
            while not relay.cut_consumers() and time.monotonic() < deadline:
                time.sleep(0.05)
        elif key == "ghost-b":
            for pid in children_of(worker.proc.pid):
                os.kill(pid, signal.SIGSTOP)
        if tasks:
            enqueue(server.url, tasks, task="demo.add", args=(2, 3), queue=queue)
        if "flower" in ps.running:
            threads.append(threading.Thread(target=_watch_flower, daemon=True,
                                            args=(ps.running["flower"], name, queue, stop, flower_seen)))
        if "exporter" in ps.running:
            threads.append(threading.Thread(target=_watch_exporter, daemon=True,
                                            args=(ps.running["exporter"], host, queue, stop, exporter_seen)))
        for t in threads:
            t.start()
        out["doorman"] = None
        while time.monotonic() < fault_at + WINDOW:
            hits = [r for r in receiver.at(hook) if r.json.get("alert_type") == alert]
            if hits and out["doorman"] is None:
                out["doorman"] = hits[0].at - fault_at
                out["doorman_alert"] = {k: hits[0].json.get(k) for k in ("alert_type", "severity", "subject")}
                details = hits[0].json.get("details") or {}
                out["doorman_case"] = details.get("case")
                out["doorman_missing_consumers"] = details.get("missing_consumers")
            time.sleep(0.05)
        out["doorman_other_alerts"] = sorted({r.json.get("alert_type") for r in receiver.at(hook)} - {alert})
        out["pending_at_end"] = client.llen(queue)
        last = pipe.snapshots()[-1]
        out["consumers_listed"] = (last.get("connections") or {}).get("consumers")
    finally:
        stop.set()
        for t in threads:
            t.join(40)
        pipe.stop()
        worker.kill9()
        if relay:
            relay.close()
    for peer, seen in (("flower", flower_seen), ("exporter", exporter_seen)):
        if peer in ps.running:  # lists, for the JSON report
            out[peer] = {k: sorted(v, key=str) if isinstance(v, set) else v for k, v in seen.items()}
    return out


def run(server: RedisServer, ps: Peers) -> dict[str, Any]:
    receiver = Receiver()
    try:
        runs = []
        for key, label, alert, queue, tasks in CASES:
            r = one_case(server, ps, receiver, key, alert, queue, tasks)
            runs.append({**r, "label": label, "alert": alert})
            print(f"  case {key}: doorman {r.get('doorman')}, flower {r.get('flower', {}).get('status')}, "
                  f"exporter worker_up {r.get('exporter', {}).get('worker_up')}", flush=True)
    finally:
        receiver.close()
    return {"threshold": THRESHOLD, "window": WINDOW, "tasks": TASKS, "runs": runs}


def _values(values: list[Any]) -> str:
    shown = sorted(("—" if v is None else f"{v:g}" if isinstance(v, float) else str(v)) for v in values)
    return " / ".join(shown) or "—"


def cases_table(c: dict[str, Any], ps: Peers) -> str:
    rows = [f"Every tool watched for {c['window']:g} s (2 × the "
            f"{c['threshold']:g} s threshold given to Doorman) from the fault. A peer's cell lists every value "
            f"it showed in that window.", "",
            f"| case | Doorman | Flower {ps.versions.get('flower', '')} | celery-exporter "
            f"{ps.versions.get('exporter', '')} |", "|---|---|---|---|"]
    for r in c["runs"]:
        if r["doorman"] is None:
            doorman = f"nothing within {c['window']:g} s"
        else:
            a = r["doorman_alert"]
            case = f", case {r['doorman_case']}" if r.get("doorman_case") else ""
            if r.get("doorman_missing_consumers") is not None:
                case += f" (missing consumers: {r['doorman_missing_consumers']})"
            doorman = f"**`{a['alert_type']}` {a['severity']}** `{a['subject']}`{case}, POSTed {r['doorman']:.1f} s after"
        if "flower" in r:
            f = r["flower"]
            flower = (f"worker online: {_values(f['status'])}; `{r['queue']}` in /api/queues/length: "
                      f"{_values(f['queue'])}" + (f"; {len(f['errors'])} errors" if f["errors"] else ""))
        else:
            flower = f"not measured: {ps.missing.get('flower')}"
        if "exporter" in r:
            e = r["exporter"]
            exporter = (f"`celery_worker_up` {_values(e['worker_up'])}; `celery_queue_length` "
                        f"{_values(e['queue_length'])}; `celery_active_worker_count` {_values(e['active_workers'])}"
                        + (f"; {len(e['errors'])} errors" if e["errors"] else ""))
        else:
            exporter = f"not measured: {ps.missing.get('exporter')}"
        if r["case"].startswith("ghost-a"):
            doorman += f"; consumer connections Redis listed at the end: {r.get('consumers_listed')} (the ghost's: 0)"
        rows.append(f"| {r['label']} | {doorman} | {flower} | {exporter} |")
    masked = [r for r in c["runs"] if r["case"].startswith("ghost-a") and r.get("consumers_listed")]
    if masked:
        rows += ["", "Doorman counts every connection whose last command was BRPOP as a consumer. The consumer "
                     "connections listed beside the ghost are the peers' own (their inspect replies are BRPOPs): they "
                     "hide the missing one, so with the peers on the same Redis case a is masked and a ghost is "
                     "caught as case b only, once tasks wait."]
    rows += ["", "Neither peer alerts anyone. A worker status that stays online, or a worker_up that stays 1, "
                 "is the peer not noticing; a queue length beside an active-worker count of 0 is only what a "
                 "rule the user writes could read (and only for a queue named in `-Q`)."]
    return "\n".join(rows)
