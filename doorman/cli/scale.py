"""doorman-scale: snapshots (NDJSON) in, scaling decisions (NDJSON) out; optionally acted on."""

from __future__ import annotations

import os
import sys

import click

from doorman.cli.options import CONTEXT, command_body, config_option, version_option
from doorman.ndjson import warn

PROG = "doorman-scale"


@click.command(context_settings=CONTEXT)
@version_option(PROG)
@click.argument("files", nargs=-1, metavar="[FILE]...")
@config_option
@click.option("--exec", "exec_command", metavar="'COMMAND {pool} {desired}'",
              help="Run this on each change (no shell; {pool} and {desired} are replaced in each argument). "
                   "Default: scale.exec_command, $DOORMAN_SCALE_EXEC.")
@click.option("--every", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Also write each pool's decision every N snapshots, changed or not (0: only changes).")
@command_body(PROG)
def main(files: tuple[str, ...], config_path: str | None, exec_command: str | None, every: int) -> None:
    """Read snapshots from FILEs (default: stdin, also `-`); write one decision per pool when the
    number of workers it needs changes (docs/scale.md)."""
    from doorman.config.load import load_config
    from doorman.errors import DoormanError
    from doorman.scale.settings import pools

    try:
        cfg = load_config(config_path, overrides={"exec_command": exec_command},
                          flag_names={"exec_command": "--exec"})
        source = config_path or os.environ.get("DOORMAN_CONFIG") or "config"
        configured = pools(cfg, source)
    except DoormanError as e:
        warn(PROG, f"error: {e}")
        sys.exit(e.exit_code)
    for note in cfg.notes:
        warn(PROG, note)
    from doorman.scale.run import run as scale

    sys.exit(scale(cfg, configured, files, every, lambda msg: warn(PROG, msg)))


if __name__ == "__main__":
    main(prog_name="doorman-scale")
