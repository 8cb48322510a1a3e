"""The example plugin, pip-installed, works through the real pipeline: its rule fires and resolves,
its sink receives the alerts, its config keys are checked like ours.

It is installed into a directory of its own and only this module's processes get it on PYTHONPATH
(entry points are found along sys.path). Installed into the virtualenv, its rule would add an alert
to every pipeline started meanwhile: the chaos soak, which runs beside the suite, replayed its
snapshots with that rule loaded and got alerts its live run had rightly not given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest

from tests.support.plugin_guard import PLUGIN
from tests.support.process import BIN, ROOT
from tests.support.workers import enqueue

pytestmark = pytest.mark.slow  # every test needs the plugin pip-installed first


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
                   check=True, timeout=300)


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment a process needs to load the plugin."""
    target = tmp_path_factory.mktemp("example-plugin")
    pip("install", "--no-deps", "--target", str(target), str(ROOT / "examples" / "plugin"))
    yield {"PYTHONPATH": str(target)}


def test_the_plugin_is_not_in_the_virtualenv(example_plugin):
    from importlib.metadata import PackageNotFoundError, version

    with pytest.raises(PackageNotFoundError):
        version(PLUGIN)


def pipeline(url: str, env: dict[str, str], state: str) -> tuple[list[dict], list[dict]]:
    """collect --once | analyze | notify: (alerts, delivery records)."""
    env = {**os.environ, "REDIS_URL": url, **env}
    collect = subprocess.run([str(BIN / "doorman-collect"), "--once"], capture_output=True, env=env,
                             check=True, timeout=60)
    analyze = subprocess.run([str(BIN / "doorman-analyze"), "--state", state], input=collect.stdout,
                             capture_output=True, env=env, check=True, timeout=60)
    notify = subprocess.run([str(BIN / "doorman-notify")], input=analyze.stdout, capture_output=True,
                            env=env, timeout=60)
    assert notify.returncode == 0, notify.stderr
    return ([orjson.loads(x) for x in analyze.stdout.splitlines()],
            [orjson.loads(x) for x in notify.stdout.splitlines()])


def brief(alerts: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((a["alert_type"], a["severity"], a["status"]) for a in alerts)


@pytest.mark.e2e
def test_the_example_rule_and_sink_work_through_the_real_pipeline(example_plugin, redis_server, tmp_path):
    out = tmp_path / "alerts.ndjson"
    env = {"EXAMPLE_FILE_PATH": str(out), "DOORMAN_SPOOL": str(tmp_path / "spool.ndjson"), **example_plugin}
    state = str(tmp_path / "state.json")
    enqueue(redis_server.url, 5)  # odd, and no worker

    alerts, deliveries = pipeline(redis_server.url, env, state)
    assert brief(alerts) == [("example_odd_backlog", "info", "firing"), ("workers_down", "emergency", "firing")]
    odd = next(a for a in alerts if a["alert_type"] == "example_odd_backlog")
    assert odd["subject"] == "cluster" and odd["details"] == {"pending_tasks": 5}
    assert sorted((d["destination"], d["result"]) for d in deliveries) == [("example_file", "delivered")] * 2
    assert [orjson.loads(x) for x in out.read_bytes().splitlines()] == alerts

    enqueue(redis_server.url, 1)  # even: the example rule resolves, workers_down holds (cooldown)
    alerts, _ = pipeline(redis_server.url, env, state)
    assert brief(alerts) == [("example_odd_backlog", "info", "resolved")]
    assert orjson.loads(out.read_bytes().splitlines()[-1]) == alerts[0]


def test_plugin_config_keys_are_checked_like_built_in_ones(example_plugin, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("example_file_pth: /tmp/x\n")
    r = subprocess.run([str(BIN / "doorman-notify"), "--config", str(cfg)], input=b"", capture_output=True,
                       env={**os.environ, **example_plugin}, timeout=60)
    assert r.returncode == 2
    assert r.stderr.decode().strip().splitlines() == [
        f"doorman-notify: error: {cfg}: example_file_pth: unknown key (did you mean 'example_file_path'?)"]
    r = subprocess.run([str(BIN / "doorman-notify")], input=b"", capture_output=True, timeout=60,
                       env={**os.environ, **example_plugin, "EXAMPLE_FILE_MIN_SEVERITY": "loud"})
    assert r.returncode == 2 and b"EXAMPLE_FILE_MIN_SEVERITY" in r.stderr
