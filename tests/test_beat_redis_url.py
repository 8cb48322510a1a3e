"""celery beat on a RabbitMQ broker (`beat.redis_url`): RedBeat and the canary keep their keys in a
Redis of their own, and Doorman reads them there. Real parts: a throw-away RabbitMQ vhost as the
broker, a redis-server this test starts (with a password) for beat, a real Celery worker running the
canary task, a real `celery beat` with RedBeat, kill -9ed, and the real `doorman-collect --once |
doorman-analyze` pipeline."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.process import BIN, ROOT, cli, records, wait_for
from tests.support.rabbit import vhost_fixture, wait_listening  # noqa: F401 - the fixture `vhost`

pytestmark = pytest.mark.e2e

CANARY = "doorman:beat:canary"
PASSWORD = "beat-Secret-9f2c"


def once(url: str, conf: Path, state: Path) -> tuple[dict, list[dict], bytes]:
    """One cron run: `doorman-collect --once | doorman-analyze --state`; (snapshot, alerts, all output)."""
    got = cli("doorman-collect", "--once", "--redis-url", url, "--config", str(conf))
    assert got.returncode == 0, got.stderr
    [snap] = records(got.stdout)
    out = cli("doorman-analyze", "--config", str(conf), "--state", str(state), input=got.stdout)
    assert out.returncode == 0, out.stderr
    return snap, records(out.stdout), got.stdout + got.stderr + out.stdout + out.stderr


def beat_process(broker: str, beat_redis: str, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": broker, "DOORMAN_DEMO_BEAT_EVERY": "1",
           "DOORMAN_DEMO_BEAT_REDIS_URL": beat_redis, "DOORMAN_BEAT_CANARY_KEY": CANARY}
    log = open(workdir / "beat.log", "wb")  # noqa: SIM115 - kept open for the process's life
    return subprocess.Popen([str(BIN / "celery"), "-A", "doorman.demoapp", "beat", "-S", "redbeat.RedBeatScheduler",
                             "-l", "INFO", "-s", str(workdir / "beat-schedule")], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_a_killed_celery_beat_is_beat_down_on_rabbitmq(vhost, make_redis, workers, tmp_path):
    broker = vhost.url()
    beat_redis = make_redis(password=PASSWORD)
    client = beat_redis.client()
    wait_listening(vhost, workers(broker, "w1@rabbit", env={"DOORMAN_DEMO_BEAT_REDIS_URL": beat_redis.url,
                                                            "DOORMAN_BEAT_CANARY_KEY": CANARY}))
    beat = beat_process(broker, beat_redis.url, tmp_path)
    try:
        wait_for(lambda: client.get(CANARY) and client.exists("redbeat::lock"), 60,
                 f"beat running and the canary written: {(tmp_path / 'beat.log').read_text()[-1500:]}")
        conf = tmp_path / "doorman.yaml"
        conf.write_text(f"beat:\n  redis_url: {beat_redis.url}\n  canary_key: {CANARY}\n"
                        "  canary_max_age_seconds: 4\n  grace_seconds: 3\n")
        conf.chmod(0o600)
        state = tmp_path / "state.json"
        snap, alerts, said = once(broker, conf, state)
        assert snap["redis_connected"] is True and snap["error"] is None
        beat_section = snap["beat"]
        assert beat_section["source"] == "beat.redis_url"
        assert beat_section["redis"] == f"redis://:***@127.0.0.1:{beat_redis.port}/0"
        assert beat_section["redbeat"]["lock_present"] is True and beat_section["redbeat"]["entries"] >= 1
        assert beat_section["canary"]["present"] is True and beat_section["canary"]["age_seconds"] < 4
        assert [a for a in alerts if a["alert_type"].startswith("beat")] == []

        os.killpg(beat.pid, signal.SIGKILL)  # a crash: RedBeat's lock is left to lapse (3 s here)
        beat.wait()
        # the lock lapses and the canary ages past 4 s: waited for on the beat Redis itself
        wait_for(lambda: not client.exists("redbeat::lock") and time.time() - float(client.get(CANARY)) > 5, 60,
                 "RedBeat's lock to lapse and the canary to go stale")
        snap, alerts, more = once(broker, conf, state)
        assert snap["beat"]["redbeat"]["lock_present"] is False and snap["beat"]["canary"]["age_seconds"] > 4
        beats = [(a["alert_type"], a["severity"], a["status"]) for a in alerts if a["alert_type"].startswith("beat")]
        assert beats == [("beat_down", "critical", "firing")]  # beat_missed is held back by it
        [down] = [a for a in alerts if a["alert_type"] == "beat_down"]
        assert "canary is" in down["message"] and "RedBeat's lock is gone" in down["message"]
        assert "redis_down" not in {a["alert_type"] for a in alerts}

        # the beat Redis goes away: beat is null (not read), the broker is not marked down
        beat_redis.stop()
        snap, alerts, last = once(broker, conf, state)
        assert snap["redis_connected"] is True and snap["error"] is None and snap["beat"] is None
        assert "redis_down" not in {a["alert_type"] for a in alerts}
        assert b"beat.redis_url redis://:***@127.0.0.1" in last and b"unreadable" in last
        for output in (said, more, last):
            assert PASSWORD.encode() not in output
    finally:
        if beat.poll() is None:
            os.killpg(beat.pid, signal.SIGKILL)
            beat.wait()
