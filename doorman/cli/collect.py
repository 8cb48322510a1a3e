"""doorman-collect: one NDJSON snapshot of the broker and workers per check."""

from __future__ import annotations

import sys
import threading
import time

import click

from doorman.cli.options import CONTEXT, command_body, config_option, load, redis_option
from doorman.ndjson import warn, write_record

PROG = "doorman-collect"
MIN_GAP = 0.25  # seconds between event-triggered snapshots


def install_stop_handlers(stop: threading.Event, wake: threading.Event) -> None:
    """SIGTERM/SIGINT finish the snapshot in hand, then stop: never half a line."""
    from doorman.signals import on_stop_signal

    def stop_now(signum: int) -> None:  # noqa: ARG001
        stop.set()
        wake.set()

    on_stop_signal(stop_now)


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
    if once and (interval is not None or count is not None):
        raise click.UsageError("--once takes no --interval or --count (it is one check)")
    cfg = load(PROG, config_path, redis_url=redis_url, cluster=cluster,
               check_interval=interval)
    from doorman.collect.snapshot import Collector

    wake = threading.Event()
    stopping = threading.Event()
    install_stop_handlers(stopping, wake)
    collector = Collector(cfg)
    tracker = None
    if not once:
        from doorman.collect.heartbeats import HeartbeatTracker

        tracker = HeartbeatTracker(collector.client, collector.keys, wake).start()
        collector.heartbeats = tracker
    try:
        run(collector, tracker, wake, stopping, cfg.check_interval, 1 if once else count, human,
            "once" if once else "interval")
    finally:
        if tracker:
            tracker.stop()
        collector.close()
    sys.exit(0)


def run(collector, tracker, wake: threading.Event, stopping: threading.Event, interval: float,
        count: int | None, human: bool, trigger: str) -> None:
    """Check every `interval` seconds, and at once when the heartbeat tracker sees a change."""
    n = 0
    next_at = last = time.monotonic()
    while not stopping.is_set():
        if trigger == "heartbeat":  # a burst of worker changes costs one snapshot, not one each
            stopping.wait(max(0.0, last + MIN_GAP - time.monotonic()))
        last = time.monotonic()
        snap = collector.snapshot(trigger)
        n += 1
        emit(snap, human)
        if snap["error"]:
            warn(PROG, f"check #{n}: {snap['error']}")
        if count and n >= count:
            return
        if trigger != "heartbeat":  # an extra, event-driven snapshot does not move the schedule
            next_at = max(next_at + interval, time.monotonic())
        trigger = "interval"
        while not stopping.is_set():
            wake_at = next_at
            expiry = tracker.next_expiry() if tracker else None
            if expiry is not None:
                wake_at = min(wake_at, time.monotonic() + max(0.0, expiry - time.time()) + 0.01)
            delay = wake_at - time.monotonic()
            if delay > 0 and wake.wait(delay):
                wake.clear()
                if not stopping.is_set():
                    trigger = "heartbeat"
                    break
            if tracker and tracker.pop_overdue(time.time()):
                trigger = "heartbeat"
                break
            if time.monotonic() >= next_at:
                break


def emit(snap: dict, human: bool) -> None:
    if human:
        from doorman.collect.human import render

        sys.stdout.write(render(snap) + "\n")
        sys.stdout.flush()
    else:
        write_record(snap)


if __name__ == "__main__":
    main(prog_name="doorman-collect")
