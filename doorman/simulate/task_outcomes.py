"""`doorman-simulate --scenario NAME`: task outcomes from task events, staged with real workers and
watched by the real `doorman-collect | doorman-analyze` until its alert comes.

- `failing-task`: two workers started with `-E`; `doorman.demoapp.flaky` fails 3 runs in 10
  (deterministic: by its argument) beside `doorman.demoapp.healthy`, which never fails. With a 60 s
  window the failure rate passes 5 % and the 5-failure minimum within seconds: exactly one
  `task_failure_rate` (subject `task:doorman.demoapp.flaky`) and no other alert.
- `events-off`: one worker started *without* `-E` runs tasks: `task_events_off`, whose message says
  how to turn events on.

Each runs on its own redis-server (`--port`), and everything is stopped on exit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

from doorman.simulate import lost_tasks
from doorman.simulate.enqueue import Task, publish
from doorman.simulate.lost_tasks import Stage, Watch, wait

SCENARIOS = ("failing-task", "events-off")
FLAKY, HEALTHY = "doorman.demoapp.flaky", "doorman.demoapp.healthy"
RUNS = 60  # of each task: 18 failures of flaky, well past the minimum count
CONFIG = "thresholds:\n  task_failure_window_seconds: 60\n"
SETTLE = 4  # intervals to watch on after the alert came: any other alert would show by then


def _others(s: Stage, watch: Watch, expected: Callable[[dict], bool]) -> list[dict]:
    """The alerts other than the expected one, after SETTLE more intervals."""
    time.sleep(SETTLE * s.interval)
    with watch.lock:
        return [a for a in watch.alerts if not expected(a)]


def _start(s: Stage, config: str) -> Watch:
    """The pipeline, given time for its first snapshot: the baseline the counts rise from."""
    watch = s.pipeline(config)
    time.sleep(3 * s.interval)
    return watch


def _failing_task(s: Stage) -> bool:
    s.workers(2)
    watch = _start(s, CONFIG)
    tasks = [t for i in range(RUNS) for t in (Task(FLAKY, (i,)), Task(HEALTHY, (i,)))]
    publish(s.url, tasks)
    s.say(f"{len(tasks)} tasks sent: {RUNS} of {FLAKY} (fails 3 runs in 10) and {RUNS} of {HEALTHY}")
    fired = wait(lambda: watch.first("task_failure_rate"))
    if not fired:
        return False
    d = fired["details"]
    s.say(f"task_failure_rate {fired['severity']} for {fired['subject']}: {d.get('failed')} failed of "
          f"{(d.get('failed') or 0) + (d.get('succeeded') or 0)}, exceptions {d.get('exceptions')}")
    others = _others(s, watch, lambda a: a is fired)
    for a in others:
        s.say(f"another alert (unexpected): {a['alert_type']} {a['status']} {a['subject']}")
    return fired["subject"] == f"task:{FLAKY}" and not others


def _events_off(s: Stage) -> bool:
    s.workers(1, events=False)
    watch = _start(s, "")
    publish(s.url, [Task(HEALTHY, (i,)) for i in range(10)])
    s.say("10 tasks sent to a worker started without -E: it runs them and sends no task event")
    # "off" is judged from the rise of the worker's `processed` between two heartbeats Doorman heard:
    # on a loaded machine the reader can subscribe after those 10 ran, so one more task each interval
    more = [10]

    def fired_or_one_more() -> dict | None:
        found = watch.first("task_events_off")
        if not found and time.monotonic() >= next_at[0]:
            publish(s.url, [Task(HEALTHY, (more[0],))])
            more[0] += 1
            next_at[0] = time.monotonic() + s.interval
        return found

    next_at = [time.monotonic() + s.interval]
    fired = wait(fired_or_one_more)
    if not fired:
        return False
    s.say(f"task_events_off: {fired['message']}")
    others = _others(s, watch, lambda a: a is fired)
    for a in others:
        s.say(f"another alert (unexpected): {a['alert_type']} {a['status']} {a['subject']}")
    return not others


RUN: dict[str, Callable[[Stage], bool]] = {"failing-task": _failing_task, "events-off": _events_off}


def scenario(name: str, port: int, interval: float, alerts: IO[str], talk: IO[str], broker: str = "redis") -> int:
    """Stage `name`; 0 when its alert (and no other) came, 1 when not."""
    return lost_tasks.scenario(name, port, interval, alerts, talk, RUN, broker)
