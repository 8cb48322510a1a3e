"""doorman-analyze: snapshots (NDJSON) in, alerts (NDJSON) out; or one Nagios line with --check."""

from __future__ import annotations

import sys

import click

from doorman.cli.options import CONTEXT, command_body, config_option, load, state_option, version_option
from doorman.ndjson import warn

PROG = "doorman-analyze"


@click.command(context_settings=CONTEXT)
@version_option(PROG)
@click.argument("files", nargs=-1, metavar="[FILE]...")
@config_option
@state_option
@click.option("--check", is_flag=True,
              help="Nagios plugin mode: read to EOF, print one status line, exit 0/1/2/3.")
@command_body(PROG)
def main(files: tuple[str, ...], config_path: str | None, state_path: str | None, check: bool) -> None:
    """Read snapshots from FILEs (default: stdin, also `-`); write alerts, one JSON object a line."""
    cfg = load(PROG, config_path)
    from doorman.analyze.run import run

    sys.exit(run(cfg, files, state_path, check, lambda msg: warn(PROG, msg)))


if __name__ == "__main__":
    main(prog_name="doorman-analyze")
