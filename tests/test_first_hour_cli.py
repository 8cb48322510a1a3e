"""Issue 27, a user's first hour and day two: `--version` and shell completion on every command,
`make demo` installing only what the demo needs, `doorman-check-config` (every problem of a config,
one line each; `--connect` against a real redis-server, a real HTTP receiver and a closed port),
plugin discovery that reads only entry_points.txt, and performance.md's generated tables.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from importlib.metadata import version

import orjson
import pytest

from tests.support.process import BIN, ROOT, free_port

COMMANDS = ("doorman-collect", "doorman-analyze", "doorman-notify", "doorman-simulate", "doorman-serve",
            "doorman-scale", "doorman-check-config", "doorman-run")
SUITE_ONLY = ("prometheus", "prometheus-node-exporter", "prometheus-alertmanager", "chromium", "chromium-driver",
              "rabbitmq-server", "openssl")


def clean_env(tmp_path, **extra: str) -> dict[str, str]:
    """Only what a command needs from the machine: no broker URL, destination or config of the caller's."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "XDG_STATE_HOME": str(tmp_path / "state"), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def run(command: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / command), *args], capture_output=True, env=env, timeout=60)


# --version and completion ---------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_prints_the_installed_version(command, tmp_path):
    p = run(command, "--version", env=clean_env(tmp_path))
    assert (p.returncode, p.stderr) == (0, b""), p.stderr
    assert p.stdout.decode() == f"{command} {version('celery-doorman')}\n"


def test_the_version_is_this_rounds_and_the_changelog_has_it():
    assert version("celery-doorman") == "0.2.0"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    sections = [line[3:] for line in changelog.splitlines() if line.startswith("## ")]
    assert sections == ["0.2.0", "0.1.0"]  # newest first


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_clicks_shell_completion(command, tmp_path):
    var = f"_{command.upper().replace('-', '_')}_COMPLETE"
    source = run(command, env=clean_env(tmp_path, **{var: "bash_source"}))
    assert source.returncode == 0 and f"_{command.replace('-', '_')}_completion()" in source.stdout.decode()
    done = run(command, env=clean_env(tmp_path, **{var: "bash_complete", "COMP_WORDS": f"{command} --vers",
                                                   "COMP_CWORD": "1"}))
    assert done.returncode == 0 and done.stdout.decode().split() == ["plain,--version"], done.stdout


# make demo installs redis-server only --------------------------------------------------------

def make_dry_run(target: str) -> str:
    """What `make TARGET` would run, as text (`make -n`: nothing is run or installed)."""
    p = subprocess.run(["make", "-n", "-B", target, "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def test_make_demo_may_install_redis_server_and_nothing_the_suite_needs():
    demo = make_dry_run("demo")
    assert "redis-server" in demo and "doorman-simulate" in demo
    assert [pkg for pkg in SUITE_ONLY if pkg in demo] == []
    assert "rabbitmq-plugins" not in demo and "systemctl" not in demo


def test_make_test_installs_and_starts_what_the_suite_needs():
    test = make_dry_run("test")
    assert [pkg for pkg in SUITE_ONLY if pkg not in test] == []
    assert "rabbitmq-plugins enable rabbitmq_management" in test and "pytest tests" in test


# doorman-check-config ---------------------------------------------------------------------------

def test_a_good_config_is_ok_in_one_line_and_nothing_is_contacted(tmp_path):
    listener = socket.create_server(("127.0.0.1", free_port()))  # a broker that would see any connect
    listener.setblocking(False)
    try:
        port = listener.getsockname()[1]
        cfg = tmp_path / "doorman.yaml"
        cfg.write_text(f"broker_url: redis://:brokerpw9@127.0.0.1:{port}/0\nthresholds:\n  max_queue_size: 50\n")
        cfg.chmod(0o600)
        p = run("doorman-check-config", "--config", str(cfg), env=clean_env(tmp_path))
        assert p.returncode == 0 and p.stdout == b""
        [line] = p.stderr.decode().splitlines()
        assert line.startswith("doorman-check-config: ok: ") and "nothing contacted" in line
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()


def test_every_problem_is_one_line_naming_file_and_key_and_secrets_stay_out(tmp_path):
    cfg = tmp_path / "doorman.yaml"
    cfg.write_text("broker_url: redis://:topsecretpw@127.0.0.1:6379/0\n"
                   "check_intervl: 5\n"
                   "thresholds:\n  max_queue_size: -3\n"
                   "generic_webhook_url: http://example.com/hook/SECRETPATH\n")
    cfg.chmod(0o600)
    p = run("doorman-check-config", "--config", str(cfg), "--cluster", " ",
            env=clean_env(tmp_path, CHECK_INTERVAL="soon"))
    err = p.stderr.decode()
    assert p.returncode == 2 and p.stdout == b"", err
    lines = err.splitlines()
    assert lines[-1] == "doorman-check-config: 5 problems found"
    assert sorted(lines[:-1]) == sorted([
        f"doorman-check-config: error: {cfg}: check_intervl: unknown key (did you mean 'check_interval'?)",
        f"doorman-check-config: error: {cfg}: thresholds.max_queue_size: must be a finite number >= 0, got -3",
        f"doorman-check-config: error: {cfg}: generic_webhook_url: must be https:// (plain http sends the secret "
        "in clear; set allow_insecure_webhooks: true to override)",
        "doorman-check-config: error: environment: CHECK_INTERVAL: must be a number, got 'soon'",
        "doorman-check-config: error: command line: --cluster: must not be empty (it names the cluster in every alert)",
    ]), err
    assert "topsecretpw" not in err and "SECRETPATH" not in err and "Traceback" not in err


def test_an_unreadable_file_is_one_problem(tmp_path):
    p = run("doorman-check-config", "--config", str(tmp_path / "missing.yaml"), env=clean_env(tmp_path))
    assert p.returncode == 2
    assert p.stderr.decode().splitlines() == [
        f"doorman-check-config: error: {tmp_path / 'missing.yaml'}: cannot read config file (No such file or directory)",
        "doorman-check-config: 1 problem found"]


def broken_plugin(tmp_path) -> str:
    """A package whose entry point names a module that does not exist, installed the way pip lays
    one out (a dist-info directory), in a directory of its own for PYTHONPATH."""
    site = tmp_path / "site"
    dist = site / "broken_rule-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-rule\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[console_scripts]\nx = y:z\n\n[doorman.rules]\nbroken = no_such_module_27:RULE\n")
    return str(site)


def test_a_plugin_that_fails_to_load_is_a_problem(tmp_path):
    p = run("doorman-check-config", env=clean_env(tmp_path, PYTHONPATH=broken_plugin(tmp_path)))
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert ("doorman-check-config: error: doorman.rules: plugin 'broken' (no_such_module_27:RULE) of doorman.rules "
            "not loaded: ModuleNotFoundError: No module named 'no_such_module_27'") in err.splitlines()


def test_plugin_discovery_finds_what_importlib_metadata_finds(tmp_path):
    code = ("import json; from importlib.metadata import entry_points as e; from doorman import plugins\n"
            "print(json.dumps([[plugins.entry_points(g), sorted([x.name, x.value] for x in e(group=g))] "
            "for g in plugins.GROUPS]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": broken_plugin(tmp_path)})
    assert p.returncode == 0, p.stderr
    groups = orjson.loads(p.stdout)
    assert groups[0][1] == [["broken", "no_such_module_27:RULE"]]
    assert all([list(x) for x in ours] == theirs for ours, theirs in groups)


