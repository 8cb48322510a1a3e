"""Issue 28, lower findings: an incomplete plugin never takes analyze or notify down mid-run, and
Alertmanager's basic-auth credentials are scrubbed in base64 form too. Real parts: a plugin
installed as a distribution on PYTHONPATH (found through its entry points), the real commands, a
real HTTP receiver on loopback."""

from __future__ import annotations

import base64
import os
import subprocess
import time

import orjson

from tests.support.notify import notify_env
from tests.support.process import BIN, records
from tests.support.receiver import Reply
from tests.support.scenario import snapshot_line

BROKEN = '''
class NoNeedsBroker:  # evaluate but none of the class attributes a BaseRule has
    name = "broken_no_needs_broker"

    def evaluate(self, snapshot, state, config, now):
        return []


class NoEvaluate:
    name = "broken_no_evaluate"
    needs_broker = True
    alert_types = ()


class Raises:
    name = "broken_raises"

    def evaluate(self, snapshot, state, config, now):
        raise RuntimeError("plugin bug")


class NoSend:
    name = "broken_sink"

    @classmethod
    def from_config(cls, cfg, ctx):
        return cls()


NO_NEEDS_BROKER, NO_EVALUATE, RAISES, NO_SEND = NoNeedsBroker(), NoEvaluate(), Raises(), NoSend
'''


def install_broken_plugin(root) -> dict[str, str]:
    """A distribution on PYTHONPATH as pip would leave it: the module and its dist-info."""
    (root / "doorman_broken_plugin.py").write_text(BROKEN)
    info = root / "doorman_broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: doorman-broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[doorman.rules]\n"
        "broken_no_needs_broker = doorman_broken_plugin:NO_NEEDS_BROKER\n"
        "broken_no_evaluate = doorman_broken_plugin:NO_EVALUATE\n"
        "broken_raises = doorman_broken_plugin:RAISES\n"
        "[doorman.sinks]\n"
        "broken_sink = doorman_broken_plugin:NO_SEND\n")
    (info / "RECORD").write_text("")
    return {"PYTHONPATH": str(root)}


def test_an_incomplete_plugin_rule_never_takes_analyze_down(tmp_path):
    """PoC: a plugin rule without `needs_broker` made analyze exit 1 with an AttributeError."""
    env = {**os.environ, **install_broken_plugin(tmp_path), "DOORMAN_CONFIG": ""}
    now = time.time()
    from doorman.timefmt import iso

    stream = b"".join(snapshot_line(iso(now + i), pending=5, alive=0) for i in range(3))
    p = subprocess.run([str(BIN / "doorman-analyze")], input=stream, capture_output=True, env=env, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert "Traceback" not in err and "AttributeError" not in err
    assert [a["alert_type"] for a in records(p.stdout)] == ["workers_down"]
    assert err.count("broken_no_evaluate") == 1 and err.count("broken_raises") == 1  # each said once


def test_an_incomplete_plugin_sink_never_takes_notify_down(tmp_path, receiver):
    env = {**os.environ, **install_broken_plugin(tmp_path), **notify_env(tmp_path, hook=receiver.url("/hook"))}
    alert = {"v": 1, "kind": "alert", "ts": "2026-11-28T01:00:00.000Z", "cluster": "c1",
             "alert_type": "workers_down", "severity": "emergency", "status": "firing", "title": "Workers down",
             "message": "m", "subject": "cluster", "fingerprint": "f" * 32, "details": {},
             "started_at": "2026-11-28T01:00:00.000Z"}
    p = subprocess.run([str(BIN / "doorman-notify")], input=orjson.dumps(alert) + b"\n", capture_output=True,
                       env=env, timeout=60)
    err = p.stderr.decode()
    assert "Traceback" not in err and "broken_sink" in err
    assert [(r["destination"], r["result"]) for r in records(p.stdout)] == [("webhook", "delivered")]


def test_alertmanager_basic_auth_never_appears_plain_or_in_base64(tmp_path, receiver):
    """PoC: the credentials were scrubbed in plain form only; an answer quoting the request's
    `Authorization: Basic …` header showed them in the delivery record and on stderr."""
    user, password = "doorman", "s3cret-Pa55word"
    b64 = base64.b64encode(f"{user}:{password}".encode()).decode()
    receiver.script("/am/api/v2/alerts", Reply(status=400, body=f"bad request; you sent Authorization: Basic {b64} "
                                                                f"for {user}:{password}"))
    url = receiver.url("/am").replace("http://", f"http://{user}:{password}@")
    env = {**os.environ, **notify_env(tmp_path), "ALERTMANAGER_URL": url}
    alert = {"v": 1, "kind": "alert", "ts": "2026-11-28T01:00:00.000Z", "cluster": "c1",
             "alert_type": "workers_down", "severity": "emergency", "status": "firing", "title": "Workers down",
             "message": "m", "subject": "cluster", "fingerprint": "f" * 32, "details": {},
             "started_at": "2026-11-28T01:00:00.000Z"}
    p = subprocess.run([str(BIN / "doorman-notify")], input=orjson.dumps(alert) + b"\n", capture_output=True,
                       env=env, timeout=60)
    [got] = receiver.at("/am/api/v2/alerts")
    assert got.headers.get("Authorization") == f"Basic {b64}"  # the credentials were sent...
    [rec] = records(p.stdout)
    assert rec["result"] in ("rejected", "failed") and "bad request" in rec["error"]
    text = (p.stdout + p.stderr).decode()
    for secret in (password, f"{user}:{password}", b64, b64.rstrip("=")):
        assert secret not in text, secret  # ...and never shown
    spool = tmp_path / "spool.ndjson"
    if spool.exists():
        assert b64 not in spool.read_text() and password not in spool.read_text()
