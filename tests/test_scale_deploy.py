"""doorman-scale's --exec examples and the KEDA manifest (docs/scale.md, "Acting"): the textfile
gauge served by a real node_exporter and checked by promtool, the systemd template-unit script
(systemctl replaced by a local script that records what it is asked: no systemd PID 1 here),
and the shape of deploy/kubernetes-keda.yaml."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
import yaml

from tests.support.process import ROOT, cli, free_port, records, require
from tests.support.scale import burst_lines

DEPLOY = ROOT / "deploy"


def need(binary: str) -> str:
    return require(binary, {"promtool": "prometheus"}.get(binary, binary))


@pytest.mark.e2e
def test_textfile_gauge_reaches_prometheus_format_through_node_exporter(tmp_path):
    exporter, promtool = need("prometheus-node-exporter"), need("promtool")
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    r = cli("doorman-scale", "--exec", f"{DEPLOY / 'doorman-scale-textfile'} {textdir} {{pool}} {{desired}}",
            input=b"".join(burst_lines(6)))
    assert r.returncode == 0, r.stderr
    assert all(x["result"] == "ok" for x in records(r.stdout) if x["kind"] == "scale_exec")
    prom = textdir / "doorman_scale_default.prom"
    check = subprocess.run([promtool, "check", "metrics"], input=prom.read_bytes(), capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr + check.stdout
    assert [p.name for p in textdir.iterdir()] == [prom.name]  # no temporary file left behind

    port = free_port()
    proc = subprocess.Popen([exporter, "--collector.disable-defaults", "--collector.textfile",
                             f"--collector.textfile.directory={textdir}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, body = time.monotonic() + 20, ""
        while time.monotonic() < deadline and "doorman_desired_workers" not in body:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except requests.ConnectionError:
                time.sleep(0.1)
        last = records(r.stdout)
        desired = [x["desired_workers"] for x in last if x["kind"] == "scale"][-1]
        assert f'doorman_desired_workers{{pool="default"}} {desired}' in body.splitlines()
    finally:
        proc.terminate()
        proc.wait(10)


def test_systemd_template_units_follow_the_decision(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f"""#!/bin/sh
echo "$*" >> {calls}
[ "$1" = list-units ] && printf 'celery-default@1.service loaded active running A\\ncelery-default@2.service loaded active running A\\ncelery-default@9.service loaded active running A\\n'
exit 0
""")
    fake.chmod(0o755)
    r = cli("doorman-scale", "--exec", f"{DEPLOY / 'doorman-scale-systemd'} {{pool}} {{desired}}",
            input=b"".join(burst_lines(2)), env={"SYSTEMCTL": str(fake)})
    assert r.returncode == 0, r.stderr
    [done] = [x for x in records(r.stdout) if x["kind"] == "scale_exec"]
    assert done["result"] == "ok" and done["desired_workers"] == 1
    assert calls.read_text().splitlines() == [
        "start celery-default@1.service",
        "list-units --plain --no-legend --state=active celery-default@*.service",
        "stop celery-default@2.service celery-default@9.service",
    ]
    bad = subprocess.run([str(DEPLOY / "doorman-scale-systemd"), "x;rm", "2"], capture_output=True, timeout=10)
    assert bad.returncode == 2 and b"bad pool name" in bad.stderr


def test_keda_manifest_reads_the_gauge_the_scaler_writes():
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes-keda.yaml").read_text())}
    assert docs["ConfigMap"]["data"]["doorman-scale-textfile"] == (DEPLOY / "doorman-scale-textfile").read_text()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    doorman, exporter = pod["containers"]
    assert "doorman-collect" in doorman["args"][0] and "doorman-scale --exec" in doorman["args"][0]
    assert "{pool} {desired}" in doorman["args"][0]
    assert "--collector.textfile.directory=/var/lib/doorman-scale" in exporter["args"]
    so = docs["ScaledObject"]["spec"]
    [trigger] = so["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["query"] == 'max(doorman_desired_workers{pool="default"})'
    assert trigger["metadata"]["threshold"] == "1"
    assert so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 0