@pytest.mark.e2e
def test_connect_says_what_answered_and_posts_nothing(tmp_path, make_redis, receiver):
    server = make_redis(password="redispw27")
    closed = free_port()
    env = clean_env(tmp_path, REDIS_URL=server.url, GENERIC_WEBHOOK_URL=f"http://127.0.0.1:{receiver.port}/hook/TOKEN27",
                    SLACK_WEBHOOK_URL=f"https://127.0.0.1:{closed}/services/SLACKSECRET")
    p = run("doorman-check-config", "--connect", "--timeout", "5", env=env)
    err = p.stderr.decode()
    assert p.returncode == 1 and p.stdout == b"", err
    lines = err.splitlines()
    assert lines[0].startswith(f"doorman-check-config: ok: broker of cluster default redis://:***@127.0.0.1:"
                               f"{server.port}/0: 127.0.0.1:{server.port} answered in "), err
    assert lines[1].startswith(f"doorman-check-config: ok: destination webhook http://127.0.0.1:{receiver.port}/***: "
                               f"127.0.0.1:{receiver.port} answered in "), err
    assert lines[2] == (f"doorman-check-config: error: destination slack https://127.0.0.1:{closed}/***: "
                        f"127.0.0.1:{closed} did not answer: Connection refused"), err
    assert lines[3] == "doorman-check-config: error: no config file (environment and defaults); 2 of 3 answered"
    assert receiver.requests == []  # a TCP connect only: no alert was posted
    assert not any(s in err for s in ("redispw27", "TOKEN27", "SLACKSECRET"))


def test_connect_to_a_broker_nobody_listens_on(tmp_path):
    closed = free_port()
    p = run("doorman-check-config", "--connect", "--timeout", "5",
            env=clean_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{closed}/0"))
    assert p.returncode == 1
    assert (f"doorman-check-config: error: broker of cluster default redis://127.0.0.1:{closed}/0: "
            f"127.0.0.1:{closed} did not answer: Connection refused") in p.stderr.decode().splitlines()


# performance.md's first tables come from the report ---------------------------------------------

def test_performance_docs_tables_are_written_between_the_markers(tmp_path):
    from bench import report

    text = report.DOCS.read_text()
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1
    assert text.index(report.BEGIN) < text.index("## ")  # the first figures a reader meets
    docs = tmp_path / "performance.md"
    docs.write_text(f"# P\n\n{report.BEGIN}\nold figures\n{report.END}\n\n## Rest\nkept\n")
    spread = {"n": 3, "median": 0.53, "min": 0.4, "max": 0.6, "values": [0.4, 0.53, 0.6]}
    data = {"machine": {"nproc": 2, "cpu": "Test CPU", "memory": "1.0 GiB", "python": "3.11.7", "redis_server": "7.0.15",
                        "os": "Linux-test", "date": "2026-12-07 03:00 UTC"},
            "oneshot": {"runs": 3,
                        "collect": {"wall_s": spread, "rss_mib": spread, "exit_codes": [0]},
                        "line": {"wall_s": spread, "rss_mib_largest_stage": spread, "rss_mib_sum_of_stages": spread,
                                 "exit_codes": [[0, 0, 0]]},
                        "ping": {"wall_s": spread, "rss_mib": spread, "exit_codes": [0]}}}
    (tmp_path / "report.json").write_bytes(orjson.dumps(data))
    report.write_docs(tmp_path / "report.json", docs)
    out = docs.read_text()
    assert "old figures" not in out and out.endswith("## Rest\nkept\n")
    assert "Measured 2026-12-07 03:00 UTC" in out and "2 CPU (Test CPU)" in out
    assert "| `doorman-collect --once` | 0.53 s (0.40–0.60) |" in out
