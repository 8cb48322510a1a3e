"""`NotRequired` for record types on every Python Doorman supports (typing has it from 3.11)."""

import sys

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:  # pragma: no cover - Python 3.10
    from typing_extensions import NotRequired

__all__ = ["NotRequired"]
