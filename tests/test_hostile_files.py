"""Issue 19, files: a local user who can write Doorman's directory must not turn its state, lock,
spool, dead-letter or temporary files against it. Each test replays the review's attack against
the real commands, running as this user (root on the review's machine), with the "other user"
played by uid/gid 65534 (nobody)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import orjson
import pytest

from doorman.atomicfile import write_atomic
from doorman.errors import UnsafePath
from tests.support.files import give_away
from tests.support.notify import alert, ndjson, notify_env
from tests.support.process import BIN, cli
from tests.support.receiver import Receiver
from tests.support.scenario import queue, snap

SNAP = orjson.dumps(snap(0, workers=[], queues={"celery": queue(5)})) + b"\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file only its owner may read: what the attacker wants overwritten, truncated or copied."""
    p = tmp_path / "victim" / "secret.txt"
    p.parent.mkdir(mode=0o700)
    p.write_bytes(b"root-only secret\n")
    p.chmod(0o600)
    return p


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def analyze(state: Path, **kw) -> subprocess.CompletedProcess:
    return cli("doorman-analyze", "--state", str(state), input=SNAP, env={"DOORMAN_CONFIG": ""}, **kw)


def one_error_line(p: subprocess.CompletedProcess, *words: str) -> str:
    lines = p.stderr.decode().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and "Traceback" not in p.stderr.decode(), p.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ a directory others can write


@pytest.mark.slow
@pytest.mark.parametrize("planted", ["state.json.tmp", "state.json.lock", "state.json"])
def test_analyze_refuses_a_world_writable_state_directory_and_writes_through_nothing(tmp_path, victim, planted):
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    (d / planted).symlink_to(victim)
    p = analyze(d / "state.json")
    one_error_line(p, str(d), "writable by other users")
    assert victim.read_bytes() == b"root-only secret\n"
    assert p.stdout == b""


def test_lock_symlink_creates_no_file(tmp_path):
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    target = tmp_path / "created-by-attacker"
    (d / "state.json.lock").symlink_to(target)
    p = analyze(d / "state.json")
    one_error_line(p, "state.json.lock", "symbolic link")
    assert not target.exists()


def test_temp_names_are_random_and_planted_temp_links_are_never_written(tmp_path, victim):
    """The old temp name was `<file>.tmp.<pid>`: any planted name is now only a name we skip."""
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    for pid in range(1, 400):
        (d / f"spool.ndjson.tmp.{pid}").symlink_to(victim)
    (d / "state.json.tmp").symlink_to(victim)
    write_atomic(str(d / "spool.ndjson"), b"x\n")
    p = analyze(d / "state.json")
    assert p.returncode == 0, p.stderr
    assert victim.read_bytes() == b"root-only secret\n"
    assert (d / "spool.ndjson").read_bytes() == b"x\n"


def test_state_of_another_user_is_refused(tmp_path):
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    state = d / "state.json"
    analyze(state)
    give_away(state)
    one_error_line(analyze(state), "state.json", "another user")


def test_state_symlink_is_refused_not_followed(tmp_path, victim):
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    (d / "state.json").symlink_to(victim)
    one_error_line(analyze(d / "state.json"), "symbolic link")
    assert victim.read_bytes() == b"root-only secret\n"


def test_state_directory_of_another_user_is_refused(tmp_path):
    d = tmp_path / "theirs"
    d.mkdir(mode=0o755)
    give_away(d)
    one_error_line(analyze(d / "state.json"), "another user")


# ------------------------------------------------------------------ permissions


def test_files_are_0600_and_the_directory_0700_whatever_the_umask(tmp_path):
    state = tmp_path / "new" / "deeper" / "state.json"
    p = subprocess.run(["sh", "-c", f"umask 000; exec {cli_path('doorman-analyze')} --state {state}"],
                       input=SNAP, capture_output=True, env={**os.environ, "DOORMAN_CONFIG": ""})
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(str(state) + ".lock").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700


