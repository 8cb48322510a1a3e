"""doorman-collect against a real redis-server and real Celery workers."""

from __future__ import annotations

import subprocess
import time

import orjson
import pytest

from doorman import brokers
from doorman.brokers.redis.keys import Keys
from doorman.collect.snapshot import Collector
from doorman.config.load import load_config
from tests.support.process import BIN, cli, collect_once, records, wait_for
from tests.support.workers import celery_app, enqueue

KEYS = Keys()  # kombu's names with the default transport options (no prefix, database 0)


def keyspace(client) -> dict[bytes, object]:
    """Every key with its full value, to prove a check changed nothing."""
    out = {}
    for k in client.scan_iter(count=1000):
        t = client.type(k)
        if t == b"list":
            out[k] = client.lrange(k, 0, -1)
        elif t == b"set":
            out[k] = sorted(client.smembers(k))
        elif t == b"zset" and k.endswith(b"binding_deadlines"):
            out[k] = sorted(client.zrange(k, 0, -1))  # live workers refresh these scores themselves
        elif t == b"zset":
            out[k] = client.zrange(k, 0, -1, withscores=True)
        elif t == b"hash":
            out[k] = client.hgetall(k)
        else:
            out[k] = client.dump(k)
    return out


def test_empty_broker_reports_default_queue_with_depth_zero(redis_server):
    snap = collect_once(redis_server.url)
    assert snap["v"] == 1 and snap["kind"] == "snapshot" and snap["redis_connected"] is True
    assert snap["error"] is None
    assert snap["pending_tasks"] == 0
    assert snap["queues"] == {"celery": {"pending": 0, "by_priority": {"0": 0, "3": 0, "6": 0, "9": 0},
                                         "oldest": None, "heads": [], "source": "config",
                                         "consumers": 0, "consumed_by": []}}
    assert snap["alive_workers"] == 0 and snap["workers"] == [] and snap["active"] == []
    assert snap["unacked"]["count"] == 0 and snap["unacked"]["oldest_delivered_at"] is None


def test_priorities_are_summed_and_every_head_is_read(redis_server):
    url = redis_server.url
    ids = {}
    for pri in (0, 3, 6, 9):
        ids[pri] = enqueue(url, 3, task="demo.add", args=(1, 2), queue="prio", priority=pri)
    snap = collect_once(url, env={"MONITORED_QUEUES": "prio"})
    q = snap["queues"]["prio"]
    assert q["pending"] == 12 and snap["pending_tasks"] == 12
    assert q["by_priority"] == {"0": 3, "3": 3, "6": 3, "9": 3}
    # The head of each list is the first message published into it (kombu LPUSHes, BRPOPs the tail).
    assert [(h["priority"], h["task_id"]) for h in q["heads"]] == [(p, ids[p][0]) for p in (0, 3, 6, 9)]
    assert all(h["task_name"] == "demo.add" for h in q["heads"])
    # Stamped by doorman.hook: the age is exact and the oldest is the first published overall.
    assert q["oldest"]["task_id"] == ids[0][0]
    assert q["oldest"]["age_source"] == "published_header"
    assert 0 <= q["oldest"]["age_seconds"] < 30


def test_unstamped_messages_report_the_head_without_an_age(redis_server):
    url = redis_server.url
    app = celery_app(url, stamp=False)
    first = app.send_task("demo.add", args=(1, 1), queue="plain").id
    app.send_task("demo.add", args=(1, 1), queue="plain")
    snap = collect_once(url, env={"MONITORED_QUEUES": "plain"})
    oldest = snap["queues"]["plain"]["oldest"]
    assert oldest["task_id"] == first and oldest["age_seconds"] is None and oldest["age_source"] is None


@pytest.mark.e2e
def test_queues_are_discovered_from_kombu_bindings(redis_server, workers):
    url, client = redis_server.url, redis_server.client()
    workers(url, "w1@test", client=client, queues="emails,reports")
    enqueue(url, 2, task="demo.add", args=(1, 2), queue="published-only")  # the producer declares it
    client.lpush("unbound-anon", b"{}", b"{}")  # a list nobody declared: no binding
    snap = collect_once(url)
    assert snap["queues"]["emails"]["source"] == "binding"
    assert snap["queues"]["reports"]["source"] == "binding"
    assert snap["queues"]["published-only"]["pending"] == 2
    assert snap["queues"]["celery"]["source"] == "config"
    assert "unbound-anon" not in snap["queues"]  # documented: configure such queues in monitored_queues
    snap = collect_once(url, env={"MONITORED_QUEUES": "celery,unbound-anon"})
    assert snap["queues"]["unbound-anon"]["pending"] == 2


