"""Files that belong to another user, as an attacker on a shared machine would plant them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

OTHER = 65534  # nobody


def give_away(path: Path) -> None:
    """Make `path` belong to another user (the attacker), as the review's PoC had it."""
    if os.geteuid() == 0:
        os.chown(path, OTHER, OTHER, follow_symlinks=False)
    else:  # not root: the suite needs sudo for this (never a skip)
        subprocess.run(["sudo", "-n", "chown", "-h", f"{OTHER}:{OTHER}", str(path)], check=True)
