"""The discovery cache file: private, never trusted when someone else could have written it, and
a corrupt one is said once and replaced (doorman.brokers.redis.discovery_cache)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from doorman.brokers.redis.discovery import State
from doorman.brokers.redis.discovery_cache import Cache, default_path, identity
from tests.support.files import give_away

NOW = 1_800_000_000.0
ODD = "caf\udce9"  # a name that is not UTF-8 on the wire (decoded with surrogateescape)


def cache(path: Path, said: list[str], ident: str = "b" * 32, ttl: float = 3600) -> Cache:
    return Cache(str(path), ident, ttl, said.append)


def saved_state() -> State:
    return State(cursor=1234, scanning=True, found=["x", ODD], complete=["y"], pass_started=NOW - 5,
                 scanned=4000, rate=800.5, tokens=1.5, tokens_at=NOW, keys=10)


def test_it_round_trips_privately(tmp_path):
    said: list[str] = []
    path = tmp_path / "c" / "d.json"
    cache(path, said).save(saved_state(), ["fresh-q", ODD], NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    state, workers = cache(path, said).load(NOW + 10)
    assert state == saved_state() and workers == ["fresh-q", ODD] and said == []


def test_the_name_says_nothing_of_the_broker(tmp_path):
    a = identity("redis://:pw-Secret-1@db.example:6379/0", 0, "")
    assert a == identity("redis://:other@db.example:6379/0", 0, "")  # the password is not in it at all
    assert a != identity("redis://db.example:6379/0", 1, "") != identity("redis://db.example:6379/0", 0, "p:")
    path = default_path(a, {"XDG_CACHE_HOME": str(tmp_path)})
    assert path == str(tmp_path / "celery-doorman" / f"discovery-{a}.json")
    assert "example" not in path and "6379" not in path


def test_a_corrupt_or_foreign_file_is_said_once_and_replaced(tmp_path):
    path = tmp_path / "d.json"
    for content, why in ((b"{not json", "is not JSON"), (b'{"v": 1, "kind": "other"}', "not a doorman-collect"),
                         (json.dumps({"v": 1, "kind": "doorman-discovery", "broker": "a" * 32, "saved_at": NOW,
                                      "scan": {}, "workers": []}).encode(), "another broker"),
                         (json.dumps({"v": 1, "kind": "doorman-discovery", "broker": "b" * 32, "saved_at": NOW,
                                      "scan": {"cursor": -1}, "workers": []}).encode(), "malformed")):
        path.write_bytes(content)
        said: list[str] = []
        c = cache(path, said)
        assert c.load(NOW) == (None, [])
        assert len(said) == 1 and why in said[0]
        c.save(State(cursor=7), [], NOW)
        assert json.loads(path.read_text())["scan"]["cursor"] == 7


def test_a_stale_file_is_started_afresh_quietly(tmp_path):
    path, said = tmp_path / "d.json", []
    cache(path, said).save(saved_state(), ["q"], NOW)
    assert cache(path, said, ttl=60).load(NOW + 61) == (None, []) and said == []


def test_a_symlink_or_another_users_file_is_refused_never_read_nor_written(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    said: list[str] = []
    c = cache(link, said)
    assert c.load(NOW) == (None, []) and "symbolic link" in said[0]
    c.save(saved_state(), [], NOW)
    assert victim.read_bytes() == b"precious\n" and link.is_symlink() and len(said) == 1

    theirs = tmp_path / "theirs.json"
    cache(theirs, said).save(saved_state(), ["planted"], NOW)
    give_away(theirs)
    said.clear()
    c = cache(theirs, said)
    assert c.load(NOW) == (None, []) and "another user" in said[0]
    c.save(State(cursor=1), [], NOW)
    assert json.loads(theirs.read_text())["workers"] == ["planted"] and len(said) == 1
    assert os.stat(theirs).st_uid != os.geteuid()


def test_a_directory_others_may_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    said: list[str] = []
    c = cache(shared / "d.json", said)
    assert c.load(NOW) == (None, []) and "writable by other users" in said[0]
    c.save(saved_state(), [], NOW)
    assert not (shared / "d.json").exists() and len(said) == 1


def test_an_empty_path_disables_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    said: list[str] = []
    c = Cache("", "b" * 32, 3600, said.append)
    c.save(saved_state(), ["q"], NOW)
    assert c.load(NOW) == (None, []) and list(tmp_path.iterdir()) == [] and said == []


def test_values_that_would_crash_a_scan_are_malformed_not_trusted(tmp_path):
    """A cache file is data: a cursor Redis refuses, an infinite or zero speed, an absurd time."""
    path = tmp_path / "d.json"
    for bad in ({"cursor": 2**70}, {"rate": float("inf")}, {"rate": 0.0}, {"last_pass_at": 1e300},
                {"pass_started": -1e20}, {"tokens": float("-inf")}, {"tokens_at": float("nan")}):
        path.write_text(json.dumps({"v": 1, "kind": "doorman-discovery", "broker": "b" * 32, "saved_at": NOW,
                                    "scan": {**saved_state().as_dict(), **bad}, "workers": []}))
        said: list[str] = []
        assert cache(path, said).load(NOW) == (None, []), bad
        assert len(said) == 1 and "malformed" in said[0], bad


def test_two_masters_behind_the_same_sentinels_have_a_file_each():
    url = "sentinel://:pw@s1:26379/0"
    assert identity(url, 0, "", "orders") != identity(url, 0, "", "billing")

