"""Queue depth with priorities as Doorman, Flower and celery-exporter report it (bench_detection's
part e), and the peers it compares against, running for the whole benchmark."""

from __future__ import annotations

from typing import Any

import orjson

from bench import peers
from doorman.brokers.redis.keys import SEP
from tests.support.process import cli
from tests.support.redis import RedisServer
from tests.support.workers import enqueue

PRIORITIES = (0, 3, 6, 9)
PER_PRIORITY = 10


class Peers:
    """Flower and the exporter for the whole run, or why one is missing. The exporter is told the
    queues the benchmarks use (`-Q`): it learns queue names only from workers or from `-Q`."""

    def __init__(self, url: str):
        self.running: dict[str, peers.Peer] = {}
        self.missing: dict[str, str] = {}
        self.versions: dict[str, str] = {}
        for name, start in (("flower", lambda: peers.start_flower(url)),
                            ("exporter", lambda: peers.start_exporter(url, ["celery", "busy", "reports"]))):
            ok, info = peers.installed(name)
            if not ok:
                self.missing[name] = info
                continue
            self.versions[name] = info
            try:
                self.running[name] = start()
            except RuntimeError as e:
                self.missing[name] = f"did not start: {e}"

    def stop(self) -> None:
        for p in self.running.values():
            p.stop()


def queue_depth(server: RedisServer, ps: Peers) -> dict[str, Any]:
    """40 tasks in `celery`, 10 at each kombu priority step; no worker has ever run (Flower then
    falls back to the default queue; the exporter was given `-Q celery`)."""
    client = server.client()
    client.flushdb()
    for p in PRIORITIES:
        enqueue(server.url, PER_PRIORITY, task="demo.add", args=(2, 3), queue="celery", priority=p)
    lists = {key.decode(): client.llen(key) for key in client.scan_iter(match="celery*", _type="list")}
    truth = sum(lists.values())
    out: dict[str, Any] = {"truth": truth, "lists": {k.replace(SEP, SEP.encode("unicode_escape").decode()): v
                                                      for k, v in sorted(lists.items())}}
    snap = orjson.loads(cli("doorman-collect", "--once", env={"REDIS_URL": server.url}).stdout)
    out["doorman"] = {"reported": snap["queues"]["celery"]["pending"], "by_priority": snap["queues"]["celery"]["by_priority"],
                      "how": "`queues.celery.pending` of `doorman-collect --once`"}
    if "flower" in ps.running:
        out["flower"] = {"reported": peers.flower_queue_lengths(ps.running["flower"]).get("celery"),
                         "how": "`/api/queues/length`"}
    else:
        out["flower"] = {"reported": None, "how": ps.missing["flower"]}
    if "exporter" in ps.running:
        metrics = peers.exporter_metrics(ps.running["exporter"])
        value = peers.exporter_value(metrics, "celery_queue_length", "queue_name", "celery")
        out["exporter"] = {"reported": None if value is None else int(value),
                           "how": '`celery_queue_length{queue_name="celery"}` (`-Q celery`)'}
    else:
        out["exporter"] = {"reported": None, "how": ps.missing["exporter"]}
    client.flushdb()
    return out


def depth_table(q: dict[str, Any], ps: Peers) -> str:
    rows = [f"Queue `celery` holds {q['truth']} tasks: {PER_PRIORITY} at each priority {PRIORITIES} "
            f"(lists: {', '.join(f'`{k}` {v}' for k, v in q['lists'].items())}).", "",
            "| tool | reads | reports | correct? |", "|---|---|---|---|"]
    for key, label in (("doorman", "Doorman"), ("flower", f"Flower {ps.versions.get('flower', '')}"),
                       ("exporter", f"celery-exporter {ps.versions.get('exporter', '')}")):
        r = q[key]
        got = r["reported"]
        verdict = "—" if got is None else ("yes" if got == q["truth"] else f"no (off by {q['truth'] - got})")
        rows.append(f"| {label} | {r['how']} | {'—' if got is None else got} | {verdict} |")
    return "\n".join(rows)
