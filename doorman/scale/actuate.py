"""Acting on a decision through the user's own scaler: `--exec 'COMMAND {pool} {desired}'`.

The template is split into arguments once (shell quoting rules, no shell), and `{pool}` and
`{desired}` are replaced inside each argument: the values never meet a shell, so nothing a broker
or a config could spell runs as code. The command runs in a helper thread, newest request per pool
first: a slow `kubectl` never stops the stage from reading its input (a `tee` feeding
doorman-analyze must never block on us). A failure is reported as a record and the pool is marked,
so the stage asks again on the next decision.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from doorman.contract.version import SCHEMA_VERSION
from doorman.process import kill_group
from doorman.timefmt import iso

ERROR_CHARS = 400  # tail of the command's output kept in a failure record


@dataclass(frozen=True)
class Outcome:
    ok: bool
    exit_code: int | None
    error: str | None


@dataclass(frozen=True)
class Job:
    pool: str
    desired: int
    ts: float  # the decision's snapshot time, stamped on the report
    cluster: str


class Runner(Protocol):
    def __call__(self, argv: list[str], timeout: float) -> Outcome: ...


def argv_for(template: str, pool: str, desired: int) -> list[str]:
    """The argument vector for one decision; `{pool}`/`{desired}` replaced, nothing else touched."""
    return [a.replace("{pool}", pool).replace("{desired}", str(int(desired))) for a in shlex.split(template)]


def _tail(f: Any) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - 4 * ERROR_CHARS))
    text = f.read().decode("utf-8", "replace").strip()
    return text[-ERROR_CHARS:]


def run_command(argv: list[str], timeout: float) -> Outcome:
    """Run argv in its own session (so a timeout kills its children too); output kept aside, never
    on our stdout, which is data."""
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as e:
            return Outcome(False, None, f"cannot run {argv[0]!r}: {e.strerror or e}")
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return Outcome(False, None, f"timed out after {timeout:g} s (killed); output: {_tail(out)}")
        if code == 0:
            return Outcome(True, 0, None)
        why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return Outcome(False, code, f"{why}; output: {_tail(out)}")


class Executor:
    """Runs the command for each submitted job; reports each outcome through `report(record)`.

    `threaded=False` runs jobs inside `submit` (tests, replays)."""

    def __init__(self, template: str, report: Callable[[dict[str, Any]], None], timeout: float = 120.0,
                 run: Runner = run_command, scrub: Callable[[str], str] = lambda s: s, threaded: bool = True):
        self.template, self.report, self.timeout, self.run, self.scrub = template, report, timeout, run, scrub
        self._cond = threading.Condition()
        self._wanted: dict[str, Job] = {}  # newest job per pool, not started yet
        self._busy = False
        self._failed: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._closing = False
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._loop, name="doorman-scale-exec", daemon=True)
            self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            self._failed.discard(job.pool)
            self._wanted.pop(job.pool, None)
            self._wanted[job.pool] = job  # newest last; an older request for the pool is dropped
            self._cond.notify()
        if self._thread is None:
            self._run_one()

    def failed(self, pool: str) -> bool:
        """The last command for `pool` failed and nothing newer is on its way: ask again."""
        with self._cond:
            return pool in self._failed and pool not in self._wanted

    def close(self, wait: float) -> None:
        """Let what is queued finish (up to `wait` seconds), then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(wait)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._closing:
                    self._cond.wait()
                if not self._wanted:
                    return
            self._run_one()

    def _run_one(self) -> None:
        with self._cond:
            if not self._wanted:
                return
            pool = next(iter(self._wanted))
            job = self._wanted.pop(pool)
            attempt = self._attempts.get(pool, 0) + 1
            self._attempts[pool] = attempt
        argv = argv_for(self.template, job.pool, job.desired)
        try:
            outcome = self.run(argv, self.timeout)
        except Exception as e:  # noqa: BLE001 - the stage must outlive any failure of the command
            outcome = Outcome(False, None, f"{type(e).__name__}: {e}")
        with self._cond:
            if outcome.ok:
                self._attempts[pool] = 0
            elif pool not in self._wanted:
                self._failed.add(pool)
        self.report({
            "v": SCHEMA_VERSION, "kind": "scale_exec", "ts": iso(job.ts), "cluster": job.cluster,
            "pool": job.pool, "desired_workers": job.desired, "command": os.path.basename(argv[0]),
            "result": "ok" if outcome.ok else "failed", "exit_code": outcome.exit_code,
            "error": self.scrub(outcome.error) if outcome.error else None, "attempt": attempt,
        })
