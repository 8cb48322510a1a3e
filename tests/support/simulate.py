"""What a doorman-simulate run leaves behind: nothing, once it has ended (every process it started
carries its broker's REDIS_URL, and its port is closed)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path


def leftovers(port: int) -> list[str]:
    """Live processes started for this run's broker (they all carry its REDIS_URL)."""
    needle = f"REDIS_URL=redis://127.0.0.1:{port}/0".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(f"{d.name} {(d / 'cmdline').read_bytes().replace(bytes(1), b' ').decode()}")
        except (OSError, IndexError):
            continue
    return found


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_all_gone(port: int) -> None:
    deadline = time.monotonic() + 3
    while (leftovers(port) or listening(port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listening(port), f"something still listens on {port}"
    assert leftovers(port) == []
