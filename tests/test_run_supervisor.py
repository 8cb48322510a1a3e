"""doorman-run, the Python supervisor: its streams directory holds against another user (issue 28,
item 4), the checkout's wrappers cannot be shadowed from the current directory (item 5), and a
SIGHUP reloads without losing or repeating an alert (issue 27, item 4). Real stages, a real
redis-server, real files owned by another uid (the tests run as root), a real HTTP receiver.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.process import BIN, ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e  # real workers, brokers or whole pipelines

RUN = ROOT / "bin" / "doorman-run"
NOBODY = 65534


def run_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_URL", "CELERY_BROKER", "DOORMAN_", "SLACK_", "PAGERDUTY_", "GENERIC_",
                                "MAX_", "CHECK_INTERVAL"))}
    env.update({"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "REDIS_URL": url, "DOORMAN_CONFIG": "",
                "DOORMAN_STATE_DIR": str(tmp_path / "state"), **extra})
    return env


def run_once(tmp_path: Path, url: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUN)], capture_output=True, timeout=60,
                          env=run_env(tmp_path, url, DOORMAN_COUNT="1", DOORMAN_INTERVAL="0.5", DOORMAN_DRY_RUN="1",
                                      **extra))


def refused(p: subprocess.CompletedProcess, *words: str) -> None:
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("doorman-run: error: DOORMAN_STREAMS_DIR"), err
    assert all(w in err for w in words), err
    assert p.stdout == b""  # nothing was started


# Issue 28, item 4: the streams directory and files ------------------------------------------------

def test_streams_directory_is_created_0700_with_0600_files_that_get_both_streams(redis_server, tmp_path):
    streams = tmp_path / "new" / "streams"
    p = run_once(tmp_path, redis_server.url, DOORMAN_STREAMS_DIR=str(streams))
    assert p.returncode == 0, p.stderr.decode()
    for d in (streams, streams.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("snapshots.ndjson", "alerts.ndjson"):
        assert stat.S_IMODE((streams / name).stat().st_mode) == 0o600
    assert b'"kind":"snapshot"' in (streams / "snapshots.ndjson").read_bytes()
    assert b'"alert_type":"celery_disconnected"' in (streams / "alerts.ndjson").read_bytes()


def test_a_streams_directory_of_another_user_is_refused(redis_server, tmp_path):
    streams = tmp_path / "theirs"
    streams.mkdir(mode=0o700)
    os.chown(streams, NOBODY, NOBODY)
    refused(run_once(tmp_path, redis_server.url, DOORMAN_STREAMS_DIR=str(streams)), "another user", str(NOBODY))
    assert list(streams.iterdir()) == []


def test_a_group_or_world_writable_streams_directory_is_refused(redis_server, tmp_path):
    streams = tmp_path / "open"
    streams.mkdir()
    streams.chmod(0o1777)
    refused(run_once(tmp_path, redis_server.url, DOORMAN_STREAMS_DIR=str(streams)), "writable by other users")
    assert list(streams.iterdir()) == []


def test_a_planted_symlink_is_never_appended_to(redis_server, tmp_path):
    streams = tmp_path / "streams"
    streams.mkdir(mode=0o700)
    victim = tmp_path / "victim.rc"
    victim.write_bytes(b"# someone's shell rc\n")
    (streams / "snapshots.ndjson").symlink_to(victim)
    refused(run_once(tmp_path, redis_server.url, DOORMAN_STREAMS_DIR=str(streams)), "symbolic link")
    assert victim.read_bytes() == b"# someone's shell rc\n"


def test_a_streams_file_of_another_user_is_refused(redis_server, tmp_path):
    streams = tmp_path / "streams"
    streams.mkdir(mode=0o700)
    theirs = streams / "alerts.ndjson"
    theirs.write_bytes(b"")
    os.chown(theirs, NOBODY, NOBODY)
    refused(run_once(tmp_path, redis_server.url, DOORMAN_STREAMS_DIR=str(streams)), "another user")
    assert theirs.read_bytes() == b""


def test_the_size_cap_never_truncates_through_a_link_swapped_in(redis_server, tmp_path):
    """The cap empties the file doorman-run holds open, never whatever the path names later."""
    streams = tmp_path / "streams"
    victim = tmp_path / "victim.log"
    victim.write_bytes(b"x" * 5000)  # past the cap: a truncation through the link would empty it
    proc = subprocess.Popen([str(RUN)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=run_env(tmp_path, redis_server.url, DOORMAN_INTERVAL="0.2", DOORMAN_DRY_RUN="1",
                                        DOORMAN_STREAMS_DIR=str(streams), DOORMAN_STREAMS_MAX_BYTES="1500"))
    try:
        path = streams / "snapshots.ndjson"
        wait_for(lambda: path.exists() and path.stat().st_size > 0, 30, "the first snapshot copied")
        held = tmp_path / "held.ndjson"
        os.rename(path, held)  # doorman-run still appends to this inode
        path.symlink_to(victim)
        wait_for(lambda: held.stat().st_size > 1500, 60, "the held copy past its cap")
        peak = [0]

        def dropped() -> bool:  # one snapshot line (with its tasks section) can itself pass 1,500 bytes,
            size = held.stat().st_size  # so the truncation shows as a drop, not as a size under the cap
            peak[0] = max(peak[0], size)
            return size < peak[0]

        wait_for(dropped, 60, "the held copy truncated by the cap")
        assert victim.read_bytes() == b"x" * 5000
        assert path.is_symlink()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


# Issue 28, item 5: the checkout's wrappers --------------------------------------------------------

def shadowing_cwd(tmp_path: Path) -> Path:
    evil = tmp_path / "cwd"
    (evil / "doorman").mkdir(parents=True)
    (evil / "doorman" / "__init__.py").write_text("raise SystemExit('shadowed by the current directory')\n")
    (evil / "click.py").write_text("raise SystemExit('click shadowed by the current directory')\n")
    return evil


def test_a_module_in_the_current_directory_does_not_shadow_doormans(tmp_path):
    """The wrappers' fallback (no .venv in the checkout): python3 from PATH, Doorman from the
    checkout, never from the current directory."""
    checkout = tmp_path / "checkout"
    (checkout / "bin").mkdir(parents=True)
    (checkout / "doorman").symlink_to(ROOT / "doorman")
    evil = shadowing_cwd(tmp_path)
    env = {**os.environ, "PATH": f"{BIN}:/usr/bin:/bin"}  # BIN's python3 has the dependencies
    env.pop("PYTHONPATH", None)
    for name in ("doorman-collect", "doorman-analyze", "doorman-notify", "doorman-simulate", "doorman-run"):
        shutil.copy(ROOT / "bin" / name, checkout / "bin" / name)
        for wrapper in (checkout / "bin" / name, ROOT / "bin" / name):  # fallback, then the .venv's script
            p = subprocess.run([str(wrapper), "--help"], cwd=evil, capture_output=True, timeout=60, env=env)
            assert p.returncode == 0 and b"shadowed" not in p.stderr, (wrapper, p.stderr.decode())
            assert name.encode() in p.stdout


def test_doorman_run_starts_its_stages_without_the_current_directory_on_sys_path(redis_server, tmp_path):
    evil = shadowing_cwd(tmp_path)
    p = subprocess.run([str(RUN)], cwd=evil, capture_output=True, timeout=60,
                       env=run_env(tmp_path, redis_server.url, DOORMAN_COUNT="1", DOORMAN_DRY_RUN="1"))
    assert p.returncode == 0 and b"shadowed" not in p.stderr, p.stderr.decode()
    assert b'"kind":"delivery"' in p.stdout


# Settings ----------------------------------------------------------------------------------------

def test_a_bad_drain_setting_is_one_line_and_exit_2(tmp_path):
    p = subprocess.run([str(RUN)], capture_output=True, timeout=30,
                       env=run_env(tmp_path, f"redis://127.0.0.1:{free_port()}/0", DOORMAN_DRAIN_SECONDS="soon"))
    assert p.returncode == 2
    assert p.stderr.decode().splitlines() == [
        "doorman-run: error: environment: DOORMAN_DRAIN_SECONDS: 'soon' is not a number"]


# Issue 27, item 4: SIGHUP reloads -----------------------------------------------------------------

def stage_pids(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def test_sighup_reloads_and_an_alert_firing_across_it_is_delivered_once(redis_server, receiver, tmp_path):
    config = tmp_path / "doorman.yaml"
    config.write_text("thresholds:\n  max_queue_size: 1000\n")
    streams = tmp_path / "state" / "streams"
    env = run_env(tmp_path, redis_server.url, DOORMAN_INTERVAL="0.3", DOORMAN_CONFIG=str(config),
                  DOORMAN_STREAMS_DIR=str(streams), GENERIC_WEBHOOK_URL=receiver.url("/hook"))
    err = tmp_path / "run.err"
    proc = subprocess.Popen([str(RUN)], stdout=subprocess.DEVNULL, stderr=open(err, "wb"), env=env)

    def delivered() -> list[tuple[str, str]]:
        return [(r.json["alert_type"], r.json["status"]) for r in receiver.delivered("/hook")]

    def checks() -> int:
        path = streams / "snapshots.ndjson"
        return path.read_bytes().count(b"\n") if path.exists() else 0

    def new_stages(old: set[int]) -> set[int]:
        pids = stage_pids(proc.pid)
        return pids if len(pids) == 3 and not pids & old else set()

    try:
        # no worker: celery_disconnected fires at the first check and keeps firing across reloads;
        # the first reload lands while that alert is on its way through analyze and notify
        wait_for(lambda: checks() >= 1, 30, "the first check")
        first = stage_pids(proc.pid)
        proc.send_signal(signal.SIGHUP)
        second = wait_for(lambda: new_stages(first), 60, "three new stages after the first reload")
        wait_for(lambda: ("celery_disconnected", "firing") in delivered(), 30, "the alert")

        config.write_text("thresholds:\n  max_queue_size: lots\n")  # a bad config is refused; nothing restarts
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in err.read_text(), 30, "the refusal")
        [line] = [x for x in err.read_text().splitlines() if "reload refused" in x]
        assert str(config) in line and "max_queue_size" in line
        assert stage_pids(proc.pid) == second and proc.poll() is None

        config.write_text("thresholds:\n  max_queue_size: 2000\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: new_stages(second), 60, "three new stages after the second reload")
        seen = checks()
        wait_for(lambda: checks() >= seen + 5, 60, "five checks by the new stages")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, err.read_text()
        assert delivered() == [("celery_disconnected", "firing")], delivered()
        spool = tmp_path / "state" / "spool.ndjson"
        assert not spool.exists() or spool.read_bytes().strip() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
