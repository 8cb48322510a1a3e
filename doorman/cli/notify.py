"""doorman-notify: deliver alerts from stdin to Slack, PagerDuty and a generic webhook."""

from __future__ import annotations

import os
import sys
import threading

import click

from doorman.cli.options import CONTEXT, command_body, config_option, load
from doorman.ndjson import warn, write_record

PROG = "doorman-notify"
NO_DESTINATION = ("no destination configured (set SLACK_WEBHOOK_URL, PAGERDUTY_ROUTING_KEY or "
                  "GENERIC_WEBHOOK_URL, or the matching keys in the config file)")


class Output:
    """stdout for records; when the reader goes away (`| head`) stop quietly, spooling what is left."""

    def __init__(self, stop: threading.Event):
        self.stop, self.closed = stop, False

    def __call__(self, record: dict) -> None:
        if self.closed:
            return
        try:
            write_record(record)
        except BrokenPipeError:
            self.closed = True
            self.stop.set()
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except OSError:
                pass


@click.command(context_settings=CONTEXT)
@config_option
@click.option("--spool", "spool_path", metavar="FILE",
              help="Undelivered alerts, retried on the next run (default: "
                   "$XDG_STATE_HOME/celery-doorman/spool.ndjson).")
@click.option("--dry-run", is_flag=True,
              help="Print the exact payload each destination would get; send nothing, touch no spool.")
@command_body(PROG)
def main(config_path, spool_path, dry_run):
    """Read alerts (NDJSON) on stdin as they arrive; deliver each to the configured destinations and
    write one delivery record per alert and destination to stdout. Exit 0 if everything was
    delivered, 1 if anything was spooled, failed or rejected, 2 on bad configuration."""
    cfg = load(PROG, config_path, spool_path=spool_path)
    import requests

    from doorman.delivery import Dispatcher, RetryPolicy, run, stream_alerts
    from doorman.redact import Scrubber
    from doorman.sinks import build_sinks
    from doorman.spool import Spool, default_path

    scrub = Scrubber(cfg.secrets())

    def say(message: str) -> None:
        warn(PROG, scrub(message))

    stop = threading.Event()
    session = requests.Session()
    sinks = build_sinks(cfg, session, scrub)
    placeholders: list[str] = []
    if not sinks:
        if dry_run:
            sinks = build_sinks(cfg, session, scrub, placeholders=True)
            placeholders = [s.name for s in sinks]
            say(f"{NO_DESTINATION}: showing what each destination would get, with placeholder addresses")
        else:
            say(f"{NO_DESTINATION}: alerts are checked but delivered nowhere")
    spool = None if dry_run else Spool(cfg.spool_path or default_path(), on_error=say)
    if spool is not None:
        names = {s.name for s in sinks}
        for dest, n in sorted(spool.counts().items()):
            if dest not in names:
                say(f"the spool {spool.path} holds {n} alert(s) for {dest}, which is not configured; kept")

    bad = [0]
    received = [0]

    def report(message: str) -> None:
        bad[0] += 1
        say(message)

    def alerts():
        # Our own reader of fd 0: the reading thread may still be blocked in it when we exit.
        stdin = open(sys.stdin.fileno(), "rb", closefd=False)  # noqa: SIM115
        for a in stream_alerts(stdin, report):
            received[0] += 1
            yield a

    dispatcher = Dispatcher(sinks, Output(stop), say, spool, RetryPolicy.from_config(cfg), stop,
                            dry_run=dry_run, placeholders=placeholders,
                            spool_retry_seconds=cfg.spool_retry_seconds)
    woken: list = []

    def on_signal(signum: int) -> None:  # noqa: ARG001 - finish the delivery in hand, spool the rest, exit
        stop.set()
        for intake in woken:
            intake.wake()

    from doorman.signals import on_stop_signal

    on_stop_signal(on_signal)
    run(alerts(), dispatcher, stop, on_intake=woken.append)

    left = sum(spool.counts().values()) if spool is not None else 0
    if left:
        say(f"{left} alert(s) still waiting in {spool.path}; they are retried on the next run")
    failed = dispatcher.undelivered or bad[0] or left or (not sinks and received[0])
    exit_now(1 if failed else 0)


def exit_now(code: int) -> None:
    """Exit without waiting for the reading thread, which may sit in a read of stdin forever
    (a daemon pipe never closes); a normal interpreter exit would abort on its buffer lock."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    main(prog_name="doorman-notify")