@pytest.mark.e2e
def test_global_keyprefix_is_applied(redis_server, workers, tmp_path):
    url, client = redis_server.url, redis_server.client()
    workers(url, "wp@test", client=client, prefix="pfx:", env={"DOORMAN_DEMO_KEYPREFIX": "pfx:"})
    enqueue(url, 4, task="demo.add", args=(1, 2), queue="pq", priority=6, keyprefix="pfx:")
    assert client.llen(dict(Keys("pfx:").queue_lists("pq"))[6]) == 4
    cfg = tmp_path / "c.yaml"
    cfg.write_text("monitored_queues: [pq]\nbroker_transport_options:\n  global_keyprefix: 'pfx:'\n")
    snap = collect_once(url, "--config", str(cfg))
    assert snap["queues"]["pq"]["by_priority"]["6"] == 4
    assert snap["queues"]["celery"]["source"] == "binding"
    assert [w["name"] for w in snap["workers"]] == ["wp@test"] and snap["alive_workers"] == 1


def test_non_json_messages_never_crash(redis_server):
    client = redis_server.client()
    client.lpush("junk", b"\x80\x04\x95pickle\x00", b"not json", b'{"headers": "nope"}', b"[1,2]")
    snap = collect_once(redis_server.url, env={"MONITORED_QUEUES": "junk"})
    q = snap["queues"]["junk"]
    assert q["pending"] == 4
    assert q["oldest"]["unparseable"] is True and q["oldest"]["task_id"] is None


def test_odd_queue_names_round_trip(redis_server):
    client = redis_server.client()
    name = "q with space/ü*"
    client.lpush(name.encode(), b"x")
    snap = collect_once(redis_server.url, env={"MONITORED_QUEUES": name})
    assert snap["queues"][name]["pending"] == 1


@pytest.mark.e2e
def test_running_tasks_and_unacked_are_reported_and_untouched(redis_server, workers):
    url, client = redis_server.url, redis_server.client()
    w = workers(url, "w1@test", client=client, concurrency=1,
                env={"DOORMAN_DEMO_ACKS_LATE": "1"})
    ids = enqueue(url, 3, task="demo.sleep", args=(30,))
    wait_for(lambda: client.zcard(KEYS.unacked_index) >= 3, 20, "3 unacked tasks")
    time.sleep(0.5)
    before = keyspace(client)
    snap = collect_once(url)
    assert keyspace(client) == before, "a check must not change the broker"
    assert snap["alive_workers"] == 1
    assert snap["workers"][0] == {"name": w.name, "alive": True, "responded": True, "active": 1,
                                  "last_heartbeat": None, "heartbeat_freq": None,
                                  "processed": 1, "concurrency": 1, "queues": ["celery"]}
    [task] = snap["active"]
    assert task["task_id"] == ids[0] and task["task_name"] == "demo.sleep" and task["worker"] == w.name
    assert task["queue"] == "celery" and task["runtime_seconds"] >= 0
    assert snap["unacked"]["count"] == 3 and snap["unacked"]["oldest_age_seconds"] >= 0


@pytest.mark.e2e
def test_killed_worker_shows_dead_and_check_stays_fast(redis_server, workers):
    url, client = redis_server.url, redis_server.client()
    live = workers(url, "live@test", client=client)
    dead = workers(url, "dead@test", client=client)
    dead.kill9()
    snap = collect_once(url, env={"DOORMAN_INSPECT_TIMEOUT": "5"})
    by_name = {w["name"]: w for w in snap["workers"]}
    assert by_name[live.name]["alive"] is True
    assert by_name[dead.name]["alive"] is False  # its pidbox binding outlives it
    assert snap["alive_workers"] == 1
    # Only subscribed workers are waited for: a stale binding costs no timeout (5 s a request, and
    # there are three), however slow the machine is at answering
    assert snap["collect_ms"] < 4000


@pytest.mark.e2e
def test_twenty_runs_leave_no_keys_behind(redis_server, workers):
    url, client = redis_server.url, redis_server.client()
    workers(url, "w1@test", client=client)
    enqueue(url, 2, task="demo.add", args=(1, 2), queue="elsewhere")
    time.sleep(0.5)
    before = keyspace(client)
    for _ in range(20):
        collect_once(url)
    time.sleep(0.3)  # a late reply would land as a new key
    assert keyspace(client) == before


