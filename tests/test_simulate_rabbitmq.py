"""`doorman-simulate --broker rabbitmq`: every seed scenario against the machine's RabbitMQ, in a
throw-away vhost, with the exact alerts Redis gives (docs/simulate.md), and nothing left after."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.process import BIN, records
from tests.support.rabbit import require_rabbitmq

pytestmark = pytest.mark.e2e

SIM = str(BIN / "doorman-simulate")


def vhosts() -> set[str]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_vhosts", "name"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return {line.strip() for line in out.splitlines()}


def leftovers(vhost: str) -> list[str]:
    """Live processes whose broker URL names this run's vhost (workers, stages)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            if any(e.startswith(b"REDIS_URL=amqp://") and e.endswith(vhost.encode()) for e in env):
                if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(d.name)
        except (OSError, IndexError):
            continue
    return found


def simulate(*args: str) -> tuple[list[tuple[str, str, str]], str]:
    require_rabbitmq()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("REDIS_URL", "CELERY_BROKER", "MAX_", "CRITICAL_", "MONITORED_", "DOORMAN_"))}
    result = subprocess.run([SIM, "--broker", "rabbitmq", "--interval", "1", "--json", *args], capture_output=True,
                            env=base, timeout=120)
    talk = result.stderr.decode()
    assert result.returncode == 0, talk
    [vhost] = re.findall(r"RabbitMQ: vhost (doorman-simulate-[0-9a-f]+) on the local RabbitMQ", talk)
    assert vhost not in vhosts(), "the throw-away vhost was not deleted"
    assert leftovers(vhost) == []
    out = records(result.stdout)
    return [(a["alert_type"], a["severity"], a["status"]) for a in out], talk


@pytest.mark.parametrize("args,alerts", [
    (["--workers", "1", "--checks", "2"], []),
    (["--workers", "0", "--checks", "2"], [("celery_disconnected", "warning", "firing")]),
    (["--workers", "0", "--enqueue", "5", "--checks", "2"], [("workers_down", "emergency", "firing")]),
    # 40, not Redis's 20: the vhost's set-up and the management API's settling give the worker time to
    # drain, and 20 left only 11-15 waiting against the threshold of 10
    (["--workers", "1", "--enqueue", "40", "--checks", "2"], [("backlog_explosion", "critical", "firing")]),
    (["--workers", "1", "--zombie", "--checks", "3"], [("zombie_tasks", "warning", "firing")]),
    (["--workers", "1", "--critical-queue", "payments", "--enqueue", "3", "--checks", "3"],
     [("high_latency", "critical", "firing")]),
    (["--workers", "1", "--stop-redis-after", "0.2", "--checks", "3"], [("redis_down", "emergency", "firing")]),
], ids=["idle", "no-worker", "no-worker-5-tasks", "backlog", "zombie", "critical-latency", "broker-gone"])
def test_seed_scenarios_give_the_same_alerts_on_rabbitmq(args, alerts):
    got, _ = simulate(*args)
    assert got == alerts


def test_a_worker_killed_part_way_is_lost_on_rabbitmq():
    got, talk = simulate("--workers", "2", "--kill-after", "0.3", "--checks", "6")
    assert ("worker_lost", "warning", "firing") in got, talk
    assert all(a[0] == "worker_lost" for a in got)


def test_without_a_rabbitmq_on_the_port_it_starts_a_private_node_and_stops_it():
    import glob
    import socket

    from tests.support.process import free_port

    require_rabbitmq()  # rabbitmq-server must be installed; the machine's own node is left alone
    port = free_port()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("REDIS_URL", "CELERY_BROKER", "MAX_", "CRITICAL_", "MONITORED_", "DOORMAN_"))}
    before = set(glob.glob("/tmp/doorman-simulate-rabbitmq-*"))
    result = subprocess.run([SIM, "--broker", "rabbitmq", "--port", str(port), "--workers", "0", "--enqueue", "5",
                             "--checks", "1", "--json"], capture_output=True, env=base, timeout=180)
    talk = result.stderr.decode()
    assert result.returncode == 0, talk
    assert re.search(rf"on a private rabbitmq-server \(pid \d+\) at 127.0.0.1:{port}", talk), talk
    assert [(a["alert_type"], a["severity"]) for a in records(result.stdout)] == [("workers_down", "emergency")]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the private node still listens"
    assert [d for d in set(glob.glob("/tmp/doorman-simulate-rabbitmq-*")) - before if mine(Path(d), port)] == []


def mine(data_dir: Path, port: int) -> bool:
    """Whether a private node's data directory is this run's (another run's may come and go)."""
    try:
        return f"127.0.0.1:{port}\n" in (data_dir / "rabbitmq.conf").read_text()
    except OSError:
        return True  # no config left in it: a directory half deleted, which is left behind too
