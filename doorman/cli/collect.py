"""doorman-collect: one NDJSON snapshot of the broker and workers per check."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from doorman.cli.options import (
    CONTEXT,
    command_body,
    config_option,
    load,
    redis_option,
    setting_help,
    version_option,
)
from doorman.ndjson import warn, write_record

PROG = "doorman-collect"


def install_stop_handlers(stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT finish the snapshot in hand, then stop: never half a line. An HTTP call in
    flight (the management API) is cut at once, so a peer that drips its answer cannot hold the
    stop: the snapshot finishes over AMQP. Installed before any other thread starts (they inherit
    the blocked signals)."""
    from doorman import httpcall
    from doorman.process import on_stop_signal

    def stop_now(signum: int) -> None:  # noqa: ARG001
        stop()
        httpcall.abort_all()

    on_stop_signal(stop_now)


@click.command(context_settings=CONTEXT)
@version_option(PROG)
@config_option
@redis_option
@click.option("--once", is_flag=True, help="Write one snapshot and exit (for cron).")
@click.option("--interval", type=float, metavar="SECONDS", help=setting_help("check_interval"))
@click.option("--count", type=click.IntRange(min=1), metavar="N", help="Stop after N snapshots.")
@click.option("--cluster", metavar="NAME", help=setting_help("cluster"))
@click.option("--human", is_flag=True, help="Print a readable view instead of NDJSON.")
@command_body(PROG)
def main(config_path: str | None, redis_url: str | None, once: bool, interval: float | None, count: int | None,
         cluster: str | None, human: bool) -> None:
    """Read the Redis broker and the Celery workers; write one JSON snapshot per line to stdout.
    With `clusters:` in the config, every listed broker at once (docs/fleet.md)."""
    if once and (interval is not None or count is not None):
        raise click.UsageError("--once takes no --interval or --count (it is one check)")
    cfg = load(PROG, config_path, broker_url=redis_url, cluster=cluster,
               check_interval=interval)
    memories: dict[str, Any] = {}
    if human:  # one memory per cluster for the run: workers' last-seen times, hints said once
        from doorman.collect.human import Memory

        memories = {c.cluster: Memory(forget_after=c.thresholds.worker_forget_seconds)
                    for c in cfg.clusters or (cfg,)}
    label = bool(cfg.clusters)
    write = lambda snap, n: emit(snap, n, memories.get(snap["cluster"]), label)  # noqa: E731
    if cfg.clusters:
        from doorman.collect.fleet import Fleet

        fleet = Fleet(cfg.clusters, write, lambda msg: warn(PROG, msg), once=once, count=count)
        install_stop_handlers(fleet.stop)
        failed = fleet.run()
        sys.exit(1 if failed and (once or count) else 0)
    from doorman.collect.run import run as collect

    wake = threading.Event()
    stopping = threading.Event()

    def stop() -> None:
        stopping.set()
        wake.set()

    install_stop_handlers(stop)
    collect(cfg, write, once=once, count=count, stopping=stopping, wake=wake)
    sys.exit(0)


def emit(snap: dict[str, Any], n: int, memory: Any, label: bool = False) -> None:
    """`memory`: the `--human` view's (None: NDJSON); `label`: name the cluster in warnings."""
    if memory is not None:
        from doorman.collect.human import render

        sys.stdout.write(render(snap, memory=memory) + "\n")
        sys.stdout.flush()
    else:
        write_record(snap)
    if snap["error"]:
        warn(PROG, f"{'cluster ' + str(snap['cluster']) + ' ' if label else ''}check #{n}: {snap['error']}")


if __name__ == "__main__":
    main(prog_name="doorman-collect")
