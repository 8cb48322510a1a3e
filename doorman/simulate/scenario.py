"""What to stage: options in, a plan out (tasks to publish, settings for the stages). Pure data.

The demo's thresholds are small so that a handful of tasks shows every alert within seconds;
each one is set through the stage's environment only when the user has not set it (in the
environment or in the `--config` file), so a user's own config always wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from doorman.simulate.enqueue import Task

ZOMBIE_SECONDS = 3600.0
DEMO_MAX_QUEUE_SIZE = 10
DEMO_MAX_TASK_RUNTIME = 1.0
DEMO_MAX_WAIT_TIME = 1.0

# environment variable -> (config section, key), to see whether the user's file sets it
ENV_KEYS = {
    "MAX_QUEUE_SIZE": ("thresholds", "max_queue_size"),
    "MAX_TASK_RUNTIME": ("thresholds", "max_task_runtime_seconds"),
    "MAX_WAIT_TIME": ("thresholds", "max_wait_time_seconds"),
    "CRITICAL_QUEUES": ("thresholds", "critical_queues"),
    "MONITORED_QUEUES": (None, "monitored_queues"),
    "DOORMAN_CLUSTER": (None, "cluster"),
}


@dataclass(frozen=True)
class Options:
    workers: int = 1
    enqueue: int = 0
    task_seconds: float = 2.0
    zombie: bool = False
    kill_after: float | None = None
    critical_queue: str | None = None
    stop_redis_after: float | None = None
    port: int = 6399
    broker: str = "redis"  # or "rabbitmq": a throw-away vhost (doorman/simulate/rabbit.py)
    interval: float = 1.0
    checks: int = 3
    forever: bool = False
    json: bool = False
    config_path: str | None = None
    command: tuple[str, ...] = ()
    serve: str | None = None  # --serve HOST:PORT: doorman-serve shows the run (doorman/simulate/serve.py)


@dataclass(frozen=True)
class Plan:
    tasks: list[Task]
    settings: dict[str, str] = field(default_factory=dict)


def problems(opts: Options) -> list[str]:
    """Option combinations that cannot stage what they ask for."""
    out = []
    if opts.zombie and opts.workers < 1:
        out.append("--zombie needs a worker to run the hung task: use --workers 1 or more")
    if opts.kill_after is not None and opts.workers < 1:
        out.append("--kill-after needs a worker to kill: use --workers 1 or more")
    if opts.interval <= 0:
        out.append("--interval must be more than 0 seconds")
    return out


def tasks(opts: Options) -> list[Task]:
    """The hung task first (so a worker picks it up at once), then the M ordinary ones."""
    out = []
    if opts.zombie:
        out.append(Task("demo.sleep", (ZOMBIE_SECONDS,)))
    queue = opts.critical_queue or "celery"
    count = max(opts.enqueue, 1) if opts.critical_queue else opts.enqueue
    task = Task("demo.sleep", (opts.task_seconds,), queue) if opts.task_seconds > 0 else Task("demo.add", (2, 3), queue)
    out += [task] * count
    return out


def demo_settings(opts: Options) -> dict[str, str]:
    s = {"MAX_QUEUE_SIZE": str(DEMO_MAX_QUEUE_SIZE), "DOORMAN_CLUSTER": "simulation"}
    if opts.zombie:
        s["MAX_TASK_RUNTIME"] = str(DEMO_MAX_TASK_RUNTIME)
    if opts.critical_queue:
        s["CRITICAL_QUEUES"] = opts.critical_queue
        s["MAX_WAIT_TIME"] = str(DEMO_MAX_WAIT_TIME)
        s["MONITORED_QUEUES"] = f"celery,{opts.critical_queue}"
    return s


def user_has(var: str, env: Mapping[str, str], file_data: Mapping[str, Any]) -> bool:
    if env.get(var):
        return True
    section, key = ENV_KEYS[var]
    scope = file_data.get(section) if section else file_data
    return isinstance(scope, Mapping) and key in scope


def plan(opts: Options, env: Mapping[str, str], file_data: Mapping[str, Any]) -> Plan:
    settings = {k: v for k, v in demo_settings(opts).items() if not user_has(k, env, file_data)}
    return Plan(tasks(opts), settings)
