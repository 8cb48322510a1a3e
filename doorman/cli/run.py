"""doorman-run: the daemon pipe as one supervised command; settings come from the environment."""

from __future__ import annotations

import os
import sys

import click

from doorman.cli.options import version_option
from doorman.ndjson import warn

PROG = "doorman-run"


@click.command(context_settings={"help_option_names": [], "ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@version_option(PROG)
def main(args: tuple[str, ...]) -> None:
    """Run doorman-collect | doorman-analyze | doorman-notify (docs/run.md)."""
    from doorman.errors import DoormanError
    from doorman.run.supervise import HELP, supervise

    if args in (("-h",), ("--help",)):
        sys.stdout.write(HELP)
        sys.exit(0)
    if args:
        warn(PROG, "usage: doorman-run (no arguments; settings come from the environment, see docs/run.md; --help)")
        sys.exit(2)
    try:
        code = supervise(os.environ, lambda message: warn(PROG, message))
    except DoormanError as e:
        warn(PROG, f"error: {e}")
        code = e.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main(prog_name=PROG)
