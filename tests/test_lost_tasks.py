"""Tasks lost in silence (issue 13), each reproduced with real parts: a redis-server the test starts
(with `maxmemory 2mb` where memory matters), real Celery workers with `acks_late` and a short
visibility timeout, a real `celery beat` with RedBeat, killed — and the real
`doorman-collect | doorman-analyze` pipeline, with exact alerts out."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from doorman.simulate.lost_tasks import fill
from tests.support.process import BIN, ROOT, cli, records, wait_for
from tests.support.workers import enqueue


def brief(alerts: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((a["alert_type"], a["severity"], a["status"]) for a in alerts)


def once(url: str, conf: Path, state: Path) -> tuple[dict, list[dict]]:
    """One cron run: `doorman-collect --once | doorman-analyze --state`; (snapshot, alerts)."""
    got = cli("doorman-collect", "--once", "--redis-url", url, "--config", str(conf))
    assert got.returncode == 0, got.stderr
    [snap] = records(got.stdout)
    out = cli("doorman-analyze", "--config", str(conf), "--state", str(state), input=got.stdout)
    assert out.returncode == 0, out.stderr
    return snap, records(out.stdout)


class Stream:
    """`doorman-collect --interval S | doorman-analyze` running; alerts gathered as they come."""

    def __init__(self, url: str, conf: Path, interval: float):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_BROKER"))}
        self.collect = subprocess.Popen(
            [str(BIN / "doorman-collect"), "--redis-url", url, "--config", str(conf), "--interval", str(interval)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.analyze = subprocess.Popen([str(BIN / "doorman-analyze"), "--config", str(conf)],
                                        stdin=self.collect.stdout, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env)
        self.collect.stdout.close()
        self.alerts: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.analyze.stdout:
            self.alerts.extend(records(line))

    def first(self, alert_type: str, severity: str | None = None) -> dict | None:
        return next((a for a in self.alerts if a["alert_type"] == alert_type
                     and (severity is None or a["severity"] == severity)), None)

    def stop(self) -> None:
        for p in (self.collect, self.analyze):
            if p.poll() is None:
                p.terminate()
                p.wait(10)


@pytest.fixture
def conf(tmp_path):
    def write(text: str) -> Path:
        path = tmp_path / "doorman.yaml"
        path.write_text(text)
        return path
    return write


# ---------------------------------------------------------------- redelivery, stranded messages

ACKS_LATE = {"DOORMAN_DEMO_ACKS_LATE": "1", "DOORMAN_DEMO_VISIBILITY_TIMEOUT": "6"}


@pytest.mark.e2e
def test_acks_late_task_runs_twice_and_the_alert_comes_before_the_second_run(redis_server, workers, conf, tmp_path):
    url, client = redis_server.url, redis_server.client()
    workers(url, "w1@test", client=client, env=ACKS_LATE)
    workers(url, "w2@test", client=client, env=ACKS_LATE)
    marks = tmp_path / "runs.txt"
    [task_id] = enqueue(url, 1, task="demo.mark", args=(str(marks), 20))
    stream = Stream(url, conf("broker_transport_options:\n  visibility_timeout: 6\n"), interval=0.5)
    try:
        runs = wait_for(lambda: marks.exists() and len(lines := marks.read_text().split("\n")[:-1]) >= 2 and lines,
                        30, "the task's second run")
        wait_for(lambda: stream.first("redelivery_risk"), 5, "redelivery_risk")
    finally:
        stream.stop()
    (first_id, first_at), (second_id, second_at) = [(x.split()[0], float(x.split()[1])) for x in runs[:2]]
    assert first_id == second_id == task_id  # really ran twice
    warning = stream.first("redelivery_risk", "warning")
    assert warning is not None, stream.alerts
    from doorman.timefmt import parse_iso
    assert parse_iso(warning["ts"]) < second_at, (warning["ts"], second_at)  # the page came first
    assert first_at + 6 <= second_at + 0.5
    assert warning["details"]["tasks"][0]["task_id"] == task_id
    assert warning["details"]["tasks"][0]["task_name"] == "demo.mark"
    assert task_id in warning["message"] and warning["details"]["visibility_timeout"] == 6
    assert {a["alert_type"] for a in stream.alerts} <= {"redelivery_risk"}


@pytest.mark.e2e
def test_unacked_stranded_pages_even_while_workers_down_fires(redis_server, workers, conf, tmp_path):
    url, client = redis_server.url, redis_server.client()
    w = workers(url, "w1@test", client=client, env={**ACKS_LATE, "DOORMAN_DEMO_VISIBILITY_TIMEOUT": "2"})
    marks = tmp_path / "runs.txt"
    [task_id] = enqueue(url, 1, task="demo.mark", args=(str(marks), 30))
    wait_for(marks.exists, 20, "the task to start")
    w.kill9()  # the only worker: nothing will restore the unacked message
    enqueue(url, 2, task="demo.add", args=(1, 2))
    time.sleep(2.5)
    snap, alerts = once(url, conf("broker_transport_options:\n  visibility_timeout: 2\n"), tmp_path / "state.json")
    assert snap["unacked"]["count"] == 1 and snap["unacked"]["overdue"] == 1
    assert brief(alerts) == [("unacked_stranded", "critical", "firing"), ("workers_down", "emergency", "firing")]
    [stranded] = [a for a in alerts if a["alert_type"] == "unacked_stranded"]
    assert stranded["details"]["count"] == 1 and stranded["details"]["oldest_age_seconds"] > 2
    assert stranded["details"]["tasks"] == [{"task_id": task_id, "task_name": "demo.mark",
                                             "age_seconds": stranded["details"]["tasks"][0]["age_seconds"]}]


# ---------------------------------------------------------------- memory, eviction, OOM


@pytest.mark.e2e
def test_allkeys_lru_really_evicts_and_doorman_says_so(make_redis, conf, tmp_path):
    server = make_redis(extra=["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"])
    client = server.client()
    cfg, state = conf("alert_cooldown_seconds: 3600\n"), tmp_path / "state.json"
    snap, alerts = once(server.url, cfg, state)
    assert snap["broker_health"]["eviction_policy"] == "allkeys-lru"
    assert snap["broker_health"]["max_memory_bytes"] == 2 * 1024 * 1024
    assert brief(alerts) == [("broker_eviction_policy", "warning", "firing"), ("celery_disconnected", "warning", "firing")]
    assert "noeviction" in alerts[0]["message"] + alerts[1]["message"]

    assert fill(server.url) == 4000  # never refused: Redis evicts instead
    snap, alerts = once(server.url, cfg, state)
    evicted = snap["broker_health"]["evicted_keys"]
    assert evicted > 0 and client.dbsize() < 4000
    assert brief(alerts) == [("broker_evicting", "critical", "firing"), ("broker_memory_high", "critical", "firing")]
    [ev] = [a for a in alerts if a["alert_type"] == "broker_evicting"]
    assert ev["details"]["new"] == evicted and ev["details"]["eviction_policy"] == "allkeys-lru"


@pytest.mark.e2e
def test_noeviction_full_broker_refuses_publishes_and_is_broker_oom_not_redis_down(make_redis, workers, conf, tmp_path):
    # 3 MiB: room for the clients of a --once run (the worker, the inspect replies) under the 90% memory threshold
    server = make_redis(extra=["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"])
    client = server.client()
    workers(server.url, "w1@test", client=client, queues="celery,emails")
    enqueue(server.url, 3, task="demo.add", args=(1, 2), queue="waiting")
    cfg, state = conf("alert_cooldown_seconds: 3600\n"), tmp_path / "state.json"
    _, alerts = once(server.url, cfg, state)
    assert alerts == []

    assert fill(server.url) < 4000
    # keep it full whatever the clients' buffers do meanwhile (the test's CONFIG, never Doorman's)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"] * 0.9))
    with pytest.raises(Exception, match="maxmemory"):  # a real publish fails: the task never exists
        enqueue(server.url, 1, task="demo.add", args=(1, 2))
    snap, alerts = once(server.url, cfg, state)
    assert snap["redis_connected"] is True and snap["error"] is None
    assert "maxmemory" in snap["inspect_error"]
    assert snap["queues"]["waiting"]["pending"] == 3 and snap["queues"]["emails"]["source"] == "binding"
    assert [(w["name"], w["alive"]) for w in snap["workers"]] == [("w1@test", None)]  # unknown, not dead
    assert snap["broker_health"]["oom_errors"] >= 2
    assert brief(alerts) == [("broker_memory_high", "critical", "firing"), ("broker_oom", "emergency", "firing")]
    [oom] = [a for a in alerts if a["alert_type"] == "broker_oom"]
    assert "publishing tasks fails now" in oom["message"]
    assert client.keys("*reply.celery.pidbox*") == []  # nothing of Doorman's left behind

    client.delete(*client.keys("filler:*"))  # memory freed: the check works again, the worker answers
    client.config_set("maxmemory", "3mb")
    snap, alerts = once(server.url, cfg, state)
    assert snap["inspect_error"] is None and [w["alive"] for w in snap["workers"]] == [True]
    assert not {a["alert_type"] for a in alerts} & {"redis_down", "workers_down", "worker_lost"}


# ---------------------------------------------------------------- results without expiry


@pytest.mark.slow
def test_results_without_expiry_growing(redis_server, conf):
    client = redis_server.client()
    cfg = conf("thresholds:\n  results_growth_window_seconds: 4\n  results_growth_min_keys: 50\n"
               "  backlog_growth_min_samples: 4\n")
    stop = threading.Event()

    def results() -> None:  # a result backend with result_expires off: celery-task-meta-* without TTL
        i = 0
        while not stop.is_set():
            client.set(f"celery-task-meta-{i}", b'{"status": "SUCCESS"}')
            client.set(f"celery-task-meta-x{i}", b'{"status": "SUCCESS"}', ex=3600)  # these expire: not counted
            i += 1
            time.sleep(0.02)

    threading.Thread(target=results, daemon=True).start()
    stream = Stream(redis_server.url, cfg, interval=0.35)
    try:
        got = wait_for(lambda: stream.first("results_growing"), 20, "results_growing")
    finally:
        stop.set()
        stream.stop()
    assert got["severity"] == "warning" and got["details"]["grown"] >= 50
    assert got["details"]["per_db"]["db0"] == got["details"]["keys_without_expiry"]
    assert "result_expires" in got["message"]


# ---------------------------------------------------------------- celery beat


def beat_process(url: str, workdir: Path, every: float) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": url, "DOORMAN_DEMO_BEAT_EVERY": str(every),
           "DOORMAN_BEAT_CANARY_KEY": "doorman:beat:canary"}
    log = open(workdir / "beat.log", "wb")  # noqa: SIM115 - kept open for the process's life
    return subprocess.Popen([str(BIN / "celery"), "-A", "doorman.demoapp", "beat", "-S", "redbeat.RedBeatScheduler",
                             "-l", "INFO", "-s", str(workdir / "beat-schedule")], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.e2e
def test_a_killed_celery_beat_is_beat_down(redis_server, workers, conf, tmp_path):
    url, client = redis_server.url, redis_server.client()
    workers(url, "w1@test", client=client, env={"DOORMAN_BEAT_CANARY_KEY": "doorman:beat:canary"})
    beat = beat_process(url, tmp_path, every=1)
    try:
        wait_for(lambda: client.get("doorman:beat:canary") and client.exists("redbeat::lock"), 40,
                 f"beat running and the canary written: {(tmp_path / 'beat.log').read_text()[-1500:]}")
        cfg = conf("beat:\n  canary_key: doorman:beat:canary\n  canary_max_age_seconds: 4\n  grace_seconds: 3\n")
        state = tmp_path / "state.json"
        snap, alerts = once(url, cfg, state)
        assert snap["beat"]["redbeat"]["lock_present"] is True and snap["beat"]["redbeat"]["entries"] >= 1
        assert snap["beat"]["canary"]["present"] is True and snap["beat"]["canary"]["age_seconds"] < 4
        assert alerts == []

        os.killpg(beat.pid, signal.SIGKILL)  # a crash: RedBeat's lock is left to lapse (3 s here)
        beat.wait()
        time.sleep(5)
        snap, alerts = once(url, cfg, state)
        assert snap["beat"]["redbeat"]["lock_present"] is False and snap["beat"]["canary"]["age_seconds"] > 4
        assert brief(alerts) == [("beat_down", "critical", "firing")]  # beat_missed is held back by it
        assert "canary is" in alerts[0]["message"] and "RedBeat's lock is gone" in alerts[0]["message"]
        assert snap["beat"]["redbeat"]["late_count"] >= 1  # the schedule is overdue too
    finally:
        if beat.poll() is None:
            os.killpg(beat.pid, signal.SIGKILL)
            beat.wait()
    client.delete("doorman:beat:canary")  # only the test's own keys; Doorman wrote none


@pytest.mark.slow
def test_canary_alone_missing_is_beat_down(redis_server, conf, tmp_path):
    cfg = conf("beat:\n  canary_key: my:canary\n  canary_max_age_seconds: 60\n")
    _, alerts = once(redis_server.url, cfg, tmp_path / "state.json")
    assert [(a["alert_type"], a["severity"]) for a in alerts if a["alert_type"].startswith("beat")] == \
        [("beat_down", "critical")]
    redis_server.client().set("my:canary", int(time.time()))
    _, alerts = once(redis_server.url, cfg, tmp_path / "state.json")
    assert ("beat_down", "critical", "resolved") in brief(alerts)



@pytest.mark.e2e
@pytest.mark.parametrize("name", ["oom", "stranded"])
def test_simulate_scenario_stages_it_and_gets_its_alert(name):
    from tests.support.process import free_port

    got = cli("doorman-simulate", "--scenario", name, "--port", str(free_port()), "--interval", "0.5", timeout=120)
    assert got.returncode == 0, got.stderr.decode()[-2000:]
    alerts = records(got.stdout)
    expected = {"oom": "broker_oom", "stranded": "unacked_stranded"}[name]
    assert expected in {a["alert_type"] for a in alerts} and "redis_down" not in {a["alert_type"] for a in alerts}
    assert b"the expected alert came" in got.stderr
