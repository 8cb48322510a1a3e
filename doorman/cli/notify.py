"""doorman-notify: deliver alerts from stdin to Slack, PagerDuty, a generic webhook and plugin sinks."""

from __future__ import annotations

import os
import sys

import click

from doorman.cli.options import CONTEXT, command_body, config_option, load, version_option
from doorman.ndjson import warn

PROG = "doorman-notify"


@click.command(context_settings=CONTEXT)
@version_option(PROG)
@config_option
@click.option("--spool", "spool_path", metavar="FILE",
              help="Undelivered alerts, retried on the next run (default: "
                   "$XDG_STATE_HOME/celery-doorman/spool.ndjson).")
@click.option("--dry-run", is_flag=True,
              help="Print the exact payload each destination would get; send nothing, touch no spool.")
@command_body(PROG)
def main(config_path: str | None, spool_path: str | None, dry_run: bool) -> None:
    """Read alerts (NDJSON) on stdin as they arrive; deliver each to the configured destinations and
    write one delivery record per alert and destination to stdout. Exit 0 if everything was
    delivered, 1 if anything was spooled, failed or rejected, 2 on bad configuration."""
    cfg = load(PROG, config_path, spool_path=spool_path)
    from doorman.notify import Shutdown, run_notify
    from doorman.process import on_stop_signal

    shutdown = Shutdown()  # SIGTERM: finish the delivery in hand, spool the rest, exit
    on_stop_signal(shutdown)
    # Our own reader of fd 0: the reading thread may still be blocked in it when we exit.
    stdin = open(sys.stdin.fileno(), "rb", closefd=False)  # noqa: SIM115
    code = run_notify(cfg, stdin, sys.stdout.buffer, lambda message: warn(PROG, message), dry_run=dry_run,
                      shutdown=shutdown)
    exit_now(code)


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
