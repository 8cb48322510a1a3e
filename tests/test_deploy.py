"""Deployment files: what can be checked without a container engine or a running systemd.

bin/doorman-run, the command the Dockerfile, compose and Kubernetes run, is run for real against
a real redis-server; the unit file goes through `systemd-analyze verify` where it is installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.process import BIN, ROOT, records
from tests.support.workers import enqueue

RUN = ROOT / "bin" / "doorman-run"
UNIT = ROOT / "deploy" / "celery-doorman.service"


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """systemd's ini dialect: repeated keys are allowed, so keep (key, value) pairs in order."""
    out: dict[str, list[tuple[str, str]]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        out[section].append((key.strip(), value.strip()))
    return out


def test_systemd_unit_is_hardened_and_verifies(tmp_path):
    sections = unit_sections(UNIT.read_text())
    assert set(sections) == {"Unit", "Service", "Install"}
    svc = dict(sections["Service"])
    assert svc["ExecStart"].endswith("/doorman-run")
    assert svc["Restart"] == "always"
    assert svc["EnvironmentFile"] == "/etc/celery-doorman/env"
    assert svc.get("DynamicUser") == "yes" or svc.get("User") == "doorman"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "StateDirectory": "celery-doorman", "MemoryMax": "128M",
                       "CapabilityBoundingSet": ""}.items():
        assert svc.get(key) == value, key
    assert dict(sections["Install"])["WantedBy"] == "multi-user.target"

    analyze = shutil.which("systemd-analyze")
    if analyze:  # verify also checks that ExecStart exists: point it at this checkout's script
        unit = tmp_path / "celery-doorman.service"
        unit.write_text(UNIT.read_text().replace("ExecStart=/opt/celery-doorman/bin/doorman-run",
                                                 f"ExecStart={RUN}"))
        result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stderr == "", result.stderr


