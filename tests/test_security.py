"""Least-privilege Redis ACL, TLS with verification, and configuration safety — against real servers."""

from __future__ import annotations

import re
import shlex
import time

import pytest
import redis

from doorman.brokers.redis.keys import Keys
from tests.support.process import ROOT, cli, collect_once, collect_with_config, free_port, records
from tests.support.redis import RedisServer
from tests.support.workers import enqueue

KEYS = Keys()
# The exact rule docs/security.md documents ("A least-privilege Redis user"): read anything, write
# only Doorman's own reply binding and list, publish the control request, subscribe to worker
# events. Nothing else.
UUID_GLOB = "????????-????-????-????-????????????"  # Doorman's reply lists are named by a uuid4
DOORMAN_ACL = (
    "on >{password} resetkeys resetchannels -@all "
    "+ping +hello +auth +client|setname +client|list +select "
    "+scan +dbsize +type +smembers +zcard +zrange +llen +lindex "
    "+publish +psubscribe +punsubscribe "
    "+multi +exec +info +zcount +zrangebyscore +hstrlen +hmget +get +pttl "
    "+scard +sscan +eval_ro "
    f"%R~* &{KEYS.pidbox_channel} &{KEYS.events_pattern} "
    f'"(+sadd +srem %W~{KEYS.reply_binding})" '
    f'"(+brpop +del %RW~{KEYS.reply_queue(UUID_GLOB)})"'
)


def test_the_acl_tested_is_the_one_documented():
    documented = []
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for block in re.findall(r"```\n(ACL SETUSER doorman .*?)```", doc.read_text(), re.S):
            documented.append(" ".join(block.split()))
    assert documented, "the docs show the least-privilege ACL rule"
    assert set(documented) == {"ACL SETUSER doorman " + DOORMAN_ACL.replace("{password}", "CHANGE-ME")}


@pytest.mark.e2e
def test_collect_works_with_the_documented_least_privilege_acl(redis_server, workers):
    client = redis_server.client()
    password = "acl-Secret-42xyz"
    client.execute_command("ACL", "SETUSER", "doorman", *shlex.split(DOORMAN_ACL.format(password=password)))
    url = redis_server.url
    w = workers(url, "w1@test", client=client, queues="celery,emails")
    enqueue(url, 3, task="demo.add", args=(1, 2), queue="waiting", priority=6)
    doorman_url = f"redis://doorman:{password}@127.0.0.1:{redis_server.port}/0"

    result = cli("doorman-collect", "--once", "--redis-url", doorman_url)
    assert result.returncode == 0, result.stderr
    [snap] = records(result.stdout)
    assert snap["redis_connected"] is True, snap["error"]
    assert snap["queues"]["waiting"]["by_priority"]["6"] == 3
    assert snap["queues"]["emails"]["source"] == "binding"
    assert snap["broker_health"]["version"] and snap["beat"]["redbeat"]["entries"] == 0  # INFO, PTTL, ZCARD...
    assert [(x["name"], x["responded"]) for x in snap["workers"]] == [(w.name, True)]
    assert password.encode() not in result.stdout + result.stderr
    assert snap["broker"] == f"redis://doorman:***@127.0.0.1:{redis_server.port}/0"

    # The rule really is restrictive: this user cannot touch a queue.
    limited = redis.Redis(host="127.0.0.1", port=redis_server.port, username="doorman", password=password)
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.lpush("celery", b"x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.zadd(KEYS.unacked_index, {"x": 1})
    with pytest.raises(redis.exceptions.NoPermissionError):  # the shared reply binding: SADD/SREM only
        limited.delete(KEYS.reply_binding)
    with pytest.raises(redis.exceptions.NoPermissionError):  # issue 19: not a queue that looks like a reply
        limited.delete(f"x.{KEYS.reply_queue('')}")
    client.execute_command("ACL", "DELUSER", "doorman")


@pytest.mark.e2e
def test_collect_daemon_follows_heartbeats_under_the_acl(redis_server, workers):
    client = redis_server.client()
    password = "acl-Secret-43xyz"
    client.execute_command("ACL", "SETUSER", "doorman", *shlex.split(DOORMAN_ACL.format(password=password)))
    workers(redis_server.url, "w1@test", client=client)
    url = f"redis://doorman:{password}@127.0.0.1:{redis_server.port}/0"
    result = cli("doorman-collect", "--redis-url", url, "--interval", "2.5", "--count", "2")
    snaps = records(result.stdout)
    assert all(s["redis_connected"] for s in snaps), snaps
    assert any(w["last_heartbeat"] for s in snaps for w in s["workers"]), "heartbeats are visible"
    assert all(s["connections"]["consumers"] == 1 for s in snaps), "the connection table is readable"
    client.execute_command("ACL", "DELUSER", "doorman")


@pytest.fixture
def tls_redis(tls_files):
    port = free_port()
    server = RedisServer(extra=[
        "--tls-port", str(port), "--tls-cert-file", str(tls_files / "server.crt"),
        "--tls-key-file", str(tls_files / "server.key"), "--tls-ca-cert-file", str(tls_files / "ca.crt"),
        "--tls-auth-clients", "no",
    ]).start()
    server.tls_port = port
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(tls_files / "ca.crt")).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield server
    server.cleanup()


