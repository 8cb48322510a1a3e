"""doorman-analyze: snapshots (NDJSON) in, alerts (NDJSON) out; or one Nagios line with --check."""

from __future__ import annotations

import signal
import sys

import click

from doorman.cli.options import CONTEXT, command_body, config_option, load, state_option
from doorman.ndjson import read_objects, warn, write_record

PROG = "doorman-analyze"


class Stop:
    """SIGTERM: exit at once while waiting for input, but never between deciding on alerts and
    writing them (the state would say "sent" for an alert nobody got)."""

    def __init__(self) -> None:
        self.busy = self.requested = False

    def __call__(self, signum, frame) -> None:  # noqa: ARG002
        if self.busy:
            self.requested = True
        else:
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

    store = StateFile(state_path, say, lock_timeout=cfg.state_lock_timeout) if state_path else None
    engine = Engine(cfg, store.load() if store else None)
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    failed = False
    unwritten = False  # alerts decided but not all written: that state must not be saved
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
                    stop.busy = True
                    try:
                        alerts = engine.process(snap)
                    except Exception as e:  # noqa: BLE001 - one bad snapshot must not end a daemon
                        say(f"{label}:{lineno}: cannot analyze this snapshot ({type(e).__name__}: {e}); skipped")
                        stop.busy = False
                        continue
                    if not check:
                        unwritten = bool(alerts)
                        for alert in alerts:
                            write_record(alert)
                        unwritten = False
                    if store:
                        store.save(engine.state, urgent=bool(alerts))
                    stop.busy = False
                    if stop.requested:
                        raise SystemExit(0)
    finally:
        if store:
            store.close(None if unwritten else engine.state)
    if check:
        from doorman.check import status_line

        snap = engine.last_snapshot
        cs = engine.state["clusters"].get(snap.get("cluster") or "default", {}) if snap else {}
        code, line = status_line(snap, engine.current, cs, cfg)
        click.echo(line)
        sys.exit(code)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(prog_name="doorman-analyze")
