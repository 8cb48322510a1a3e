"""RabbitMQ at parity with Redis (issue 26), with real parts: the machine's rabbitmq-server in a
throw-away vhost, real Celery workers, the real daemon line and a real HTTP receiver.

Depth is read over AMQP at the moment of the check; a dead worker is seen from its pidbox queue
(gone with its connection) between snapshots; each worker is tied to its task consumers through
its connection. Timing is the benchmark's business (tests/bench/bench_rabbitmq.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from doorman.config.load import make_config
from doorman.rules.ghost_worker import RULE as GHOST
from doorman.simulate.procs import children_of
from tests.support.daemon_pipeline import DaemonPipeline
from tests.support.process import BIN, ROOT, cli, collect_once, records, wait_for
from tests.support.rabbit import Vhost, api, vhost_fixture, wait_listening  # noqa: F401 - the fixture `vhost`
from tests.support.receiver import Receiver
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e  # real workers on a RabbitMQ vhost

HOOK = "/hooks/doorman"


def test_a_burst_is_counted_by_the_first_check_as_rabbitmqctl_counts_it(vhost):
    url = vhost.url()
    enqueue(url, 7, task="demo.add", args=(1, 2))
    snap = collect_once(url)  # at once: the management API's figures would still say 0
    q = snap["queues"]["celery"]
    assert (snap["pending_tasks"], q["pending"]) == (7, 7)
    assert (q["depth_source"], q["depth_age_max_seconds"]) == ("amqp_passive", 0.0)
    assert q["unacked_age_max_seconds"] == 5.0 and q["unacked"] is not None  # unacked: the API's, and says so
    assert vhost.queues()["celery"]["messages_ready"] == 7


def test_the_first_check_with_no_worker_and_tasks_waiting_is_workers_down(vhost):
    url = vhost.url()
    enqueue(url, 5, task="demo.add", args=(1, 2))
    collected = cli("doorman-collect", "--once", "--broker-url", url)
    assert collected.returncode == 0, collected.stderr
    analyzed = cli("doorman-analyze", input=collected.stdout, env={"DOORMAN_CONFIG": ""})
    got = [(a["alert_type"], a["severity"], a["details"]["pending_tasks"]) for a in records(analyzed.stdout)]
    assert got == [("workers_down", "emergency", 5)]


def test_kill9_one_of_three_then_the_rest_pages_from_the_pidbox_probes(vhost, workers, tmp_path):
    url = vhost.url()
    receiver = Receiver()
    ws = [workers(url, f"w{i}@rabbit", queues="busy") for i in (1, 2, 3)]
    for w in ws:
        wait_listening(vhost, w)
    enqueue(url, 5, task="demo.add", args=(2, 3), queue="celery")  # nobody consumes `celery`: they wait
    pipe = DaemonPipeline(url, receiver.url(HOOK), interval=30, workdir=str(tmp_path)).start()
    try:
        for w in ws:
            pipe.wait_heartbeat(w.name, timeout=30)
        wait_for(lambda: any((s.get("connections") or {}).get("consumers") == 3 for s in pipe.snapshots()), 30,
                 "a snapshot with the three workers' pidbox queues found")
        settled(pipe)  # the snapshots the workers' arrival called for are taken (each reads the pidboxes too)
        ws[0].kill9()
        wait_for(lambda: receiver.delivered(HOOK), 30, "worker_lost at the webhook")
        ws[1].kill9()
        ws[2].kill9()
        wait_for(lambda: any(r.json["alert_type"] == "workers_down" for r in receiver.delivered(HOOK)), 30,
                 "workers_down at the webhook")
    finally:
        pipe.stop()
        receiver.close()
    posts = [r.json for r in receiver.at(HOOK)]
    firing = [(a["alert_type"], a["subject"]) for a in posts if a["status"] == "firing"]
    assert firing[:2] == [("worker_lost", "worker:w1@rabbit"), ("workers_down", "cluster")], firing
    by_ts = {s["ts"]: s for s in pipe.snapshots()}
    assert by_ts[posts[0]["ts"]]["trigger"] == "connection_lost", posts[0]
    assert by_ts[posts[1]["ts"]]["trigger"] in ("connection_lost", "heartbeat"), posts[1]
    down = by_ts[posts[1]["ts"]]
    assert down["alive_workers"] == 0
    assert down["connections"] == {"clients": 0, "consumers": 0, "subscribers": 0, "by_host": {},
                                   "hosts_truncated": False, "source": "pidbox_probe"}
    assert posts[1]["details"]["pending_tasks"] == 5
    # Doorman left nothing behind but its own exclusive queues, gone with collect
    wait_for(lambda: not [n for n in vhost.queues() if n.startswith("doorman.")], 20, "Doorman's queues to go")


def settled(pipe: DaemonPipeline, quiet: float = 1.0, timeout: float = 15) -> None:
    """Until collect has written no snapshot for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen, since = len(pipe.snapshots()), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.1)
        if (n := len(pipe.snapshots())) != seen:
            seen, since = n, time.monotonic()


