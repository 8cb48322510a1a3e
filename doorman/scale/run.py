"""`doorman-scale` as one library call: config in, the stage run over the inputs, the exit code out."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from doorman.config.settings import Config
from doorman.ndjson import write_record
from doorman.process import Stop, stop_signals_if_main, stoppable
from doorman.redact import Scrubber
from doorman.scale import stage as stages
from doorman.scale.actuate import Executor
from doorman.scale.policy import Policy
from doorman.scale.settings import Pool
from doorman.scale.stage import Stage, locked


def policy_of(cfg: Config) -> Policy:
    s = cfg.scale
    return Policy(stabilization=float(s.stabilization_seconds), rate_window=float(s.rate_window_seconds),
                  stale_after=float(s.stale_after_seconds))


def run(cfg: Config, pools: list[Pool], files: Sequence[str], every: int, say: Callable[[str], None],
          write: Callable[[dict[str, Any]], None] = write_record, stdin: IO[bytes] | None = None) -> int:
    """Decide over every file in turn (`-`: stdin); 1 if a file could not be read, else 0."""
    out = locked(write)
    executor = None
    if cfg.scale.exec_command:
        executor = Executor(cfg.scale.exec_command, _quiet(out), timeout=float(cfg.scale.exec_timeout_seconds),
                            scrub=Scrubber(cfg.secrets()))
    stage = Stage(pools, policy_of(cfg), out, say, executor, every)
    # SIGTERM: stop at once while waiting for input (it reads as an EOF), else after the decision in
    # hand; the last change still gets its command. Put back at the end: callers (tests) go on living.
    stop = Stop()
    failed = False
    try:
        with stop_signals_if_main(stop, (signal.SIGTERM,)):
            failed = _read(stage, files, stdin, stop, say)
    finally:
        stop.close()
        if executor is not None:  # the last change still gets its command, within its timeout
            executor.close(wait=float(cfg.scale.exec_timeout_seconds) + 5)
    return 1 if failed else 0


def _read(stage: Stage, files: Sequence[str], stdin: IO[bytes] | None, stop: Stop,
          say: Callable[[str], None]) -> bool:
    """Every file in turn until a stop; whether one could not be read."""
    failed = False
    for name in files or ("-",):
        if stop.is_set():
            break
        if name == "-":
            stream = stoppable(stdin or sys.stdin.buffer, stop)
        else:
            try:
                stream = open(name, "rb")  # noqa: SIM115 - closed below
            except OSError as e:
                say(f"error: cannot read {name}: {e.strerror}")
                failed = True
                continue
        try:
            stages.run(stage, stream, "<stdin>" if name == "-" else name, say, stop)
        finally:
            if name != "-":
                stream.close()
    return failed


def _quiet(write: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """The command thread's writer: a reader gone away ends the reading loop, not this thread noisily."""

    def out(obj: dict[str, Any]) -> None:
        try:
            write(obj)
        except (OSError, ValueError):
            pass

    return out
