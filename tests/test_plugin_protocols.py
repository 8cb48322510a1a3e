"""An incomplete plugin is refused at load with one line naming its entry point, and the alert path
goes on without it: a broken plugin must never take analyze down mid-run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson

from tests.support.process import BIN
from tests.support.scenario import snap

SNAPSHOT = snap(connected=False)


def make_plugin(where: Path, body: str, group: str = "doorman.rules", attr: str = "RULE") -> dict[str, str]:
    """A distribution on PYTHONPATH with one entry point, as pip would lay it out."""
    (where / "half_plugin.py").write_text(body)
    info = where / "half_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: half-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\nhalf = half_plugin:{attr}\n")
    return {**os.environ, "PYTHONPATH": str(where)}


def analyze(env: dict[str, str], state: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(BIN / "doorman-analyze"), "--state", str(state)], env=env, timeout=60,
                          input=orjson.dumps(SNAPSHOT) + b"\n", capture_output=True)


def test_a_rule_without_evaluate_or_needs_broker_is_refused_at_load(tmp_path):
    env = make_plugin(tmp_path, "class Half:\n    name = 'half_rule'\n    alert_types = ()\n"
                                "    settings = ()\nRULE = Half()\n")
    run = analyze(env, tmp_path / "state.json")
    assert run.returncode == 0, run.stderr
    lines = run.stderr.decode().splitlines()
    refused = [x for x in lines if "'half'" in x]
    assert len(refused) == 1, lines
    assert "not loaded" in refused[0] and "needs_broker" in refused[0] and "evaluate" in refused[0]
    assert "Traceback" not in run.stderr.decode()
    alerts = [orjson.loads(x) for x in run.stdout.splitlines()]
    assert [(a["alert_type"], a["status"]) for a in alerts] == [("redis_down", "firing")]


def test_a_sink_without_from_config_is_refused_at_load(tmp_path):
    env = make_plugin(tmp_path, "class Half:\n    name = 'half_sink'\n    settings = ()\n"
                                "    enabled_by = 'x'\nSINK = Half\n", "doorman.sinks", "SINK")
    alert = subprocess.run([str(BIN / "doorman-analyze"), "--state", str(tmp_path / "s.json")], env=env,
                           input=orjson.dumps(SNAPSHOT) + b"\n", capture_output=True, timeout=60).stdout
    run = subprocess.run([str(BIN / "doorman-notify"), "--dry-run"], env=env, input=alert, timeout=60,
                         capture_output=True)
    refused = [x for x in run.stderr.decode().splitlines() if "'half'" in x]
    assert len(refused) == 1 and "from_config" in refused[0], run.stderr
    assert "Traceback" not in run.stderr.decode()


def test_a_broker_plugin_with_no_name_is_refused(tmp_path):
    env = make_plugin(tmp_path, "class Half:\n    name = ''\n    schemes = ('x',)\n    settings = ()\n"
                                "    def url_problem(self, u): return None\n"
                                "    def config_problem(self, c): return None\n"
                                "    def connect(self, c): return None\nBROKER = Half()\n",
                      "doorman.brokers", "BROKER")
    run = analyze(env, tmp_path / "state.json")
    assert run.returncode == 0, run.stderr
    refused = [x for x in run.stderr.decode().splitlines() if "'half'" in x]
    assert len(refused) == 1 and "name" in refused[0], run.stderr