def test_kubernetes_deployment_takes_secrets_and_fits_its_limits():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()))
    [dep] = [d for d in docs if d["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] == 1
    pod = dep["spec"]["template"]["spec"]
    [c] = [c for c in pod["containers"] if c["name"] == "doorman"]  # serve beside it: tests/test_serve_files.py
    assert c["command"] == ["doorman-run"]
    assert c["resources"] == {"requests": {"memory": "64Mi", "cpu": "50m"},
                              "limits": {"memory": "128Mi", "cpu": "100m"}}
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(refs) == {"REDIS_URL", "SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY", "GENERIC_WEBHOOK_URL"}
    assert "optional" not in refs["REDIS_URL"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/var/lib/celery-doorman", "/tmp"} <= mounts


def dockerfile_stages(text: str) -> list[dict[str, list[str]]]:
    stages: list[dict[str, list[str]]] = []
    for raw in text.replace("\\\n", " ").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        word, _, rest = raw.strip().partition(" ")
        if word == "FROM":
            stages.append({})
        stages[-1].setdefault(word, []).append(rest.strip())
    return stages


def test_container_and_compose_run_the_tested_command():
    stages = dockerfile_stages((ROOT / "Dockerfile").read_text())
    assert stages[0]["FROM"] == ["python:3.11-slim AS base"]
    assert "bin/doorman-run /usr/local/bin/doorman-run" in stages[0]["COPY"]
    assert any(r.startswith("pip install .") for r in stages[0]["RUN"])
    assert stages[0]["USER"][-1].split(":")[0] not in ("root", "0")
    assert stages[-1]["CMD"] == ['["doorman-run"]']  # the default target: the daemon

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(services) == {"redis", "worker", "doorman", "serve", "simulate"}
    assert services["doorman"]["command"] == ["doorman-run"]
    assert services["doorman"]["mem_limit"] == "128m"
    assert "doorman.demoapp" in services["worker"]["command"]
    assert services["simulate"]["profiles"] == ["simulate"]
    assert services["simulate"]["command"][0] == "doorman-simulate"
    assert RUN.stat().st_mode & 0o111


def run_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_URL", "CELERY_BROKER", "DOORMAN_", "SLACK_", "PAGERDUTY_", "GENERIC_"))}
    env.update(PATH=f"{BIN}:/usr/bin:/bin", HOME=str(tmp_path), REDIS_URL=url,
               DOORMAN_STATE_DIR=str(tmp_path / "state"), **extra)
    return env


@pytest.mark.e2e
def test_doorman_run_delivers_alerts_end_to_end(redis_server, tmp_path):
    enqueue(redis_server.url, 5)
    result = subprocess.run([str(RUN)], capture_output=True, timeout=60,
                            env=run_env(tmp_path, redis_server.url, DOORMAN_COUNT="2", DOORMAN_INTERVAL="0.5",
                                        DOORMAN_DRY_RUN="1"))
    assert result.returncode == 0, result.stderr.decode()
    deliveries = records(result.stdout)
    assert {d["kind"] for d in deliveries} == {"delivery"}
    assert {d["result"] for d in deliveries} <= {"dry_run", "skipped"}
    [webhook] = [d for d in deliveries if d["destination"] == "webhook"]
    assert webhook["result"] == "dry_run"
    assert (webhook["payload"]["alert_type"], webhook["payload"]["severity"]) == ("workers_down", "emergency")
    assert (tmp_path / "state" / "state.json").exists()


def children(pid: int) -> dict[int, str]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
    return out


def start_daemon(tmp_path: Path, url: str) -> tuple[subprocess.Popen, dict[int, str]]:
    proc = subprocess.Popen([str(RUN)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=run_env(tmp_path, url, DOORMAN_INTERVAL="0.5", DOORMAN_DRY_RUN="1"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        kids = {p: c for p, c in children(proc.pid).items() if "doorman-" in c}
        if len(kids) == 3:
            return proc, kids
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"stages did not start: {children(proc.pid)}")


def alive(pids) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists()
            and (Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")]


@pytest.mark.e2e
def test_doorman_run_on_sigterm_drains_and_exits_zero(redis_server, tmp_path):
    proc, kids = start_daemon(tmp_path, redis_server.url)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0, proc.stderr.read().decode()
    time.sleep(0.2)
    assert alive(kids) == []


@pytest.mark.e2e
def test_doorman_run_ends_when_a_stage_dies_with_its_status(redis_server, tmp_path):
    proc, kids = start_daemon(tmp_path, redis_server.url)
    [notify] = [p for p, c in kids.items() if "doorman-notify" in c]
    os.kill(notify, signal.SIGKILL)
    assert proc.wait(15) == 128 + signal.SIGKILL  # pipefail: the failed stage's status
    assert b"doorman-notify exited with status 137" in proc.stderr.read()
    time.sleep(0.2)
    assert alive(kids) == []


@pytest.mark.e2e
def test_doorman_run_bad_config_exits_2(redis_server, tmp_path):
    result = subprocess.run([str(RUN)], capture_output=True, timeout=30,
                            env=run_env(tmp_path, redis_server.url, SLACK_WEBHOOK_URL="ftp://x"))
    assert result.returncode == 2
    assert b"SLACK_WEBHOOK_URL: must be an http:// or https:// URL" in result.stderr


@pytest.mark.e2e
def test_doorman_run_stopped_while_starting_exits_and_leaves_nothing(redis_server, tmp_path):
    """A SIGTERM that lands while the stages start (systemd stop right after start) must neither
    orphan a stage nor leave one blocked in open() on a FIFO."""
    for delay in (0.0, 0.02, 0.1, 0.3):
        proc = subprocess.Popen([str(RUN)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=run_env(tmp_path, redis_server.url, DOORMAN_INTERVAL="0.5", DOORMAN_DRY_RUN="1"))
        time.sleep(delay)
        kids = {p: c for p, c in children(proc.pid).items()}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        # 0, or killed outright when the signal beat the script's own trap (nothing started yet)
        assert proc.returncode in (0, -signal.SIGTERM), err.decode()
        time.sleep(0.2)
        assert alive(kids) == []
        assert not [c for c in children(proc.pid).values() if "doorman-" in c]
