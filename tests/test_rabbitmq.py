"""RabbitMQ as a broker: the real rabbitmq-server (one throw-away vhost per test), real Celery
workers, the real commands. What collect reports must be what RabbitMQ itself reports."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import orjson
import pytest

from doorman.simulate.outage import Outage
from doorman.simulate.partition import Partition
from doorman.timefmt import parse_iso
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.process import BIN, cli, collect_once, free_port, records, wait_for
from tests.support.rabbit import Vhost, vhost_fixture, wait_listening  # noqa: F401 - the fixture `vhost`
from tests.support.receiver import Receiver
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e

HOOK = "/hooks/doorman"


def settled(v: Vhost, url: str, queue: str, ready: int, unacked: int, *args: str, consumers: int | None = None,
            head: bool = False) -> dict:
    """Once RabbitMQ shows `ready`/`unacked` on `queue`, the snapshot that agrees (the management
    API's figures trail the queues by its statistics interval, 5 s by default)."""
    wait_for(lambda: (v.queues().get(queue, {}).get("messages_ready"),
                      v.queues().get(queue, {}).get("messages_unacknowledged")) == (ready, unacked),
             30, f"rabbitmqctl to show {ready} ready / {unacked} unacked on {queue}")

    def agrees() -> dict | None:
        snap = collect_once(url, *args)
        q = snap["queues"].get(queue) or {}
        counted = consumers is None or q.get("consumers") == consumers  # the API's figures trail, each on its own
        # depth is AMQP's at the check; the head's timestamp is the API's, one statistics interval later
        counted = counted and (not head or (q.get("oldest") or {}).get("age_source") is not None)
        return snap if (q.get("pending"), q.get("unacked")) == (ready, unacked) and counted else None

    return wait_for(agrees, 20, "the snapshot to agree with rabbitmqctl")


def test_depth_unacked_consumers_and_age_equal_rabbitmqctl(vhost, workers):
    url = vhost.url()
    w = workers(url, "w1@rabbit", concurrency=1)
    wait_listening(vhost, w)
    enqueue(url, 6, task="demo.sleep", args=(60,))
    # concurrency 1, prefetch 4: one running (acknowledged on start), 4 delivered and held, 1 ready
    snap = settled(vhost, url, "celery", 1, 4, consumers=1, head=True)
    ctl = vhost.queues()["celery"]
    q = snap["queues"]["celery"]
    assert (q["pending"], q["unacked"], q["consumers"]) == (ctl["messages_ready"], ctl["messages_unacknowledged"],
                                                            ctl["consumers"]) == (1, 4, 1)
    # ready and consumers read over AMQP now; unacked from the management API, which says how old it may be
    assert (q["depth_source"], q["depth_age_max_seconds"], q["unacked_age_max_seconds"]) == ("amqp_passive", 0.0, 5.0)
    assert q["oldest"]["age_source"] == "head_message_timestamp"
    assert 0 <= q["oldest"]["age_seconds"] < 120
    assert snap["pending_tasks"] == 1 and snap["unacked"]["count"] == 4
    assert snap["redis_connected"] is True and snap["error"] is None
    assert snap["broker"] == f"amqp://guest:***@127.0.0.1:5672/{vhost.path}"
    # the worker answered the broadcast with the task it runs
    [worker] = snap["workers"]
    assert (worker["name"], worker["alive"], worker["responded"], worker["active"]) == ("w1@rabbit", True, True, 1)
    assert snap["workers_subscribed"] == 1
    assert [(t["task_name"], t["queue"]) for t in snap["active"]] == [("demo.sleep", "celery")]
    health = snap["broker_health"]
    assert health["server"] == "rabbitmq" and health["alarms"] == []
    assert health["used_memory_bytes"] > 0 and health["max_memory_bytes"] > health["used_memory_bytes"]
    # Celery's and Doorman's plumbing is not listed as task queues; nothing of Doorman's is left
    assert set(snap["queues"]) == {"celery"}
    assert not [n for n in vhost.queues() if n.startswith("doorman.")]


def test_event_queue_is_doormans_own_bound_to_worker_and_task_events_only_and_gone_after_kill9(vhost, workers):
    url = vhost.url()
    wait_listening(vhost, workers(url, "w1@rabbit"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_BROKER", "DOORMAN_"))}
    collect = subprocess.Popen([str(BIN / "doorman-collect"), "--broker-url", url, "--interval", "0.5"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        def own(purpose: str = "") -> dict:
            return {n: q for n, q in vhost.queues().items() if n.startswith(f"doorman.{purpose}")}

        # its heartbeat queue; a broadcast's reply queue (`doorman.reply.*`) comes and goes beside it
        mine = wait_for(lambda: own("ev."), 20, "doorman-collect's heartbeat queue")
        [(name, q)] = mine.items()
        assert (q["durable"], q["exclusive"], q["auto_delete"]) == (False, True, True)
        bound = [(b["source_name"], b["routing_key"]) for b in vhost.bindings() if b["destination_name"] == name]
        # the default exchange's, and the worker and task events (one subscription for both)
        assert sorted(bound) == [("", name), ("celeryev", "task.#"), ("celeryev", "worker.#")]
        first = orjson_line(collect.stdout.readline())
        assert first["redis_connected"] is True
        collect.kill()  # kill -9
        collect.wait()
        wait_for(lambda: not own() and not [b for b in vhost.bindings() if b["destination_name"].startswith("doorman.")],
                 20, "RabbitMQ to delete Doorman's queue and binding after kill -9 of collect")
    finally:
        if collect.poll() is None:
            collect.kill()
            collect.wait()
    # every queue left is the worker's own (its task queue, pidbox and event queue)
    assert {n for n in vhost.queues() if not n.startswith(("celeryev.", "w1@rabbit."))} == {"celery"}


def orjson_line(line: bytes) -> dict:
    [record] = records(line)
    return record


def test_management_api_down_collect_falls_back_to_amqp_and_says_so(vhost, workers):
    url = vhost.url()
    enqueue(url, 3, task="demo.add", args=(1, 2))
    wait_for(lambda: vhost.queues().get("celery", {}).get("messages_ready") == 3, 20, "3 ready in rabbitmqctl")
    closed = free_port()
    snap = collect_once(url, env={"DOORMAN_RABBITMQ_MANAGEMENT_URL": f"http://guest:sEcReT-mgmt@127.0.0.1:{closed}"})
    q = snap["queues"]["celery"]
    assert (q["pending"], q["depth_source"], q["unacked"], q["oldest"]["age_seconds"]) == (3, "amqp_passive", None, None)
    assert (q["depth_age_max_seconds"], q["unacked_age_max_seconds"]) == (0.0, None)
    assert snap["pending_tasks"] == 3 and snap["unacked"]["count"] is None
    assert snap["redis_connected"] is True and snap["error"] is None
    assert snap["broker_health"] is None  # the server's figures come only from the management API
    # said on stderr once a run, not once a snapshot, and never with the URL's secret
    result = cli("doorman-collect", "--interval", "0.3", "--count", "3",
                 env={"CELERY_BROKER_URL": url,
                      "DOORMAN_RABBITMQ_MANAGEMENT_URL": f"http://guest:sEcReT-mgmt@127.0.0.1:{closed}"})
    assert result.returncode == 0 and len(records(result.stdout)) == 3
    assert result.stderr.decode().splitlines() == [
        f"doorman-collect: management API: cannot connect to 127.0.0.1:{closed} (connection refused): "
        "reading monitored_queues over AMQP "
        "instead, without unacked counts, queue discovery or broker health until it answers (docs/rabbitmq.md)"]
    assert b"sEcReT-mgmt" not in result.stdout + result.stderr


def test_a_management_api_that_stops_answering_is_said_once_and_its_return_once(vhost):
    from doorman.brokers.rabbitmq.broker import RabbitConnection
    from doorman.brokers.rabbitmq.management import Management
    from doorman.config.load import load_config

    said: list[str] = []
    cfg = load_config(None, env={"CELERY_BROKER_URL": vhost.url(),
                                 "DOORMAN_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:15672"})
    conn = RabbitConnection(cfg, say=said.append)
    real = conn.api
    try:
        conn.topology()
        conn.api = Management(f"http://127.0.0.1:{free_port()}", None, 2.0, True)  # nothing listens there
        conn.topology()
        conn.topology()
        conn.api = real
        conn.topology()
        conn.topology()
    finally:
        conn.close()
    assert [line.split(" (", 1)[0] for line in said] == ["management API: cannot connect to 127.0.0.1:"
                                                         + said[0].split("127.0.0.1:")[1].split(" ")[0],
                                                         "management API answers again"]


def test_management_api_up_and_amqp_gone_is_a_broker_down_not_every_worker_gone(vhost):
    """The management API still answers for the vhost (no worker in it), but the AMQP connection a
    running collect holds was cut, and nothing listens any more where Celery talks to the broker:
    the next snapshot says the broker is down, and the alert is `redis_down`."""
    relay = Partition("127.0.0.1", 5672)
    url = vhost.url().replace(":5672/", f":{relay.port}/")
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--broker-url", url, "--interval", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "DOORMAN_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:15672"})
    try:
        first = orjson_line(proc.stdout.readline())
        assert first["redis_connected"] is True and first["alive_workers"] == 0
        relay.close()
        cut = time.time()
        second = first
        while parse_iso(second["ts"]) < cut:  # one begun before the cut may have finished
            second = orjson_line(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        relay.close()
    assert second["redis_connected"] is False and second["error"], second
    result = cli("doorman-analyze", input=orjson.dumps(first) + b"\n" + orjson.dumps(second) + b"\n")
    assert [(a["alert_type"], a["status"]) for a in records(result.stdout)] == [
        ("celery_disconnected", "firing"), ("redis_down", "firing")]  # no worker in the vhost, then no broker


def test_a_broker_that_stalls_between_checks_is_reported_down_once_then_resolved(vhost, workers):
    """RabbitMQ accepts and answers nothing for 12.3 s (both its ports held by a relay: the chaos soak's
    long pause). The liveness polls run between checks on the same connection: the first unanswered
    one calls for a snapshot at once, which says the broker is down, and analyze pages `redis_down`
    once and resolves it when the broker answers again."""
    amqp_relay, api_relay = Outage("127.0.0.1", 5672), Outage("127.0.0.1", 15672)
    w = workers(vhost.url(), "steady@stall")  # the worker talks to RabbitMQ directly: only Doorman stalls
    wait_listening(vhost, w)
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--interval", "5"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env={**os.environ, "REDIS_URL": vhost.url().replace(":5672/", f":{amqp_relay.port}/"),
                                 "DOORMAN_RABBITMQ_MANAGEMENT_URL": f"http://127.0.0.1:{api_relay.port}"})
    snaps: list[dict] = []
    try:
        def heard(snap: dict) -> bool:  # the polls follow the worker, and its heartbeats reach collect
            return snap.get("alive_workers") == 1 and bool(snap["workers"][0].get("last_heartbeat"))

        while not snaps or not heard(snaps[-1]):
            snaps.append(orjson_line(proc.stdout.readline()))
        time.sleep(1.5)  # a few polls: the first ones also try the event-exchange plugin once
        holds = [threading.Thread(target=r.hold, args=(12.3,)) for r in (amqp_relay, api_relay)]
        for t in holds:
            t.start()
        held = time.time()
        for t in holds:
            t.join()
        released = time.time()
        while parse_iso(snaps[-1]["ts"]) < released:
            snaps.append(orjson_line(proc.stdout.readline()))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        amqp_relay.close()
        api_relay.close()
    during = [s for s in snaps if held <= parse_iso(s["ts"]) < released]
    assert [s["redis_connected"] for s in during][:1] == [False], [(round(parse_iso(s["ts"]) - held, 2), s["trigger"], s["redis_connected"], s["collect_ms"], s["error"]) for s in snaps]
    # reported within the stall: by the snapshot the first unanswered poll called for (or one a
    # heartbeat going overdue called for, if it came first)
    assert during[0]["trigger"] in ("broker_unanswered", "heartbeat") and parse_iso(during[0]["ts"]) < held + 9, \
        during[0]
    assert snaps[-1]["redis_connected"] is True
    result = cli("doorman-analyze", input=b"".join(orjson.dumps(s) + b"\n" for s in snaps),
                 env={"DOORMAN_CONFIG": ""})
    assert [(a["alert_type"], a["status"]) for a in records(result.stdout)] == [
        ("redis_down", "firing"), ("redis_down", "resolved")]


def test_kill9_of_the_last_worker_pages_workers_down_at_the_webhook(vhost, workers, tmp_path):
    url = vhost.url()
    receiver = Receiver()
    worker = workers(url, "busy@rabbit", queues="busy", concurrency=1)
    wait_listening(vhost, worker)
    enqueue(url, 1, task="demo.sleep", args=(120,), queue="busy")
    enqueue(url, 5, task="demo.add", args=(2, 3), queue="celery")
    pipe = DaemonPipeline(url, receiver.url(HOOK), interval=30, workdir=str(tmp_path)).start()
    try:
        pipe.wait_heartbeat("busy@rabbit", timeout=30)
        wait_for(lambda: vhost.queues().get("busy", {}).get("messages_ready") == 0, 20,
                 "the worker to take the sleep task")
        time.sleep(5)  # busy, not dead: more than Celery's expiry window, and no page
        assert receiver.at(HOOK) == []
        killed = time.monotonic()
        worker.kill9()
        got = wait_for(lambda: receiver.delivered(HOOK), 30, "the workers_down alert at the webhook")
        took = time.monotonic() - killed
    finally:
        pipe.stop()
        receiver.close()
    print(f"\nRabbitMQ: kill -9 of the last worker -> workers_down at the webhook in {took:.1f} s")
    alert = got[0].json
    assert (alert["alert_type"], alert["status"], alert["severity"]) == ("workers_down", "firing", "emergency")
    assert alert["details"]["pending_tasks"] >= 5 and alert["details"]["queues"]["celery"] == 5
    assert "busy@rabbit" in alert["details"]["known_workers"]
    raised_by = [s for s in pipe.snapshots() if s["ts"] == alert["ts"]]
    assert [s["trigger"] for s in raised_by] == ["connection_lost"]  # its pidbox queue went with its connection


def test_collect_refuses_a_bad_management_url_naming_the_key(tmp_path):
    cfg = tmp_path / "doorman.yaml"
    cfg.write_text("broker_url: amqp://guest:guest@127.0.0.1:5672//\nrabbitmq_management_url: ftp://x\n")
    cfg.chmod(0o600)
    result = cli("doorman-collect", "--once", "--config", str(cfg))
    assert result.returncode == 2
    [line] = result.stderr.decode().splitlines()
    assert "rabbitmq_management_url" in line and str(cfg) in line and "Traceback" not in line


def test_sigterm_ends_collect_cleanly_on_rabbitmq(vhost):
    proc = subprocess.Popen([str(BIN / "doorman-collect"), "--broker-url", vhost.url(), "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert all(r["kind"] == "snapshot" for r in records(first + out))


# The least-privilege user of docs/security.md, exactly as documented there.
MONITOR_PERMISSIONS = {"configure": r"^doorman\.", "write": r"^(doorman\..*|celery\.pidbox)$",
                       "read": r"^(doorman\..*|celeryev)$"}


def test_least_privilege_user_reads_everything_and_can_touch_no_task(vhost, workers, tmp_path):
    import amqp
    import pytest

    from tests.support.rabbit import api

    user, password = f"doorman-{vhost.name[-10:]}", "mon-Pass-1234"
    api("PUT", f"/api/users/{user}", {"password": password, "tags": "monitoring"})
    try:
        api("PUT", f"/api/permissions/{vhost.path}/{user}", MONITOR_PERMISSIONS)
        url, monitor = vhost.url(), vhost.url(user, password)
        wait_listening(vhost, workers(url, "w1@rabbit"))
        enqueue(url, 6, task="demo.sleep", args=(60,))
        snap = settled(vhost, monitor, "celery", 1, 4)
        assert snap["error"] is None and snap["broker_health"]["server"] == "rabbitmq"  # /api/nodes: monitoring tag
        assert [(w["name"], w["responded"], w["active"]) for w in snap["workers"]] == [("w1@rabbit", True, 1)]

        # the daemon's heartbeat queue works too: a worker seen alive from heartbeats
        result = cli("doorman-collect", "--broker-url", monitor, "--interval", "2.5", "--count", "3")  # 5 s: 2 beats
        assert result.returncode == 0, result.stderr
        last = records(result.stdout)[-1]
        assert last["error"] is None and [w["last_heartbeat"] is not None for w in last["workers"]] == [True]
        assert password.encode() not in result.stdout + result.stderr

        # and it can neither take a task nor declare anything outside doorman.*
        conn = amqp.Connection("127.0.0.1:5672", userid=user, password=password, virtual_host=vhost.name)
        conn.connect()
        try:
            with pytest.raises(amqp.exceptions.AccessRefused):
                conn.channel().basic_get(queue="celery")
            with pytest.raises(amqp.exceptions.AccessRefused):
                conn.channel().queue_declare(queue="sneaky", auto_delete=True)
            with pytest.raises(amqp.exceptions.AccessRefused):
                conn.channel().basic_publish(amqp.Message(b"{}"), exchange="celery", routing_key="celery")
                conn.drain_events(timeout=2)
        finally:
            conn.collect()
        assert vhost.queues()["celery"]["messages_ready"] + vhost.queues()["celery"]["messages_unacknowledged"] == 5
    finally:
        api("DELETE", f"/api/users/{user}")


def test_amqps_verifies_the_certificate_by_default(vhost, tls_files):
    from tests.support.rabbit import TlsTerminator

    tls = TlsTerminator(str(tls_files / "server.crt"), str(tls_files / "server.key"))
    try:
        url = f"amqps://guest:guest@127.0.0.1:{tls.port}/{vhost.path}"
        mgmt = {"DOORMAN_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:15672"}
        ok = collect_once(url, env={**mgmt, "DOORMAN_TLS_CA_FILE": str(tls_files / "ca.crt")})
        assert ok["redis_connected"] is True and ok["error"] is None
        assert ok["broker_health"] is not None  # the management API answered
        # the system CAs do not know the throw-away CA: refused, never silently accepted
        down = collect_once(url, env=mgmt)
        assert down["redis_connected"] is False and "CERTIFICATE_VERIFY_FAILED" in down["error"].upper()
        wrong = collect_once(url, env={**mgmt, "DOORMAN_TLS_CA_FILE": str(tls_files / "other.crt")})
        assert wrong["redis_connected"] is False
        insecure = cli("doorman-collect", "--once", "--broker-url", url, env={**mgmt, "DOORMAN_TLS_INSECURE": "true"})
        [snap] = records(insecure.stdout)
        assert snap["redis_connected"] is True and snap["error"] is None
        assert b"warning: TLS certificate verification of the broker is disabled" in insecure.stderr
    finally:
        tls.close()


def test_prefetched_messages_held_without_an_ack_raise_consumer_timeout_risk(vhost, workers):
    url = vhost.url()
    wait_listening(vhost, workers(url, "w1@rabbit", concurrency=1))
    enqueue(url, 6, task="demo.sleep", args=(120,))  # one runs, 4 wait prefetched and unacked: no ack comes
    settled(vhost, url, "celery", 1, 4)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_BROKER", "DOORMAN_"))}
    env.update({"DOORMAN_RABBITMQ_CONSUMER_TIMEOUT": "8", "DOORMAN_CONSUMER_TIMEOUT_WARN_RATIO": "0.5",
                "DOORMAN_CONFIG": ""})
    collect = subprocess.Popen([str(BIN / "doorman-collect"), "--broker-url", url, "--interval", "1", "--count", "8"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    analyze = subprocess.run([str(BIN / "doorman-analyze")], stdin=collect.stdout, capture_output=True, env=env,
                             timeout=60)
    collect.stdout.close()
    collect.wait(30)
    assert analyze.returncode == 0, analyze.stderr
    risks = [a for a in records(analyze.stdout) if a["alert_type"] == "consumer_timeout_risk"]
    # warned once held for half of it (a slow machine may also reach the timeout itself: critical)
    assert (risks[0]["severity"], risks[0]["status"]) == ("warning", "firing")
    assert [a["severity"] for a in risks[1:]] in ([], ["critical"])
    details = risks[0]["details"]
    assert 4 <= details["held_at_least_seconds"] < 8 and details["unacked"] == 4
    assert details["consumer_timeout_seconds"] == 8
