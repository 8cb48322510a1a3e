"""Publish real Celery messages to the simulated broker, the way an application would."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    args: tuple
    queue: str = "celery"


def publish(url: str, tasks: Iterable[Task]) -> int:
    """Send every task (with Doorman's publish-time stamp, as the demo app does); return how many."""
    from celery import Celery

    from doorman.hook import install

    tasks = list(tasks)
    if not tasks:
        return 0
    app = Celery("doorman_simulate", broker=url, set_as_current=False)
    install(app)
    try:
        with app.connection_for_write() as conn:
            for t in tasks:
                app.send_task(t.name, args=t.args, queue=t.queue, connection=conn)
    finally:
        app.close()
    return len(tasks)
