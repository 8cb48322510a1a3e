"""Ending a child started in its own session (`start_new_session=True`): its whole process group
goes, so no grandchild (a pool process, a shell's command) outlives it."""

from __future__ import annotations

import os
import signal
import subprocess


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 10) -> None:
    """Signal the child's whole process group and reap the child (SIGKILL if `sig` was not enough
    within `timeout`); a group already gone is fine."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
