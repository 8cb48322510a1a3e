"""doorman-analyze's loop: read snapshot lines, keep the state file, write alerts as they come."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from typing import cast

from doorman.analyze.engine import Engine, snapshot_problem
from doorman.analyze.state import StateFile, StateUnavailable
from doorman.config.settings import Config
from doorman.contract.alert import Alert
from doorman.contract.snapshot import Snapshot
from doorman.contract.tick import Tick, tick
from doorman.ndjson import read_objects, write_record
from doorman.process import Stop, stop_signals_if_main, stoppable


def run(cfg: Config, files: Sequence[str], state_path: str | None, check: bool,
        say: Callable[[str], None], write: Callable[[Alert | Tick], None] = write_record) -> int:
    """Analyze every file (`-`: stdin) in turn; the exit code. With `check`, one Nagios line."""
    store = StateFile(state_path, say, lock_timeout=cfg.state_lock_timeout) if state_path else None
    try:
        loaded = store.load() if store else None
    except StateUnavailable as e:
        if not check:
            raise
        sys.stdout.write(f"DOORMAN UNKNOWN - {e}\n")  # Nagios: a check that cannot run is UNKNOWN
        sys.stdout.flush()
        return 3
    engine = Engine(cfg, loaded)
    ticks = bool(cfg.heartbeat_url) and not check  # the dead-man's switch: notify pings once per tick
    # SIGTERM: stop at once while waiting for input (it reads as an EOF), but never between deciding
    # on alerts and writing them (the state would say "sent" for an alert nobody got): the snapshot
    # in hand is finished first. Put back at the end: callers (tests) go on living.
    stop = Stop()
    progress = Progress()
    try:
        with stop_signals_if_main(stop, (signal.SIGTERM,)):
            _loop(engine, store, files, check, ticks, stop, progress, say, write)
    finally:
        stop.close()
        if store:
            store.close(None if progress.unwritten else engine.state)
    if check:
        return _check(engine, cfg)
    return 1 if progress.failed else 0


class Progress:
    """`failed`: a file could not be read; `unwritten`: alerts decided but not all written (that
    state must not be saved)."""

    failed = unwritten = False


def _loop(engine: Engine, store: StateFile | None, files: Sequence[str], check: bool, ticks: bool, stop: Stop,
          progress: Progress, say: Callable[[str], None], write: Callable[[Alert | Tick], None]) -> None:
    for name in files or ("-",):
        if stop.is_set():
            break
        try:
            stream = stoppable(sys.stdin.buffer, stop) if name == "-" else open(name, "rb")  # noqa: SIM115
        except OSError as e:
            say(f"error: cannot read {name}: {e.strerror}")
            progress.failed = True
            continue
        label = "<stdin>" if name == "-" else name
        with stream:
            for lineno, snap in read_objects(stream, "snapshot", label, say, snapshot_problem):
                try:
                    alerts = engine.process(cast(Snapshot, snap))  # checked by snapshot_problem
                except Exception as e:  # noqa: BLE001 - one bad snapshot must not end a daemon
                    say(f"{label}:{lineno}: cannot analyze this snapshot ({type(e).__name__}: {e}); skipped")
                    if stop.is_set():  # a stop that came while this snapshot failed is not lost
                        break
                    continue
                if not check:
                    progress.unwritten = bool(alerts)
                    for alert in alerts:
                        write(alert)
                    progress.unwritten = False
                    if ticks:
                        write(tick(cast(Snapshot, snap), len(alerts)))
                if store:
                    store.save(engine.state, urgent=bool(alerts))
                if stop.is_set():  # a stop that came while busy takes effect now
                    break


def _check(engine: Engine, cfg: Config) -> int:
    from doorman.analyze.check import status_line

    snap = engine.last_snapshot
    cluster = snap.get("cluster") or "default" if snap else "default"
    cs = engine.state["clusters"].get(cluster, {}) if snap else {}
    code, line = status_line(snap, engine.current, cs, engine.configs.get(cluster, cfg), engine.rules)  # its thresholds
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return code
