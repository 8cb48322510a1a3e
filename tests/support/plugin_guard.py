"""A pytest plugin: start every run without the example Doorman plugin installed.

tests/test_plugins.py installs it and uninstalls it afterwards; a run killed in between would
leave its rule adding an alert to every other test's pipeline.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

import pytest

PLUGIN = "doorman-example-plugin"


def pytest_sessionstart(session: pytest.Session) -> None:  # noqa: ARG001
    try:
        version(PLUGIN)
    except PackageNotFoundError:
        return
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", PLUGIN], check=True)