def test_an_existing_0644_state_becomes_0600(tmp_path):
    state = tmp_path / "state.json"
    analyze(state)
    state.chmod(0o644)
    Path(str(state) + ".lock").chmod(0o666)
    assert analyze(state).returncode == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(str(state) + ".lock").stat().st_mode) == 0o600


def cli_path(name: str) -> str:
    return str(BIN / name)


# ------------------------------------------------------------------ the spool


def notify(tmp_path: Path, spool: Path, receiver: Receiver, data: bytes) -> subprocess.CompletedProcess:
    env = notify_env(tmp_path, slack=receiver.url("/slack"), DOORMAN_SPOOL=str(spool))
    return cli("doorman-notify", input=data, env=env)


def test_spool_and_dead_letter_symlinks_copy_no_secret_file(tmp_path, victim, receiver):
    """The PoC: spool.ndjson → a root-only file, spool.dead.ndjson → a file the attacker reads.
    The unreadable 'entries' were moved to the dead letters: the secret came out readable."""
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    loot = tmp_path / "loot.ndjson"
    (d / "spool.ndjson").symlink_to(victim)
    (d / "spool.dead.ndjson").symlink_to(loot)
    p = notify(tmp_path, d / "spool.ndjson", receiver, ndjson(alert(1)))
    one_error_line(p, "spool.ndjson", "symbolic link")
    assert not loot.exists()
    assert receiver.at("/slack") == []


def test_spool_temp_link_truncates_nothing(tmp_path, victim, receiver):
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    for pid in range(1, 400):  # the old `spool.ndjson.tmp.<pid>`, for every pid notify may get
        (d / f"spool.ndjson.tmp.{pid}").symlink_to(victim)
    p = notify(tmp_path, d / "spool.ndjson", receiver, ndjson(alert(1)))
    assert p.returncode == 0, p.stderr
    assert victim.read_bytes() == b"root-only secret\n"


def test_a_forged_spool_in_a_shared_directory_is_never_delivered(tmp_path, receiver):
    """The PoC: in a 0777 directory another user replaced the spool with a forged workers_down
    carrying <!channel>, and notify delivered it to Slack."""
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    forged = {"v": 1, "kind": "spooled", "id": "x", "destination": "slack", "attempts": 1,
              "alert": alert(9, title="<!channel> workers_down", alert_type="workers_down")}
    (d / "spool.ndjson").write_bytes(orjson.dumps(forged) + b"\n")
    give_away(d / "spool.ndjson")
    p = notify(tmp_path, d / "spool.ndjson", receiver, b"")
    one_error_line(p, str(d), "writable by other users")
    assert receiver.at("/slack") == []


def test_a_spool_owned_by_another_user_is_refused_even_in_a_private_directory(tmp_path, receiver):
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    forged = {"v": 1, "kind": "spooled", "id": "x", "destination": "slack", "attempts": 1, "alert": alert(9)}
    (d / "spool.ndjson").write_bytes(orjson.dumps(forged) + b"\n")
    give_away(d / "spool.ndjson")
    one_error_line(notify(tmp_path, d / "spool.ndjson", receiver, b""), "another user")
    assert receiver.at("/slack") == []


def test_a_hard_linked_dead_letter_file_is_refused(tmp_path, victim, receiver):
    """Running as root, a hard link to a root file passes an owner check: the link count does not."""
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    os.link(victim, d / "spool.dead.ndjson")
    one_error_line(notify(tmp_path, d / "spool.ndjson", receiver, ndjson(alert(1))), "hard links")
    assert victim.read_bytes() == b"root-only secret\n"


def test_unsafe_path_is_also_an_oserror_for_code_that_survives_io_errors():
    e = UnsafePath("/x", "is a symbolic link")
    assert isinstance(e, OSError) and str(e) == "/x: is a symbolic link" and e.strerror == str(e)