@pytest.mark.e2e
def test_password_never_appears_in_any_output(make_redis):
    secret = "s3cr3t-Pa55word-xyz"
    server = make_redis(password=secret)
    snap_run = cli("doorman-collect", "--once", "--redis-url", server.url)
    assert snap_run.returncode == 0, snap_run.stderr
    [snap] = records(snap_run.stdout)
    assert snap["redis_connected"] is True and snap["broker"].endswith(f"127.0.0.1:{server.port}/0")
    wrong = server.url.replace(secret, secret + "-wrong")
    bad = cli("doorman-collect", "--once", "--redis-url", wrong)
    [down] = records(bad.stdout)
    assert down["redis_connected"] is False and down["error"]
    for out in (snap_run.stdout, snap_run.stderr, bad.stdout, bad.stderr):
        assert secret.encode() not in out
    assert b"***" in snap_run.stdout


def test_collector_library_runs_without_processes(redis_server):
    """The CLI is a thin wrapper: the library gives the same snapshot with an injected clock."""
    enqueue(redis_server.url, 2, task="demo.add", args=(1, 2))
    cfg = load_config(None, env={"REDIS_URL": redis_server.url})
    c = Collector(cfg, brokers.connect(cfg), clock=lambda: 1_800_000_000.0)
    snap = c.snapshot()
    c.close()
    assert snap["ts"] == "2027-01-15T08:00:00.000Z" and snap["pending_tasks"] == 2


@pytest.mark.e2e
def test_daemon_writes_a_snapshot_when_a_worker_dies_without_waiting_for_the_interval(redis_server, workers):
    """kill -9 of the last worker: a `connection_lost` snapshot shows it dead as soon as its connections
    vanish (the heartbeat fallback, without CLIENT LIST: tests/test_liveness.py)."""
    url, client = redis_server.url, redis_server.client()
    w = workers(url, "w1@test", client=client)
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--redis-url", url, "--interval", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = orjson.loads(proc.stdout.readline())
        assert first["trigger"] == "interval" and first["alive_workers"] == 1
        seen = orjson.loads(proc.stdout.readline())  # first heartbeat: the worker is known to the tracker
        assert seen["trigger"] == "heartbeat" and seen["workers"][0]["last_heartbeat"] is not None
        killed_at = time.time()
        w.kill9()
        dead = orjson.loads(proc.stdout.readline())
        detected_after = time.time() - killed_at
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert dead["trigger"] == "connection_lost"
    assert dead["alive_workers"] == 0
    assert dead["workers"][0]["alive"] is False and dead["workers"][0]["responded"] is False
    assert detected_after < 60  # bounded well below the 300 s interval; the figure itself is in make bench


def test_a_stamp_in_milliseconds_or_absurd_numbers_never_blind_the_collector(redis_server):
    client = redis_server.client()
    for stamp in ("1.7e12", "1e308", "-5", '"soon"', "true"):
        client.rpush("odd", b'{"headers": {"id": "t", "task": "x", "x_doorman_published_at": %s}}' % stamp.encode())
    client.zadd(KEYS.unacked_index, {"tag": 1e15})
    snap = collect_once(redis_server.url, env={"MONITORED_QUEUES": "odd"})
    assert snap["redis_connected"] is True and snap["error"] is None
    assert snap["queues"]["odd"]["oldest"]["age_seconds"] is None  # not a plausible time: unknown
    assert snap["unacked"]["count"] == 1 and snap["unacked"]["oldest_delivered_at"] is None


@pytest.mark.slow
def test_a_short_redis_timeout_is_not_mistaken_for_a_dead_broker(redis_server):
    """A subscriber that never answers (like a solo worker busy with a task) makes the check wait
    for its reply; that wait must stay shorter than the socket timeout."""
    silent = redis_server.client().pubsub()
    silent.subscribe(KEYS.pidbox_channel)
    try:
        snap = collect_once(redis_server.url, env={"DOORMAN_REDIS_TIMEOUT": "0.5", "DOORMAN_INSPECT_TIMEOUT": "1.5"})
        assert snap["redis_connected"] is True, snap["error"]
        assert snap["workers_subscribed"] == 1 and snap["alive_workers"] == 0
    finally:
        silent.close()
