"""doorman-simulate end to end: its own redis-server, real workers, the real three-stage pipeline.

Each scenario asserts the exact alerts (type, severity) from `--json`, and that nothing the run
started is left: no listener on its port, no process whose environment points at its broker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from doorman.simulate.scenario import Options, plan
from tests.support.process import BIN, free_port, records
from tests.support.simulate import assert_all_gone, leftovers

SIM = str(BIN / "doorman-simulate")


def simulate(*args: str, json: bool = True, env: dict[str, str] | None = None,
             timeout: float = 60) -> tuple[subprocess.CompletedProcess, int]:
    port = free_port()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("REDIS_URL", "CELERY_BROKER", "MAX_", "CRITICAL_", "MONITORED_", "DOORMAN_"))}
    argv = [SIM, "--port", str(port), "--interval", "1", *(["--json"] if json else []), *args]
    result = subprocess.run(argv, capture_output=True, env={**base, **(env or {})}, timeout=timeout)
    assert_all_gone(port)
    return result, port


def alerts_of(result: subprocess.CompletedProcess) -> list[tuple[str, str, str]]:
    assert result.returncode == 0, result.stderr.decode()
    out = records(result.stdout)
    assert all(a["kind"] == "alert" for a in out)
    return [(a["alert_type"], a["severity"], a["status"]) for a in out]


@pytest.mark.e2e
def test_one_idle_worker_gives_no_alert_and_a_human_view():
    result, _ = simulate("--workers", "1", "--checks", "2", json=False)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "--- Health Check #1 ---" in out and "--- Health Check #2 ---" in out
    assert "Alive workers:  1/1" in out
    assert not [line for line in out.splitlines() if line.startswith("{")]


@pytest.mark.e2e
def test_no_worker_and_empty_queues_is_a_warning():
    result, _ = simulate("--workers", "0", "--checks", "2")
    assert alerts_of(result) == [("celery_disconnected", "warning", "firing")]


@pytest.mark.e2e
def test_no_worker_with_five_tasks_is_an_emergency():
    result, port = simulate("--workers", "0", "--enqueue", "5", "--checks", "2")
    assert alerts_of(result) == [("workers_down", "emergency", "firing")]
    [alert] = records(result.stdout)
    assert alert["details"]["pending_tasks"] == 5
    assert alert["cluster"] == "simulation"
    assert "Pending tasks:  5" in result.stderr.decode()


@pytest.mark.e2e
def test_one_worker_twenty_slow_tasks_is_a_backlog_explosion():
    result, _ = simulate("--workers", "1", "--enqueue", "20", "--checks", "2")
    assert alerts_of(result) == [("backlog_explosion", "critical", "firing")]
    [alert] = records(result.stdout)
    assert alert["details"]["threshold"] == 10
    assert alert["details"]["total_pending"] > 10


@pytest.mark.e2e
def test_a_hung_task_is_a_zombie():
    result, _ = simulate("--workers", "1", "--zombie", "--checks", "3")
    assert alerts_of(result) == [("zombie_tasks", "warning", "firing")]
    [alert] = records(result.stdout)
    assert alert["details"]["tasks"][0]["task_name"] == "demo.sleep"


@pytest.mark.e2e
def test_a_worker_killed_part_way_is_lost():
    # --checks 4: the workers' first heartbeats may add checks of their own right after the first
    result, _ = simulate("--workers", "2", "--kill-after", "0.3", "--checks", "4")
    assert alerts_of(result) == [("worker_lost", "warning", "firing")]
    [alert] = records(result.stdout)
    assert alert["subject"].startswith("worker:sim2@")
    assert "kill -9 worker sim2@" in result.stderr.decode()


@pytest.mark.e2e
def test_a_waiting_critical_queue_is_critical_latency():
    result, _ = simulate("--workers", "1", "--critical-queue", "payments", "--enqueue", "3", "--checks", "3")
    assert alerts_of(result) == [("high_latency", "critical", "firing")]
    [alert] = records(result.stdout)
    assert alert["subject"] == "queue:payments"


@pytest.mark.e2e
def test_broker_stopped_part_way_is_redis_down():
    result, _ = simulate("--workers", "1", "--stop-redis-after", "0.2", "--checks", "3")
    assert alerts_of(result) == [("redis_down", "emergency", "firing")]


@pytest.mark.e2e
def test_command_mode_runs_against_the_broker_and_returns_its_exit_code():
    result, port = simulate("--workers", "0", "--enqueue", "5", "--",
                            "sh", "-c", "doorman-collect --once && exit 7", json=False)
    assert result.returncode == 7, result.stderr.decode()
    [snap] = records(result.stdout)
    assert snap["pending_tasks"] == 5
    assert snap["broker"] == f"redis://127.0.0.1:{port}/0"


@pytest.mark.e2e
def test_sigterm_tears_everything_down():
    port = free_port()
    proc = subprocess.Popen([SIM, "--port", str(port), "--workers", "1", "--forever", "--json", "--interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = b""
        while b"Health Check #1" not in seen:
            line = proc.stderr.readline()
            assert line, f"simulate ended early: {seen.decode()}"
            seen += line
        assert leftovers(port), "expected the run's processes to be up"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_all_gone(port)


@pytest.mark.e2e
def test_sigint_during_start_up_tears_down_what_was_started():
    """Ctrl-C while the workers are still starting: the stop is taken by the wakeup pipe's watcher
    and the start-up's wait ends at once; every process and the redis-server go."""
    port = free_port()
    proc = subprocess.Popen([SIM, "--port", str(port), "--workers", "2", "--forever", "--json", "--interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = b""
        while f"redis-server on 127.0.0.1:{port}".encode() not in seen:
            line = proc.stderr.readline()
            assert line, f"simulate ended early: {seen.decode()}"
            seen += line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 128 + signal.SIGINT
        assert b"SIGINT: stopping everything" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_all_gone(port)


@pytest.mark.e2e
def test_sigterm_in_command_mode_ends_the_command_and_the_run():
    port = free_port()
    proc = subprocess.Popen([SIM, "--port", str(port), "--workers", "0", "--", "sleep", "600"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = b""
        while b"running with REDIS_URL" not in seen:
            line = proc.stderr.readline()
            assert line, f"simulate ended early: {seen.decode()}"
            seen += line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_all_gone(port)


def test_a_taken_port_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run([SIM, "--port", str(port), "--workers", "0"], capture_output=True, timeout=30)
    assert result.returncode == 2
    assert f"port {port} is already in use" in result.stderr.decode()
    assert result.stdout == b""
    assert leftovers(port) == []


def test_missing_redis_server_says_how_to_install_it(tmp_path):
    result = subprocess.run([SIM, "--port", str(free_port())], capture_output=True, timeout=30,
                            env={**os.environ, "PATH": str(tmp_path)})
    assert result.returncode == 2
    err = result.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "sudo apt-get install redis-server" in err[0] and "make install" in err[0]


@pytest.mark.parametrize("args, message", [
    (["--workers", "0", "--zombie"], "--zombie needs a worker"),
    (["--workers", "0", "--kill-after", "1"], "--kill-after needs a worker"),
])
def test_impossible_scenarios_are_usage_errors(args, message):
    result = subprocess.run([SIM, *args], capture_output=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr.decode()


def test_demo_settings_never_override_the_users():
    opts = Options(critical_queue="payments", zombie=True)
    assert plan(opts, {}, {}).settings == {
        "MAX_QUEUE_SIZE": "10", "DOORMAN_CLUSTER": "simulation", "MAX_TASK_RUNTIME": "1.0",
        "CRITICAL_QUEUES": "payments", "MAX_WAIT_TIME": "1.0", "MONITORED_QUEUES": "celery,payments"}
    mine = plan(opts, {"MAX_QUEUE_SIZE": "500"},
                {"cluster": "prod", "thresholds": {"max_wait_time_seconds": 30, "critical_queues": ["x"]}})
    assert mine.settings == {"MAX_TASK_RUNTIME": "1.0", "MONITORED_QUEUES": "celery,payments"}
    assert [(t.name, t.args, t.queue) for t in mine.tasks] == [("demo.sleep", (3600.0,), "celery"),
                                                               ("demo.sleep", (2.0,), "payments")]