@pytest.mark.e2e
def test_tls_verifies_the_certificate_by_default(tls_redis, tls_files):
    url = f"rediss://127.0.0.1:{tls_redis.tls_port}/0"
    ok = cli("doorman-collect", "--once", "--redis-url", url,
             env={"DOORMAN_TLS_CA_FILE": str(tls_files / "ca.crt")})
    [snap] = records(ok.stdout)
    assert snap["redis_connected"] is True, snap["error"]
    assert ok.stderr == b""

    # The system CAs do not know our throw-away CA: refused, not silently accepted.
    down = collect_once(url)
    assert down["redis_connected"] is False and "certificate verify failed" in down["error"]

    wrong_ca = collect_once(url, env={"DOORMAN_TLS_CA_FILE": str(tls_files / "other.crt")})
    assert wrong_ca["redis_connected"] is False


@pytest.mark.slow
def test_disabling_tls_verification_is_explicit_and_warned(tls_redis):
    url = f"rediss://127.0.0.1:{tls_redis.tls_port}/0"
    result = cli("doorman-collect", "--once", "--redis-url", url, env={"DOORMAN_TLS_INSECURE": "true"})
    [snap] = records(result.stdout)
    assert snap["redis_connected"] is True
    assert b"warning: TLS certificate verification of the broker is disabled" in result.stderr


def test_plain_http_webhooks_only_to_loopback_or_when_allowed(tmp_path):
    bad = cli("doorman-collect", "--once", "--redis-url", f"redis://127.0.0.1:{free_port()}/0",
              env={"GENERIC_WEBHOOK_URL": "http://alerts.example.com/hook/TOKEN123"})
    assert bad.returncode == 2
    err = bad.stderr.decode()
    assert "environment: GENERIC_WEBHOOK_URL: must be https://" in err and "TOKEN123" not in err
    ok = cli("doorman-collect", "--once", "--redis-url", f"redis://127.0.0.1:{free_port()}/0",
             env={"GENERIC_WEBHOOK_URL": "http://alerts.example.com/hook/TOKEN123",
                  "DOORMAN_ALLOW_INSECURE_WEBHOOKS": "1"})
    assert ok.returncode == 0


def test_world_readable_config_with_secrets_is_warned_about(tmp_path):
    cfg = tmp_path / "doorman.yaml"
    cfg.write_text(f"redis_url: redis://:pw-SECRET-1@127.0.0.1:{free_port()}/0\n")
    loud = collect_with_config(cfg, 0o644)
    assert f"{cfg} holds secrets and is readable by other users".encode() in loud.stderr
    assert b"pw-SECRET-1" not in loud.stdout + loud.stderr
    assert b"readable by other users" not in collect_with_config(cfg, 0o600).stderr


# The rule an earlier release documented: no INFO, MULTI, CLIENT LIST... Upgrading must not turn
# a working deployment into a permanent redis_down: the extra reads are simply unknown.
EARLIER_ACL = (
    "on >{password} resetkeys resetchannels -@all "
    "+ping +hello +auth +client|setname +select "
    "+scan +type +smembers +zcard +zrange +llen +lindex "
    "+sadd +srem +brpop +del +publish +psubscribe +punsubscribe "
    f"%R~* %RW~{KEYS.reply_binding} %RW~{KEYS.reply_queue('*')} "
    f"&{KEYS.pidbox_channel} &{KEYS.events_pattern}"
)


@pytest.mark.e2e
def test_an_acl_from_an_earlier_release_still_reads_the_queues_and_the_workers(redis_server, workers):
    client = redis_server.client()
    password = "acl-Secret-44xyz"
    client.execute_command("ACL", "SETUSER", "doorman", *EARLIER_ACL.format(password=password).split())
    try:
        w = workers(redis_server.url, "w1@test", client=client)
        enqueue(redis_server.url, 2, task="demo.add", args=(1, 2), queue="waiting")
        result = cli("doorman-collect", "--once", "--redis-url",
                     f"redis://doorman:{password}@127.0.0.1:{redis_server.port}/0")
        [snap] = records(result.stdout)
        assert snap["redis_connected"] is True and snap["error"] is None, snap["error"]
        assert snap["queues"]["waiting"]["pending"] == 2
        assert [(x["name"], x["responded"]) for x in snap["workers"]] == [(w.name, True)]
    finally:
        client.execute_command("ACL", "DELUSER", "doorman")
