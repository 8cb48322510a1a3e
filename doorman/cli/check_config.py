"""doorman-check-config: check a configuration as the stages would load it, before a restart."""

from __future__ import annotations

import sys

import click

from doorman.cli.options import (
    CONTEXT,
    FLAG_NAMES,
    command_body,
    config_option,
    redis_option,
    setting_help,
    version_option,
)
from doorman.ndjson import warn

PROG = "doorman-check-config"


@click.command(context_settings=CONTEXT)
@version_option(PROG)
@config_option
@redis_option
@click.option("--cluster", metavar="NAME", help=setting_help("cluster"))
@click.option("--connect", is_flag=True,
              help="Also try the broker and each destination's host once (a TCP connect, nothing sent).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True, metavar="SECONDS",
              help="How long --connect waits for each answer.")
@command_body(PROG)
def main(config_path: str | None, redis_url: str | None, cluster: str | None, connect: bool, timeout: float) -> None:
    """Load the file, environment and flags the stages would, check every key, URL, cluster entry and
    plugin, and print one line per problem on stderr. Exit 0: fine; 2: problems; 1 (--connect):
    the configuration is fine but something did not answer. Connects to nothing without --connect."""
    from doorman.config.check import check, reachability
    from doorman.redact import Scrubber

    report = check(config_path, overrides={"broker_url": redis_url, "cluster": cluster}, flag_names=FLAG_NAMES)
    for note in report.notes:
        warn(PROG, note)
    for problem in report.problems:
        warn(PROG, f"error: {problem}")
    if report.problems or report.config is None:
        n = len(report.problems)
        warn(PROG, f"{n} problem{'s' if n != 1 else ''} found")
        sys.exit(2)
    cfg = report.config
    where = config_path or "no config file (environment and defaults)"
    clusters = len(cfg.clusters) or 1
    if not connect:
        warn(PROG, f"ok: {where}; {clusters} broker{'s' if clusters != 1 else ''}; nothing contacted (--connect to try)")
        sys.exit(0)
    scrub = Scrubber(cfg.secrets() + report.secrets)
    answers = reachability(cfg, timeout)
    for a in answers:
        warn(PROG, scrub(f"{'ok' if a.ok else 'error'}: {a.what} {a.shown}: {a.detail}"))
    silent = sum(not a.ok for a in answers)
    warn(PROG, f"{'ok' if not silent else 'error'}: {where}; {len(answers) - silent} of {len(answers)} answered")
    sys.exit(1 if silent else 0)


if __name__ == "__main__":
    main(prog_name=PROG)
