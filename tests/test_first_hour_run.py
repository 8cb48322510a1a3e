"""A new user's first hour (issue 18), continued: doorman-run as the README starts it, and docs that
match the tool (every `--help` flag in its page, `make` without warnings, the README's cron section).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.notify import read_ndjson
from tests.support.process import BIN, ROOT, free_port, wait_for
from tests.support.workers import enqueue

# 6. doorman-run ------------------------------------------------------------------------------------

RUN = ROOT / "bin" / "doorman-run"


def run_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_URL", "CELERY_BROKER", "DOORMAN_", "SLACK_", "PAGERDUTY_", "GENERIC_"))}
    env.update(PATH=f"{BIN}:/usr/bin:/bin", HOME=str(tmp_path), REDIS_URL=url,
               DOORMAN_STATE_DIR=str(tmp_path / "state" / "doorman"), **extra)
    return env


def test_doorman_run_help_prints_its_settings_and_exits_0():
    p = subprocess.run([str(RUN), "--help"], capture_output=True, timeout=10)
    assert p.returncode == 0 and p.stderr == b""
    out = p.stdout.decode()
    assert out.startswith("doorman-run: the Doorman daemon as one command") and "DOORMAN_STATE_DIR" in out


@pytest.mark.e2e
def test_doorman_run_sigterm_with_an_alert_in_the_spool_exits_0_and_keeps_it(redis_server, tmp_path):
    enqueue(redis_server.url, 5)  # no worker: workers_down, for a webhook that is not listening
    env = run_env(tmp_path, redis_server.url, DOORMAN_INTERVAL="0.5",
                  GENERIC_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/hooks/x",
                  DOORMAN_DELIVERY_BACKOFF_SECONDS="0.05", DOORMAN_HTTP_CONNECT_TIMEOUT="0.5")
    proc = subprocess.Popen([str(RUN)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        spool = tmp_path / "state" / "doorman" / "spool.ndjson"
        wait_for(lambda: any(e.get("attempts") for e in read_ndjson(spool)), 30, "the alert spooled")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read().decode()
        assert [e["alert"]["alert_type"] for e in read_ndjson(spool)] == ["workers_down"]
        state_dir = tmp_path / "state" / "doorman"
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700  # as docs/run.md promises
    finally:
        proc.kill()
        proc.wait()


# 7. Docs that match the tool -----------------------------------------------------------------------

PAGES = {"doorman-collect": "collect.md", "doorman-analyze": "analyze.md", "doorman-notify": "notify.md",
         "doorman-simulate": "simulate.md", "doorman-run": "run.md", "doorman-serve": "serve.md",
         "doorman-scale": "scale.md"}
OPTION = re.compile(r"^\s{1,4}((?:-\w, )?--[a-z][\w-]*(?:, --[a-z][\w-]*)*)", re.M)


def help_flags(command: str) -> set[str]:
    """Every flag `COMMAND --help` lists (doorman-run: its environment settings)."""
    path = RUN if command == "doorman-run" else BIN / command
    p = subprocess.run([str(path), "--help"], capture_output=True, timeout=30)
    assert p.returncode == 0, (command, p.stderr)
    text = p.stdout.decode()
    if command == "doorman-run":
        return set(re.findall(r"^\s+(DOORMAN_[A-Z_]+)", text, re.M)) | {"--help"}
    return {f for m in OPTION.findall(text) for f in re.findall(r"--?[\w-]+", m)}


CORE = ("doorman-collect", "doorman-analyze", "doorman-notify", "doorman-simulate", "doorman-run")


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in sorted(PAGES) if c in CORE or (ROOT / "docs" / PAGES[c]).exists()])
def test_every_flag_of_help_is_in_its_docs_page(command):
    page = ROOT / "docs" / PAGES[command]
    flags = help_flags(command)
    assert "--help" in flags
    if command != "doorman-run":  # click's own -h/--help needs no line; doorman-run's is its own
        flags -= {"-h", "--help"}
    text = page.read_text()
    missing = sorted(f for f in flags if f"`{f}" not in text and f"{f}`" not in text and f" {f} " not in text)
    assert not missing, f"docs/{page.name} does not document {missing}"


@pytest.mark.slow
def test_make_installs_without_the_editable_installation_warning(tmp_path):
    """The install recipe's two pip lines, as make runs them, in a throw-away virtualenv (without the
    dependencies, which the warning has nothing to do with)."""
    text = (ROOT / "Makefile").read_text()
    recipe = [line.strip() for line in text.splitlines() if "$(BIN)/pip install" in line]
    assert len(recipe) == 2, recipe
    venv = tmp_path / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    out = b""
    for line in recipe:
        command = line.replace("$(BIN)", str(venv / "bin")).replace(" -e ", " --no-deps -e ")
        p = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, timeout=300)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        out += p.stdout + p.stderr
    assert b"Editable installation" not in out, out.decode()[-2000:]


def test_readme_cron_section_says_what_the_exit_status_means():
    text = (ROOT / "README.md").read_text()
    cron = text[text.index("# cron, every minute"):text.index("Destinations come from")]
    assert "creates the state file's directory" in cron and "exit 1" in cron and "no destination" in cron
