"""The seed scenarios end to end: a real redis-server, real Celery workers (or none), real
`doorman-collect --once | doorman-analyze` through an OS pipe, exact alerts out."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.support.process import BIN, cli, free_port, records
from tests.support.workers import celery_app, enqueue

pytestmark = pytest.mark.e2e


def pipeline(url: str, *analyze_args: str, env: dict[str, str] | None = None) -> tuple[list[dict], bytes]:
    """`doorman-collect --once --redis-url URL | doorman-analyze ARGS`; (alerts, analyze's stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_BROKER"))}
    full_env.update(env or {})
    collect = subprocess.Popen([str(BIN / "doorman-collect"), "--once", "--redis-url", url], env=full_env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    analyze = subprocess.run([str(BIN / "doorman-analyze"), *analyze_args], stdin=collect.stdout,
                             capture_output=True, env=full_env, timeout=60)
    collect.stdout.close()
    collect.wait(30)
    assert analyze.returncode == 0, analyze.stderr
    return records(analyze.stdout), analyze.stderr


def brief(alerts: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(a["alert_type"], a["severity"], a["status"], a["subject"]) for a in alerts]


def test_no_worker_and_empty_queues_is_celery_disconnected(redis_server):
    alerts, _ = pipeline(redis_server.url)
    assert brief(alerts) == [("celery_disconnected", "warning", "firing", "cluster")]


def test_no_worker_and_five_pending_is_workers_down(redis_server):
    enqueue(redis_server.url, 5)
    alerts, _ = pipeline(redis_server.url)
    assert brief(alerts) == [("workers_down", "emergency", "firing", "cluster")]
    assert alerts[0]["message"] == "No workers responding but 5 tasks are pending!"
    assert alerts[0]["details"]["queues"] == {"celery": 5}


def test_backlog_over_max_queue_size(redis_server, workers):
    workers(redis_server.url, "w1@test", client=redis_server.client(), queues="other")
    enqueue(redis_server.url, 20)
    alerts, _ = pipeline(redis_server.url, env={"MAX_QUEUE_SIZE": "10"})
    assert brief(alerts) == [("backlog_explosion", "critical", "firing", "cluster")]
    d = alerts[0]["details"]
    assert d["total_pending"] == 20 and d["threshold"] == 10 and d["queues"]["celery"] == 20


def test_zombie_task(redis_server, workers, tmp_path):
    url = redis_server.url
    workers(url, "w1@test", client=redis_server.client())
    [task_id] = enqueue(url, 1, args=(30,))
    conf = tmp_path / "doorman.yaml"
    conf.write_text("thresholds:\n  max_task_runtime_seconds: 1\n")
    deadline = time.monotonic() + 20
    alerts: list[dict] = []
    while time.monotonic() < deadline and not alerts:
        alerts, _ = pipeline(url, "--config", str(conf))
        time.sleep(0.3)
    assert brief(alerts) == [("zombie_tasks", "warning", "firing", "cluster")]
    [t] = alerts[0]["details"]["tasks"]
    assert t["task_id"] == task_id and t["task_name"] == "demo.sleep" and t["worker"] == "w1@test"
    assert t["runtime_seconds"] > 1


def test_latency_in_a_critical_queue_nobody_consumes(redis_server, workers, tmp_path):
    url = redis_server.url
    workers(url, "w1@test", client=redis_server.client(), queues="other")
    # 3 s, not 1: the first check's own start (a second app's publish, the pipeline's processes) on a
    # loaded machine must not age the stamped task past the limit before it runs
    env = {"MONITORED_QUEUES": "celery,urgent,plain", "CRITICAL_QUEUES": "urgent", "MAX_WAIT_TIME": "3"}
    [stamped] = enqueue(url, 1, queue="urgent")  # carries Doorman's publish stamp
    app = celery_app(url, stamp=False)
    plain = app.send_task("demo.sleep", args=(1,), queue="plain").id
    state = str(tmp_path / "state.json")
    first, _ = pipeline(url, "--state", state, env=env)
    assert first == []  # stamped age still under 3 s; the plain head was only just seen
    time.sleep(3.3)
    alerts, _ = pipeline(url, "--state", state, env=env)
    alerts.sort(key=lambda a: a["subject"])
    assert brief(alerts) == [("high_latency", "warning", "firing", "queue:plain"),
                             ("high_latency", "critical", "firing", "queue:urgent")]
    p, u = alerts[0]["details"], alerts[1]["details"]
    assert u["task_id"] == stamped and u["age_source"] == "published_header" and u["estimated"] is False
    assert u["age_seconds"] > 3
    assert p["task_id"] == plain and p["age_source"] == "head_first_seen" and p["estimated"] is True
    assert p["age_seconds"] > 3


def test_broker_down_is_redis_down():
    alerts, _ = pipeline(f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    assert brief(alerts) == [("redis_down", "emergency", "firing", "cluster")]
    assert "s3cret" not in str(alerts)
    assert alerts[0]["details"]["broker"].startswith("redis://:***@127.0.0.1:")


def test_check_mode_on_a_real_pipeline(redis_server):
    enqueue(redis_server.url, 5)
    collect = cli("doorman-collect", "--once", "--redis-url", redis_server.url)
    r = cli("doorman-analyze", "--check", input=collect.stdout)
    assert r.returncode == 2
    assert r.stdout.decode().startswith("DOORMAN CRITICAL - No workers responding but 5 tasks are pending! | "
                                        "pending=5;;1000;0 workers=0;;;0")


def test_worker_killed_while_another_runs_is_worker_lost(redis_server, workers, tmp_path):
    url, client = redis_server.url, redis_server.client()
    w1 = workers(url, "w1@test", queues="other")
    w2 = workers(url, "w2@test", queues="other")
    w1.wait_ready(client)
    w2.wait_ready(client)
    state = str(tmp_path / "state.json")
    assert pipeline(url, "--state", state)[0] == []
    w2.kill9()  # its pidbox binding stays behind: it shows as alive: false
    alerts, _ = pipeline(url, "--state", state)
    assert brief(alerts) == [("worker_lost", "warning", "firing", "worker:w2@test")]
    assert alerts[0]["details"]["binding_present"] is True and alerts[0]["details"]["alive_workers"] == 1
