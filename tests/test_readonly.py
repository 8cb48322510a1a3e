"""Issue 19, `inspect: false`: a strictly read-only Doorman whose Redis user cannot publish a
control request (the default rule's PUBLISH right lets it broadcast a Celery `shutdown`), tested
with the documented ACL rule against a real redis-server and a real worker."""

from __future__ import annotations

import re
import shlex

import pytest
import redis

from doorman.brokers.redis.keys import Keys
from tests.support.process import ROOT, cli, records

KEYS = Keys()
# The exact rule docs/security.md documents for `inspect: false`: reads, the connection table, the
# worker-event subscription. No PUBLISH, no key it may write.
READONLY_ACL = (
    "on >{password} resetkeys resetchannels -@all "
    "+ping +hello +auth +client|setname +client|list +select "
    "+scan +dbsize +type +smembers +scard +sscan +zcard +zrange +llen +lindex +eval_ro "
    "+psubscribe +punsubscribe +info +zcount +zrangebyscore +hstrlen +hmget +get +pttl "
    f"%R~* &{KEYS.events_pattern}"
)


def test_the_readonly_acl_tested_is_the_one_documented():
    documented = [" ".join(block.split()) for block in
                  re.findall(r"```\n(ACL SETUSER doorman-ro .*?)```", (ROOT / "docs" / "security.md").read_text(), re.S)]
    assert documented == ["ACL SETUSER doorman-ro " + READONLY_ACL.replace("{password}", "CHANGE-ME")]


@pytest.mark.e2e
def test_inspect_false_watches_a_real_worker_without_a_single_write(redis_server, workers):
    client = redis_server.client()
    password = "ro-Secret-77xyz"
    client.execute_command("ACL", "SETUSER", "doorman-ro", *shlex.split(READONLY_ACL.format(password=password)))
    try:
        w = workers(redis_server.url, "w1@test", client=client)
        url = f"redis://doorman-ro:{password}@127.0.0.1:{redis_server.port}/0"
        result = cli("doorman-collect", "--interval", "2.5", "--count", "2",
                     env={"REDIS_URL": url, "DOORMAN_INSPECT": "false", "DOORMAN_CONFIG": ""})
        snaps = records(result.stdout)
        assert result.returncode == 0 and snaps and all(s["redis_connected"] and s["error"] is None for s in snaps), \
            (result.stderr, snaps)
        last = snaps[-1]
        assert [(x["name"], x["alive"], x["responded"]) for x in last["workers"]] == [(w.name, True, False)]
        assert last["workers"][0]["last_heartbeat"] and last["active"] == [] and last["workers_subscribed"] is None
        assert password.encode() not in result.stdout + result.stderr

        # what this user can do: read. It cannot stop a worker, nor touch the reply binding.
        ro = redis.Redis(host="127.0.0.1", port=redis_server.port, username="doorman-ro", password=password)
        with pytest.raises(redis.exceptions.NoPermissionError):
            ro.publish(KEYS.pidbox_channel, b'{"method": "shutdown"}')
        with pytest.raises(redis.exceptions.NoPermissionError):
            ro.sadd(KEYS.reply_binding, b"x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            ro.delete(KEYS.reply_binding)
    finally:
        client.execute_command("ACL", "DELUSER", "doorman-ro")


@pytest.mark.e2e
def test_inspect_false_one_shot_says_liveness_is_unknown_rather_than_guessing(redis_server, workers):
    """Without heartbeats (one shot) and without asking, nobody knows who is alive: null, not 0
    (0 would page workers_down for a healthy fleet)."""
    w = workers(redis_server.url, "w1@test", client=redis_server.client())
    snap = records(cli("doorman-collect", "--once", env={"REDIS_URL": redis_server.url, "DOORMAN_INSPECT": "0",
                                                         "DOORMAN_CONFIG": ""}).stdout)[0]
    assert snap["alive_workers"] is None and [x["alive"] for x in snap["workers"] if x["name"] == w.name] == [None]
