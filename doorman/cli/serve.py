"""doorman-serve: Prometheus /metrics, /healthz, /livez and a history dashboard, beside the pipeline."""

from __future__ import annotations

import os
import sys

import click

from doorman.cli.options import CONTEXT, command_body, config_option, load, version_option
from doorman.ndjson import warn

PROG = "doorman-serve"


@click.command(context_settings=CONTEXT)
@version_option(PROG)
@click.argument("files", nargs=-1, metavar="[FILE]...")
@click.option("--listen", default="127.0.0.1:9808", show_default=True, envvar="DOORMAN_SERVE_LISTEN",
              metavar="HOST:PORT", help="Address to serve on; not loopback needs $DOORMAN_SERVE_TOKEN or --no-auth.")
@click.option("--history", metavar="PATH", envvar="DOORMAN_SERVE_HISTORY",
              help="SQLite history file (default $XDG_STATE_HOME/doorman/history.sqlite3; `none`: keep none).")
@click.option("--retention", default="7d", show_default=True, metavar="DURATION",
              help="History kept: 7d, 24h, 90m or seconds.")
@click.option("--no-auth", is_flag=True, help="Allow a non-loopback address without a token (warned about).")
@click.option("--max-queues", type=click.IntRange(min=1), default=1000, show_default=True, metavar="N",
              help="Queues per cluster in /metrics (the most pending kept).")
@click.option("--max-workers", type=click.IntRange(min=1), default=1000, show_default=True, metavar="N",
              help="Workers per cluster in /metrics (alive ones first).")
@click.option("--worker-expiry", type=click.FloatRange(min=0), default=None, metavar="S",
              help="A gone worker shows celery_worker_up 0 this many seconds after it was last alive, then loses "
                   "its series (default: serve_worker_down_keep_seconds, 1800).")
@config_option
@command_body(PROG)
def main(files: tuple[str, ...], listen: str, history: str | None, retention: str, no_auth: bool,
         max_queues: int, max_workers: int, worker_expiry: float | None, config_path: str | None) -> None:
    """Follow FILEs (as `tail -F`; default: stdin) of snapshots and alerts, and serve them over HTTP.

    Run it beside the daemon, reading the files `doorman-run` appends to, never inside the pipeline."""
    cfg = load(PROG, config_path)
    from doorman.serve.app import ServeOptions, parse_duration, serve
    from doorman.serve.history import default_path
    from doorman.serve.state import Limits
    from doorman.serve.tasks import TaskCaps

    try:
        keep = parse_duration(retention)
    except ValueError as e:
        warn(PROG, f"error: --retention {e}")
        sys.exit(2)
    path = None if history == "none" else history or default_path(dict(os.environ))
    opts = ServeOptions(files=files, listen=listen, history=path, retention=keep,
                        check_interval=max(float(c.check_interval) for c in cfg.clusters or (cfg,)),
                        token=os.environ.get("DOORMAN_SERVE_TOKEN") or None, no_auth=no_auth,
                        allowed_hosts=tuple(cfg.serve_allowed_hosts or ()),
                        limits=Limits(max_clusters=max(Limits.max_clusters, len(cfg.clusters)), max_queues=max_queues,
                                      max_workers=max_workers,
                                      worker_expiry=cfg.serve_worker_down_keep_seconds if worker_expiry is None
                                      else worker_expiry,
                                      tasks=TaskCaps(names=cfg.serve_max_task_names,
                                                     hostnames=cfg.serve_max_task_hostnames,
                                                     exceptions=cfg.serve_max_task_exceptions,
                                                     series=cfg.serve_max_task_series, queues=max_queues)))
    sys.exit(serve(opts, lambda msg: warn(PROG, msg), sys.stdin.buffer))


if __name__ == "__main__":
    main(prog_name="doorman-serve")
