"""The files that ship with doorman-serve: Prometheus rules (promtool), the Grafana dashboard, the
deployment (serve beside the daemon, probes on /healthz and /livez), the pinned chart library."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import yaml

from doorman.serve.metrics import exposition_maker
from doorman.serve.state import State
from tests.support.exporter import workload_snapshot
from tests.support.process import ROOT, require
from tests.support.serve import alert, snapshot

PROM = ROOT / "deploy" / "prometheus"


def promtool() -> str:
    return require("promtool", "prometheus")


def served_names() -> set[str]:
    """Every metric name serve exposes (a state with every kind of figure in it)."""
    state = State()
    t = time.time()
    state.snapshot(snapshot(t, {"celery": 1}, [("w@h", True, 1)], oldest={"celery": 1.0}, unacked=1,
                            unacked_age=2.0))
    state.alert(alert(t))
    state.snapshot(workload_snapshot(t, t - 60, cluster="tasks"))  # the celery-exporter task series
    text = exposition_maker(state, lambda: t)().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_prometheus_rules_pass_promtool_check_and_their_unit_tests():
    for args in (["check", "rules", "doorman-rules.yml"], ["test", "rules", "doorman-rules.test.yml"]):
        r = subprocess.run([promtool(), *args], cwd=PROM, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def series_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:celery|doorman)_[a-z_]+)\b", expr))


def test_rules_and_grafana_use_only_served_series():
    names = served_names()
    rules = yaml.safe_load((PROM / "doorman-rules.yml").read_text())
    used = {n for g in rules["groups"] for r in g["rules"] for n in series_in(r["expr"])}
    assert used and used <= names, used - names
    dash = json.loads((ROOT / "deploy" / "grafana" / "doorman.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in series_in(e)}
    assert {"celery_queue_length", "celery_worker_up", "doorman_alerts_firing"} <= used
    assert used <= names, used - names
    assert all('cluster=~"$cluster"' in e for e in exprs)


def test_deployments_run_serve_beside_the_daemon_with_probes():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cm["data"]["DOORMAN_STREAMS_DIR"] == "/var/lib/celery-doorman/streams"
    [dep] = [d for d in docs if d["kind"] == "Deployment"]
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    serve, daemon = containers["serve"], containers["doorman"]
    assert serve["command"][0] == "doorman-serve" and daemon["command"] == ["doorman-run"]
    assert serve["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert serve["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "/var/lib/celery-doorman/streams/snapshots.ndjson" in serve["command"]
    token = [e for e in serve["env"] if e["name"] == "DOORMAN_SERVE_TOKEN"]
    # optional: a missing key must not keep the daemon's pod from starting; serve then refuses 0.0.0.0
    assert token and token[0]["valueFrom"]["secretKeyRef"] == {"name": "celery-doorman", "key": "serve-token",
                                                                "optional": True}
    assert "--no-auth" not in serve["command"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["doorman"]["environment"]["DOORMAN_STREAMS_DIR"] == "/var/lib/celery-doorman/streams"
    assert compose["serve"]["command"][0] == "doorman-serve"
    assert compose["serve"]["ports"] == ["127.0.0.1:9808:9808"]
    unit = (ROOT / "deploy" / "celery-doorman.service").read_text()
    assert "Environment=DOORMAN_STREAMS_DIR=%S/celery-doorman/streams" in unit
    serve_unit = (ROOT / "deploy" / "celery-doorman-serve.service").read_text()
    assert "%S/celery-doorman/streams/snapshots.ndjson" in serve_unit and "User=celery-doorman" in serve_unit


def test_serve_unit_verifies(tmp_path):
    analyze = require("systemd-analyze", "systemd")
    from tests.support.process import BIN

    unit = tmp_path / "celery-doorman-serve.service"
    unit.write_text((ROOT / "deploy" / "celery-doorman-serve.service").read_text().replace(
        "/opt/celery-doorman/bin/doorman-serve", str(BIN / "doorman-serve")))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_the_chart_library_is_pinned_shipped_with_its_licence_and_packaged():
    vendor = ROOT / "doorman" / "serve" / "static" / "vendor"
    assert "MIT License" in (vendor / "LICENSE-uPlot.txt").read_text()
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 10_000
    assert "1.6.32" in (vendor / "README.md").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"doorman.serve" = ["static/*.html", "static/*.js", "static/*.css", "static/vendor/*"]' in pyproject
    index = (ROOT / "doorman" / "serve" / "static" / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", index), "inline script"
    assert "http://" not in index and "https://" not in index  # no CDN
    assert not re.search(r"\son[a-z]+=", index)  # no inline handlers


def test_readme_and_docs_link_serve():
    assert "docs/serve.md" in (ROOT / "README.md").read_text()
    doc = (ROOT / "docs" / "serve.md").read_text()
    for path in ("/metrics", "/healthz", "/livez", "/api/v1/status", "/api/v1/history", "/api/v1/alerts"):
        assert path in doc
    assert Path(ROOT / "deploy" / "grafana" / "doorman.json").exists()
