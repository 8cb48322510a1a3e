"""doorman-scale end to end with real Celery workers: the suite's redis-server, real workers, real
tasks, `doorman-collect | doorman-scale --exec`, and workers started and stopped by the command."""

from __future__ import annotations

import os
import subprocess
import time

import orjson
import pytest

from tests.support.process import BIN, free_port, wait_for
from tests.support.redis import require_redis_server
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e


def test_collect_into_scale_asks_for_more_workers_for_a_backlog(redis_server, workers, tmp_path):
    """One worker, 30 tasks of 0.5 s, a 3 s target: the command is asked for more workers."""
    url = redis_server.url
    workers(url, "e2e1@test", client=redis_server.client())
    calls = tmp_path / "calls"
    cmd = tmp_path / "scaler"
    cmd.write_text(f'#!/bin/sh\necho "$1 $2" >> {calls}\n')
    cmd.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_BROKER"))}
    env.update(REDIS_URL=url, DOORMAN_SCALE_TARGET_WAIT_SECONDS="3", DOORMAN_SCALE_MAX_WORKERS="5")
    collect = subprocess.Popen([str(BIN / "doorman-collect"), "--interval", "0.5"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    scale = subprocess.Popen([str(BIN / "doorman-scale"), "--exec", f"{cmd} {{pool}} {{desired}}"], env=env,
                             stdin=collect.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    collect.stdout.close()
    try:
        time.sleep(1.5)
        enqueue(url, 30, args=(0.5,))
        wait_for(lambda: calls.exists() and any(int(c.split()[1]) > 1 for c in calls.read_text().splitlines()),
                 30, "a call asking for more than one worker")
    finally:
        collect.terminate()
        collect.wait(15)
        out, err = scale.communicate(timeout=30)
    assert scale.returncode == 0 and b"Traceback" not in err
    recs = [orjson.loads(line) for line in out.splitlines()]
    up = next(r for r in recs if r["kind"] == "scale" and r["desired_workers"] > 1)
    assert up["current_workers"] == 1 and up["pool"] == "default" and up["reason"].startswith("scale up")
    assert up["inputs"]["service_rate"] > 0 and up["inputs"]["pending"] > 0  # from the worker's `processed`
    assert all(r["result"] == "ok" for r in recs if r["kind"] == "scale_exec")
    assert f"default {up['desired_workers']}" in calls.read_text().splitlines()


def test_autoscale_demo_starts_and_stops_real_workers():
    """The demo's core, small: 30 tasks of 0.5 s; the fleet grows, drains, and shrinks once per window
    (20 s after the drain for the scale-downs: 9 s was lost twice on a loaded machine, new workers slow
    to report)."""
    require_redis_server()
    from doorman.simulate.autoscale import AutoscaleOptions, autoscale

    said: list[str] = []
    opts = AutoscaleOptions(tasks=30, task_seconds=0.5, max_workers=4, target_wait=3.0, stabilization=4.0,
                            interval=0.5, settle=20.0, port=free_port(), baseline=False, timeout=90)
    result = autoscale(opts, dict(os.environ), said.append)
    s = result.scaled
    assert s.drain_seconds is not None, said
    assert s.peak_workers > 1 and s.ups >= 1 and s.downs, [d["reason"] for d in s.decisions]
    assert not s.flapping(opts.stabilization)
    assert s.commands and all(c["result"] == "ok" for c in s.commands)
    lines = result.lines()
    assert lines[0].startswith("drain time with scaling:") and "flapping: none" in lines[-1]
