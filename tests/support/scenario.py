"""Snapshots and configs for the rule and engine scenarios: a cluster described in a few words.

No processes, no clock: time is the snapshot's `ts`, counted in seconds from `T0`.
"""

from __future__ import annotations

import copy

import orjson

from doorman.analyze.engine import Engine, snapshot_problem
from doorman.config.load import make_config
from doorman.config.settings import Config
from doorman.timefmt import iso, parse_iso

T0 = 1_800_000_000.0


def cfg(cooldown: float = 300.0, **th) -> Config:
    th = {k: list(v) if isinstance(v, tuple) else v for k, v in th.items()}
    return make_config(alert_cooldown_seconds=cooldown, thresholds=th)


def queue(pending: int, heads: list[dict] | None = None) -> dict:
    return {"pending": pending, "by_priority": {"0": pending}, "heads": heads or [],
            "oldest": (heads or [None])[0], "source": "config"}


def head(task_id: str | None, age: float | None = None, name: str = "demo.sleep", priority: int = 0) -> dict:
    return {"task_id": task_id, "task_name": name, "priority": priority,
            "published_at": None, "age_seconds": age}


def worker(name: str, alive: bool = True) -> dict:
    return {"name": name, "alive": alive, "responded": alive, "active": 0, "last_heartbeat": None,
            "heartbeat_freq": None}


def task(task_id: str, runtime: float, worker: str = "w1@test", name: str = "demo.sleep") -> dict:
    return {"task_id": task_id, "task_name": name, "worker": worker, "started_at": None,
            "runtime_seconds": runtime, "queue": "celery", "pid": 1}


def snap(t: float = 0.0, queues: dict | None = None, workers: list | None = None, active: list | None = None,
         connected: bool = True, cluster: str = "prod") -> dict:
    queues = {"celery": queue(0)} if queues is None else queues
    workers = [worker("w1@test")] if workers is None else workers
    if not connected:
        return {"v": 1, "kind": "snapshot", "ts": iso(T0 + t), "cluster": cluster, "broker": "redis://h:6379/0",
                "seq": 1, "trigger": "once", "redis_connected": False, "error": "ConnectionError: refused",
                "pending_tasks": None, "queues": {}, "alive_workers": None, "workers": [], "active_tasks": None,
                "active": [], "unacked": None, "workers_subscribed": None, "collect_ms": 1.0}
    return {"v": 1, "kind": "snapshot", "ts": iso(T0 + t), "cluster": cluster, "broker": "redis://h:6379/0",
            "seq": 1, "trigger": "once", "redis_connected": True, "error": None,
            "pending_tasks": sum(q["pending"] for q in queues.values()), "queues": queues,
            "alive_workers": sum(1 for w in workers if w["alive"]), "workers": workers,
            "active_tasks": len(active or []), "active": active or [], "unacked": None,
            "workers_subscribed": len(workers), "collect_ms": 1.0}


def run_rule(rule, snapshots: list[dict], config: Config, state: dict | None = None) -> list[dict]:
    """Observe every snapshot in turn (as the engine does) and evaluate the last."""
    rule = rule.RULE  # the rule's module
    if state is None:
        state = {}
    if not state:
        state.update(rule.initial_state())
    out: list = []
    for s in snapshots:
        assert snapshot_problem(s) is None
        now = parse_iso(s["ts"])
        rule.observe(s, state, config, now)
        out = rule.evaluate(s, state, config, now)
        assert rule.state_problem(state) is None
    return out


def brief(conds: list[dict]) -> list[tuple]:
    return [(c["alert_type"], c["severity"], c["status"], c["subject"]) for c in conds]


def feed(engine: Engine, snapshots: list[dict]) -> list[dict]:
    out = []
    for s in snapshots:
        out += engine.process(copy.deepcopy(s))
    return out


def snapshot_line(ts: str, pending: int = 5, alive: int = 0) -> bytes:
    """One snapshot as doorman-collect writes it (a line of NDJSON): `pending` tasks in `celery`."""
    return orjson.dumps({
        "v": 1, "kind": "snapshot", "ts": ts, "cluster": "c1", "broker": "redis://h/0", "seq": 1,
        "trigger": "once", "redis_connected": True, "error": None, "pending_tasks": pending,
        "queues": {"celery": {"pending": pending, "by_priority": {"0": pending}, "oldest": None, "heads": [],
                              "source": "config"}},
        "alive_workers": alive, "workers": [], "active_tasks": 0, "active": [], "unacked": None,
        "workers_subscribed": 0, "collect_ms": 1.0,
    }) + b"\n"
