"""doorman-collect: one NDJSON snapshot of the broker and workers per check."""

from __future__ import annotations

import signal
import sys
import threading
import time

import click

from doorman.cli.options import CONTEXT, command_body, config_option, load, redis_option
from doorman.ndjson import warn, write_record

PROG = "doorman-collect"


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT finish the snapshot in hand, then stop: never half a line."""

    def handler(signum, frame):  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@click.command(context_settings=CONTEXT)
@config_option
@redis_option
@click.option("--once", is_flag=True, help="Write one snapshot and exit (for cron).")
@click.option("--interval", type=float, metavar="SECONDS",
              help="Seconds between checks as a daemon (default: check_interval, 30).")
@click.option("--count", type=click.IntRange(min=1), metavar="N", help="Stop after N snapshots.")
@click.option("--cluster", metavar="NAME", help="Label for this broker's snapshots.")
@click.option("--human", is_flag=True, help="Print a readable view instead of NDJSON.")
@command_body(PROG)
def main(config_path, redis_url, once, interval, count, cluster, human):
    """Read the Redis broker and the Celery workers; write one JSON snapshot per line to stdout."""
    cfg = load(PROG, config_path, redis_url=redis_url, cluster=cluster,
               check_interval=interval)
    from doorman.collect.snapshot import Collector

    if once:
        count = 1
    stop = threading.Event()
    install_stop_handlers(stop)
    collector = Collector(cfg)
    n = 0
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            snap = collector.snapshot("once" if once else "interval")
            n += 1
            emit(snap, human)
            if snap["error"]:
                warn(PROG, f"check #{n}: {snap['error']}")
            if count and n >= count:
                break
            next_at += cfg.check_interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at = time.monotonic()
            else:
                stop.wait(delay)
    finally:
        collector.close()
    sys.exit(0)


def emit(snap: dict, human: bool) -> None:
    if human:
        from doorman.collect.human import render

        sys.stdout.write(render(snap) + "\n")
        sys.stdout.flush()
    else:
        write_record(snap)
