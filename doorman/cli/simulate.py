"""doorman-simulate: a throw-away redis-server and real Celery workers, watched by the real pipeline."""

from __future__ import annotations

import os
import sys

import click
from click.core import ParameterSource

from doorman.cli.options import CONTEXT, command_body, config_option, load, version_option
from doorman.simulate.scenario import Options, problems

PROG = "doorman-simulate"
LOST_TASKS = ("redelivery", "stranded", "eviction", "oom", "beat-killed", "results")  # doorman.simulate.lost_tasks
LIVENESS = ("unconsumed", "cancelled-consumer", "ghost", "ghost-no-consumer", "kill9")  # doorman.simulate.liveness
TASKS = ("failing-task", "events-off")  # doorman.simulate.task_outcomes


@click.command(context_settings={**CONTEXT, "allow_interspersed_args": False})
@version_option(PROG)
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True, metavar="N",
              help="Real Celery workers (demo app, concurrency 1 each).")
@click.option("--enqueue", type=click.IntRange(min=0), default=0, show_default=True, metavar="M",
              help="Tasks to enqueue before watching.")
@click.option("--task-seconds", type=click.FloatRange(min=0), default=2.0, show_default=True, metavar="S",
              help="Enqueued tasks are demo.sleep(S); 0 = demo.add(2, 3).")
@click.option("--zombie", is_flag=True, help="Also enqueue a task that hangs (max_task_runtime 1 s).")
@click.option("--kill-after", type=click.FloatRange(min=0), metavar="S",
              help="kill -9 one worker S seconds after the first check.")
@click.option("--critical-queue", metavar="NAME",
              help="Enqueue into queue NAME (no worker consumes it), marked critical, max wait 1 s.")
@click.option("--stop-redis-after", type=click.FloatRange(min=0), metavar="S",
              help="Stop the broker S seconds after the first check.")
@click.option("--port", type=click.IntRange(1, 65535), default=6399, show_default=True, metavar="PORT", help="Port of the simulated redis-server.")
@click.option("--broker", type=click.Choice(["redis", "rabbitmq"]), default="redis", show_default=True,
              help="rabbitmq: a throw-away vhost on the RabbitMQ at 127.0.0.1:--port (default 5672), or a "
                   "private rabbitmq-server started there when none answers.")
@click.option("--interval", type=float, default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between checks.")
@click.option("--checks", type=click.IntRange(min=1), default=3, show_default=True, metavar="N",
              help="Checks before stopping.")
@click.option("--forever", is_flag=True, help="Keep checking until Ctrl-C.")
@click.option("--json", "json_out", is_flag=True,
              help="stdout gets only the alerts (NDJSON); the human view goes to stderr.")
@click.option("--serve", "serve_listen", is_flag=False, flag_value="127.0.0.1:9808", default=None,
              metavar="[HOST:PORT]", help="Also show the run live in doorman-serve's dashboard "
                                          "(default 127.0.0.1:9808; with --forever to keep it up).")
@click.option("--scenario", type=click.Choice(["autoscale", *LOST_TASKS, *LIVENESS, *TASKS]), metavar="NAME",
              help="autoscale: a burst (--enqueue, default 300; --task-seconds, default 1) drained by one "
                   "worker, then by workers doorman-scale --exec starts and stops; prints both drain times. "
                   "Tasks lost in silence, each until its alert comes (exit 1 if it does not): redelivery, "
                   "stranded, eviction, oom, beat-killed, results. What heartbeats never show: unconsumed, "
                   "cancelled-consumer, ghost, ghost-no-consumer, kill9. Task outcomes (workers with -E): "
                   "failing-task, events-off.")
@config_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND...]")
@command_body(PROG)
def main(workers, enqueue, task_seconds, zombie, kill_after, critical_queue, stop_redis_after, port, broker,
         interval, checks, forever, json_out, scenario, config_path, command,
         serve_listen=None):
    """Start redis-server, N Celery workers and M tasks; watch them with
    doorman-collect | doorman-analyze | doorman-notify --dry-run, or run COMMAND against them.
    Everything started is stopped on exit."""
    if broker == "rabbitmq" and click.get_current_context().get_parameter_source("port") == ParameterSource.DEFAULT:
        port = 5672
    if scenario == "autoscale":
        from doorman.simulate.autoscale import scenario as autoscale

        given = click.get_current_context().get_parameter_source("task_seconds") != ParameterSource.DEFAULT
        sys.exit(autoscale(enqueue or None, task_seconds if given else None, port, interval, broker))
    if scenario in LIVENESS:
        from doorman.simulate.liveness import scenario as liveness

        sys.exit(liveness(scenario, port, interval, alerts=sys.stdout, talk=sys.stderr, broker=broker))
    if scenario in TASKS:
        from doorman.simulate.task_outcomes import scenario as outcomes

        sys.exit(outcomes(scenario, port, interval, alerts=sys.stdout, talk=sys.stderr, broker=broker))
    if scenario in LOST_TASKS:
        from doorman.simulate.lost_tasks import scenario as lost

        sys.exit(lost(scenario, port, interval, alerts=sys.stdout, talk=sys.stderr, broker=broker))
    opts = Options(workers=workers, enqueue=enqueue, task_seconds=task_seconds, zombie=zombie,
                   kill_after=kill_after, critical_queue=critical_queue, stop_redis_after=stop_redis_after,
                   port=port, broker=broker, interval=interval, checks=checks, forever=forever, json=json_out,
                   config_path=config_path, command=tuple(command), serve=serve_listen)
    for problem in problems(opts):
        raise click.UsageError(problem)
    load(PROG, config_path)  # the stages read the same file and environment: refuse them up front
    from doorman.simulate.run import simulate

    human = sys.stderr if json_out else sys.stdout
    sys.exit(simulate(opts, dict(os.environ), alerts=sys.stdout, human=human, talk=sys.stderr))


if __name__ == "__main__":
    main(prog_name="doorman-simulate")
