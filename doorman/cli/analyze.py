"""doorman-analyze: snapshots (NDJSON) in, alerts (NDJSON) out; or one Nagios line with --check."""

from __future__ import annotations

import signal
import sys

import click

from doorman.cli.options import CONTEXT, command_body, config_option, load, state_option
from doorman.ndjson import read_objects, warn, write_record

PROG = "doorman-analyze"


def _stop(signum, frame):  # noqa: ARG001
    raise SystemExit(0)


@click.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, metavar="[FILE]...")
@config_option
@state_option
@click.option("--check", is_flag=True,
              help="Nagios plugin mode: read to EOF, print one status line, exit 0/1/2/3.")
@command_body(PROG)
def main(files, config_path, state_path, check):
    """Read snapshots from FILEs (default: stdin, also `-`); write alerts, one JSON object a line."""
    cfg = load(PROG, config_path)
    from doorman.analyze import Engine, snapshot_problem
    from doorman.state import StateFile

    def say(msg: str) -> None:
        warn(PROG, msg)

    store = StateFile(state_path, say) if state_path else None
    engine = Engine(cfg, store.load() if store else None)
    signal.signal(signal.SIGTERM, _stop)
    failed = False
    try:
        for name in files or ("-",):
            try:
                stream = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
            except OSError as e:
                say(f"error: cannot read {name}: {e.strerror}")
                failed = True
                continue
            label = "<stdin>" if name == "-" else name
            with stream:
                for lineno, snap in read_objects(stream, "snapshot", label, say, snapshot_problem):
                    try:
                        alerts = engine.process(snap)
                    except Exception as e:  # noqa: BLE001 - one bad snapshot must not end a daemon
                        say(f"{label}:{lineno}: cannot analyze this snapshot ({type(e).__name__}: {e}); skipped")
                        continue
                    if not check:
                        for alert in alerts:
                            write_record(alert)
                    if store:
                        store.save(engine.state, urgent=bool(alerts))
    finally:
        if store:
            store.close(engine.state)
    if check:
        from doorman.check import status_line

        snap = engine.last_snapshot
        cs = engine.state["clusters"].get(snap.get("cluster") or "default", {}) if snap else {}
        code, line = status_line(snap, engine.current, cs, cfg)
        click.echo(line)
        sys.exit(code)
    sys.exit(1 if failed else 0)