def control(url: str, *args: str) -> str:
    done = subprocess.run([str(BIN / "celery"), "-A", "doorman.demoapp", "control", *args],
                          env={**os.environ, "REDIS_URL": url}, cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode()


def test_a_cancelled_consumer_is_queue_unconsumed_and_each_worker_is_tied_to_its_task_consumers(vhost, workers):
    url = vhost.url()
    w = workers(url, "w1@tied", queues="celery,emails")
    wait_listening(vhost, w)
    control(url, "cancel_consumer", "emails")
    enqueue(url, 2, task="demo.add", args=(1, 2), queue="emails")
    collected = cli("doorman-collect", "--broker-url", url, "--interval", "1", "--count", "4",
                    env={"UNCONSUMED_AFTER_SECONDS": "1.5"})
    assert collected.returncode == 0, collected.stderr
    snaps = records(collected.stdout)
    analyzed = cli("doorman-analyze", input=collected.stdout,
                   env={"DOORMAN_CONFIG": "", "UNCONSUMED_AFTER_SECONDS": "1.5"})
    alerts = [(a["alert_type"], a["severity"], a["subject"]) for a in records(analyzed.stdout)]
    assert alerts == [("queue_unconsumed", "warning", "queue:emails")]  # as on Redis
    last = snaps[-1]
    assert (last["queues"]["celery"]["consumers"], last["queues"]["celery"]["consumed_by"]) == (1, [w.name])
    assert (last["queues"]["emails"]["pending"], last["queues"]["emails"]["consumers"]) == (2, 0)
    [me] = last["workers"]
    assert (me["queues"], me["concurrency"], me["processed"]) == (["celery"], 1, 0)

    # the worker's last task consumer cancelled: RabbitMQ says at once that its connection holds none
    control(url, "cancel_consumer", "celery")
    enqueue(url, 3, task="demo.add", args=(1, 2), queue="celery")

    def bare() -> dict | None:
        snap = collect_once(url)
        [me] = snap["workers"]
        return snap if me.get("task_consumers") == 0 else None

    snap = wait_for(bare, 30, "the worker shown with no task consumer on its connection")
    [me] = snap["workers"]
    assert me["alive"] is True and me["queues"] == []
    # a worker that consumes nothing and says so is queue_unconsumed's business, as on Redis; one
    # that still lists its queue while its connection holds no task consumer is ghost case (a)
    cfg = make_config(thresholds={"ghost_after_seconds": 2})
    for claims, expected in (([], []), (["celery"], [("ghost_worker", "critical", "a")])):
        state = GHOST.initial_state()
        s = {**snap, "workers": [{**me, "queues": claims}]}
        GHOST.observe(s, state, cfg, 100.0)
        got = GHOST.evaluate(s, state, cfg, 103.0)
        assert [(c["alert_type"], c["severity"], c["details"]["case"]) for c in got] == expected


def test_ghost_a_named_by_the_broker_even_when_other_workers_sit_still():
    """RabbitMQ ties consumers to a worker's connection: `task_consumers: 0` names the ghost, where
    Redis's anonymous count could not tell two idle workers apart."""
    cfg = make_config(thresholds={"ghost_after_seconds": 60})
    idle = {"celery": {"pending": 0, "consumers": 1, "consumed_by": ["w1@r"]}}
    w1 = {"name": "w1@r", "alive": True, "active": 0, "concurrency": 2, "processed": 5, "queues": ["celery"],
          "task_consumers": 0}
    w2 = {**w1, "name": "w2@r", "task_consumers": 1}
    s = {"queues": idle, "workers": [w1, w2], "alive_workers": 2, "pending_tasks": 0,
         "connections": {"consumers": 2, "source": "pidbox_probe"}}
    state = GHOST.initial_state()
    out = []
    for now in (0.0, 59.0, 60.0):
        GHOST.observe(s, state, cfg, now)
        out.append([(c["subject"], c["details"]["case"]) for c in GHOST.evaluate(s, state, cfg, now)])
    assert out == [[], [], [("worker:w1@r", "a")]]


def test_a_worker_whose_task_consumer_is_gone_at_the_broker_is_a_ghost_case_a(vhost, workers):
    """Ghost case (a) with real parts: the worker's task consumer cancelled at the broker (the demo
    app's `demo_drop_task_consumer`) while Celery still lists `celery`, as a reconnect that never
    re-consumed leaves it (celery#8082). It heartbeats and holds its pidbox; no task waits."""
    url = vhost.url()
    w = workers(url, "hollow@rabbit", queues="celery")
    wait_listening(vhost, w)
    said = control(url, "demo_drop_task_consumer", "-d", w.name)
    assert "cancelled 1 task consumer(s) at the broker" in said, said
    # the management API lists a new consumer (here the worker's pidbox one, which ties the worker to
    # its connection) only on its statistics timer: the ghost is named from then on
    def hollow() -> dict | None:
        [me] = collect_once(url)["workers"] or [{}]
        return me if (me.get("queues"), me.get("task_consumers")) == (["celery"], 0) else None

    wait_for(hollow, 30, "a check showing the worker's queue and no task consumer on its connection")
    collected = cli("doorman-collect", "--broker-url", url, "--interval", "1", "--count", "6",
                    env={"GHOST_AFTER_SECONDS": "2"})
    assert collected.returncode == 0, collected.stderr
    analyzed = cli("doorman-analyze", input=collected.stdout, env={"DOORMAN_CONFIG": "", "GHOST_AFTER_SECONDS": "2"})
    alerts = [(a["alert_type"], a["severity"], a["subject"], a["details"]["case"]) for a in records(analyzed.stdout)]
    seen = [(s["ts"], [(x.get("alive"), x.get("queues"), x.get("task_consumers"), x.get("processed"))
                       for x in s["workers"]]) for s in records(collected.stdout)]
    assert alerts == [("ghost_worker", "critical", "worker:hollow@rabbit", "a")], seen
    last = records(collected.stdout)[-1]
    [me] = last["workers"]
    assert (me["alive"], me["queues"], me["task_consumers"]) == (True, ["celery"], 0)
    assert (last["queues"]["celery"]["consumers"], last["queues"]["celery"]["pending"]) == (0, 0)


def test_a_worker_whose_pool_hangs_is_a_ghost_on_rabbitmq(vhost, workers):
    url = vhost.url()
    w = workers(url, "ghost@rabbit", queues="celery")
    wait_listening(vhost, w)
    children = wait_for(lambda: children_of(w.proc.pid), 30, "the prefork pool process")
    for pid in children:
        os.kill(pid, signal.SIGSTOP)  # the pool hangs; the main process heartbeats on
    enqueue(url, 12, task="demo.add", args=(1, 2), queue="celery")
    collected = cli("doorman-collect", "--broker-url", url, "--interval", "1", "--count", "5",
                    env={"GHOST_AFTER_SECONDS": "2"})
    assert collected.returncode == 0, collected.stderr
    analyzed = cli("doorman-analyze", input=collected.stdout, env={"DOORMAN_CONFIG": "", "GHOST_AFTER_SECONDS": "2"})
    alerts = [(a["alert_type"], a["severity"], a["subject"], a["details"]["case"])
              for a in records(analyzed.stdout)]
    assert alerts == [("ghost_worker", "critical", "worker:ghost@rabbit", "b")]
    last = records(collected.stdout)[-1]
    [me] = last["workers"]
    assert me["alive"] and me["processed"] == 0 and me["concurrency"] == 1 and me.get("task_consumers") in (1, None)
    assert last["queues"]["celery"]["pending"] > 0


def test_both_probe_paths_see_a_kill9_and_leave_nothing_behind(vhost, workers, monkeypatch):
    """Passive declares of the pidbox queues (a few workers) and the management API's list of
    queue names (many workers) agree: the killed worker's queue is gone, the other's is there."""
    from doorman.brokers.rabbitmq import broker as rabbit
    from doorman.brokers.rabbitmq import liveness
    from doorman.config.load import load_config

    url = vhost.url()
    stays, dies = workers(url, "stays@probe"), workers(url, "dies@probe")
    for w in (stays, dies):
        wait_listening(vhost, w)
    cfg = load_config(None, env={"CELERY_BROKER_URL": url})
    seen = {}
    for limit, source in ((100, "pidbox_probe"), (0, "pidbox_listing")):
        monkeypatch.setattr(liveness, "DECLARE_MAX", limit)
        b = rabbit.RabbitConnection(cfg)
        b.topology()
        table = b.connections()
        assert (len(table.consumers), table.source) == (2, source)
        assert b.ping(["stays@probe", "dies@probe", "never@probe"], 0.5) == {"stays@probe", "dies@probe"}
        seen[source] = b
    dies.kill9()
    for source, b in seen.items():
        wait_for(lambda b=b: len(b.connections().consumers) == 1, 20, f"{source} to see the kill")
        assert b.ping(["stays@probe", "dies@probe"], 0.5) == {"stays@probe"}
        b.close()
    assert not [n for n in vhost.queues() if n.startswith("doorman.")]
    assert not [b for b in vhost.bindings() if b["destination_name"].startswith("doorman.")]


def test_with_the_event_exchange_plugin_a_death_comes_from_rabbitmqs_own_events(workers, tmp_path):
    """A private rabbitmq-server node with `rabbitmq_event_exchange` enabled (the machine's has it
    off, and it is not ours to change): liveness follows queue.deleted, says so, and leaves nothing
    in vhost `/` once collect is killed."""
    import requests

    from doorman.simulate.rabbit import RabbitVhost
    from tests.support.process import free_port

    rv = RabbitVhost(free_port(), tmp_path / "rabbit")
    (tmp_path / "rabbit").mkdir()
    receiver = Receiver()
    pipe = None
    try:
        rv.start(timeout=180)
        assert rv.node, "a private node was started (nothing answered on its port)"
        enabled = subprocess.run(["rabbitmq-plugins", "-n", rv.node, "enable", "--online", "rabbitmq_event_exchange"],
                                 env={**os.environ, "RABBITMQ_ENABLED_PLUGINS_FILE": str(rv.base / "enabled_plugins")},
                                 capture_output=True, text=True, timeout=120)
        assert enabled.returncode == 0, enabled.stderr
        ws = [workers(rv.url, f"{n}@evx", queues="busy") for n in ("a", "b")]
        wait_for(lambda: rv.listening([w.name for w in ws]), 60, "the workers to listen")
        enqueue(rv.url, 3, task="demo.add", args=(2, 3), queue="celery")
        pipe = DaemonPipeline(rv.url, receiver.url(HOOK), interval=30, workdir=str(tmp_path / "pipe"))
        pipe.env.update(rv.env)
        pipe.start()
        for w in ws:
            pipe.wait_heartbeat(w.name, timeout=30)
        wait_for(lambda: any((s.get("connections") or {}).get("source") == "event_exchange" for s in pipe.snapshots()),
                 60, "a snapshot whose liveness came from the event exchange")
        settled(pipe)
        ws[0].kill9()
        wait_for(lambda: receiver.delivered(HOOK), 30, "worker_lost at the webhook")
        ws[1].kill9()
        wait_for(lambda: any(r.json["alert_type"] == "workers_down" for r in receiver.delivered(HOOK)), 30,
                 "workers_down at the webhook")
        posts = [r.json for r in receiver.at(HOOK)]
        by_ts = {s["ts"]: s for s in pipe.snapshots()}
        first = by_ts[posts[0]["ts"]]
        assert (posts[0]["alert_type"], posts[0]["subject"]) == ("worker_lost", "worker:a@evx")
        assert (first["trigger"], first["connections"]["source"]) == ("connection_lost", "event_exchange")

        def own_in_root() -> list:
            got = requests.get(f"http://127.0.0.1:{rv.mgmt_port}/api/queues/%2F", auth=("guest", "guest"), timeout=10)
            return [q["name"] for q in got.json() if q["name"].startswith("doorman.")]

        assert own_in_root(), "collect's event queue is in vhost /"
        pipe.procs[0].kill()  # kill -9 of collect
        wait_for(lambda: not own_in_root(), 30, "Doorman's event queue (and its bindings) to go with collect")
        bindings = requests.get(f"http://127.0.0.1:{rv.mgmt_port}/api/bindings/%2F", auth=("guest", "guest"),
                                timeout=10).json()
        assert not [b for b in bindings if b["destination"].startswith("doorman.")]
    finally:
        if pipe:
            pipe.stop()
        receiver.close()
        rv.stop()


def test_pipelined_passive_declares_survive_missing_and_locked_queues_in_the_middle(vhost):
    """Each 404 or 405 closes the channel mid-pipeline; every answer still lands on its own queue."""
    import amqp

    from doorman.brokers.rabbitmq import probe

    holder = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest", virtual_host=vhost.name)
    reader = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest", virtual_host=vhost.name)
    holder.connect()
    reader.connect()
    try:
        ch = holder.channel()
        names = []
        for i in range(250):
            kind = ("ok", "missing", "locked")[i % 3] if i % 7 else "ok"
            q = f"q{i}.{kind}"
            names.append(q)
            if kind == "ok":
                ch.queue_declare(queue=q, auto_delete=False)
                for _ in range(i % 5):
                    ch.basic_publish(amqp.Message(b"x"), exchange="", routing_key=q)
            elif kind == "locked":
                ch.queue_declare(queue=q, exclusive=True)
        names.append("x" * 300)  # hostile: longer than any queue name can be
        ready = sum(int(q.split(".")[0][1:]) % 5 for q in names[:-1] if q.endswith(".ok"))
        wait_for(lambda: sum(r["messages_ready"] for r in vhost.queues().values()) == ready, 30,
                 "the messages published to be in their queues")
        rch = probe.channel(reader, None)
        got = probe.probe(rch, names)
        for q in names[:-1]:
            i, kind = int(q.split(".")[0][1:]), q.split(".")[1]
            expected = {"ok": probe.Probe("ok", i % 5, 0), "missing": probe.MISSING, "locked": probe.LOCKED}[kind]
            assert got[q] == expected, q
        assert got[names[-1]] == probe.MISSING
        assert probe.channel(reader, rch).is_open  # the channel is reused, reopened after each error
    finally:
        reader.close()
        holder.close()
