"""Issue 19, broker data and output: what any client of the broker writes (queue names, message
heads) must neither blind a stage nor reach a human or a chat channel as live control text.
Each test is the review's PoC against a real redis-server and the real commands."""

from __future__ import annotations

import base64
import contextlib
import io
import subprocess
import time

import orjson
import pytest

from doorman.bounds import MAX_WORKERS
from doorman.brokers.redis.keys import Keys
from doorman.ndjson import warn
from tests.support.notify import alert, ndjson, notify_env
from tests.support.process import BIN, cli, records, wait_for
from tests.support.receiver import Receiver

BINDING = b"_kombu.binding.celery"
SEP = b"\x06\x16"
FORGE = b"evil\x1b]0;pwned\x07\x1b[2J\x00\nRedis:          \xe2\x9c\x85 forged"
MENTIONS = b"<!channel> <https://evil.example/login|click here> <@U123>"


def bind(client, name: bytes, messages: int = 1) -> None:
    """Declare a queue the way kombu does (a binding member) and put `messages` on it."""
    client.sadd(BINDING, name + SEP + SEP + name)
    for i in range(messages):
        client.lpush(name, orjson.dumps({"headers": {"id": f"t{i}", "task": "x"}, "properties": {}}))


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_a_queue_name_that_is_not_utf8_never_fails_the_check(redis_server):
    """PoC: one binding member with a non-UTF-8 name made every check fail (UnicodeEncodeError),
    hence a permanent false redis_down and every other rule silent."""
    c = redis_server.client()
    bind(c, b"bad\xff\xfe", 3)
    p = cli("doorman-collect", "--once", "--redis-url", redis_server.url)
    [snap] = records(p.stdout)
    assert snap["redis_connected"] is True and snap["error"] is None, snap["error"]
    assert snap["queues"]["bad\\xff\\xfe"]["pending"] == 3  # shown escaped, counted
    check = cli("doorman-analyze", "--check", input=p.stdout, env={"DOORMAN_CONFIG": ""})
    assert "redis" not in check.stdout.decode().split("|")[0].lower()
    assert check.stdout.decode().startswith("DOORMAN CRITICAL - No workers")  # workers_down, not redis_down


def test_control_characters_in_names_cannot_forge_human_or_check_lines(redis_server):
    """PoC: a newline forged an extra `Redis: ✅` line, escapes drove the terminal, and --check
    printed two lines."""
    bind(redis_server.client(), FORGE, 2)
    human = cli("doorman-collect", "--once", "--human", "--redis-url", redis_server.url)
    text = human.stdout.decode()
    assert [line.split()[0] for line in text.splitlines()].count("Redis:") == 1 and "\x1b" not in text and "\x00" not in text and "\x07" not in text
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J\\x00\\x0aRedis:" in text  # what the broker holds, inert
    snap = cli("doorman-collect", "--once", "--redis-url", redis_server.url).stdout
    check = cli("doorman-analyze", "--check", input=snap, env={"DOORMAN_CONFIG": "", "MAX_QUEUE_SIZE": "1"})
    out = check.stdout.decode()
    assert out.count("\n") == 1 and out.endswith("\n") and "\x1b" not in out and "\x00" not in out, out


def test_stderr_warnings_escape_control_characters():
    """A broker name quoted in a diagnostic cannot drive the terminal that reads stderr."""
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        warn("doorman-x", "queue " + (FORGE + b"\xff").decode("utf-8", "surrogateescape") + " odd")
    assert buf.getvalue().count("\n") == 1 and "\x1b" not in buf.getvalue() and "\\xff" in buf.getvalue()


LIVE = ("<!channel>", "<@U123>", "<https://", "|click here>")


def slack_bodies(receiver: Receiver, tmp_path, batch: bytes) -> list[dict]:
    receiver.requests.clear()
    cli("doorman-notify", input=batch, env=notify_env(tmp_path, slack=receiver.url("/slack")))
    return [r.json for r in receiver.at("/slack")]


def test_mentions_from_queue_names_reach_slack_inert(redis_server, receiver, tmp_path):
    """PoC: `<!channel> <https://evil.example/login|click here> <@U123>` in a queue name reached
    the Slack receiver as is. Through the whole pipeline (the names are in the alert's details)."""
    c = redis_server.client()
    for n in range(2):
        bind(c, MENTIONS + b" " + str(n).encode(), 2)
    snap = cli("doorman-collect", "--once", "--redis-url", redis_server.url).stdout
    alerts = cli("doorman-analyze", input=snap, env={"DOORMAN_CONFIG": ""}).stdout
    assert MENTIONS.decode() in orjson.loads(alerts.splitlines()[0])["details"].__repr__()
    [body] = slack_bodies(receiver, tmp_path, alerts)
    everything = orjson.dumps(body).decode()
    assert not [live for live in LIVE if live in everything], everything
    assert "&lt;!channel&gt;" in everything


@pytest.mark.parametrize("burst", [1, 5], ids=["single", "summary"])
def test_top_level_slack_text_is_escaped_for_single_and_summary_messages(receiver, tmp_path, burst):
    """The review's finding: blocks were escaped, the top-level `text` (what notifications show)
    was not, in the single and in the summary message."""
    m = MENTIONS.decode()
    batch = ndjson(*(alert(n, title=f"Backlog on {m}", message=f"5000 pending in {m}", subject=f"queue:{m}",
                           cluster=m) for n in range(burst)))
    [body] = slack_bodies(receiver, tmp_path, batch)
    everything = orjson.dumps(body).decode()
    assert not [live for live in LIVE if live in everything], everything
    assert "&lt;!channel&gt;" in body["text"] and "&lt;@U123&gt;" in body["text"]


def test_pagerduty_summary_and_component_are_one_printable_line(tmp_path, receiver):
    name = "q\x1b[31m\nFAKE"
    a = alert(1, title=f"Backlog on {name}", message=f"5000 pending in {name}", subject=f"queue:{name}")
    cli("doorman-notify", input=ndjson(a), env=notify_env(tmp_path, pd=receiver.url("/pd")))
    [got] = receiver.at("/pd")
    payload = got.json["payload"]
    for field in ("summary", "component"):
        assert "\x1b" not in payload[field] and "\n" not in payload[field] and "\\x1b[31m\\x0aFAKE" in payload[field]


def heartbeat(name: str, freq: float) -> bytes:
    body = orjson.dumps({"hostname": name, "type": "worker-heartbeat", "freq": freq, "active": 0})
    return orjson.dumps({"body": base64.b64encode(body).decode(), "properties": {"body_encoding": "base64"}})


@pytest.mark.slow
def test_a_burst_of_spoofed_heartbeats_stays_bounded_and_never_floods(redis_server, tmp_path):
    """PoC: one 30 ms burst of 2,000 fake heartbeats produced 999 worker_lost alerts. The daemon
    reads them on the real channel: every snapshot stays bounded, and analyze raises at most one
    worker_lost (the fakes' fate after the burst depends on the liveness rules; the aggregation
    itself is proven without processes below)."""
    client = redis_server.client()
    channel = Keys().worker_event_channel("worker-heartbeat")
    out = tmp_path / "snapshots.ndjson"
    with open(out, "wb") as f:
        collect = subprocess.Popen([str(BIN / "doorman-collect"), "--interval", "0.5", "--redis-url",
                                    redis_server.url], stdout=f, stderr=subprocess.DEVNULL)
    try:
        # the burst must reach a subscriber: wait for collect's pattern subscription, however
        # long a loaded machine takes to start it (a fixed 1.5 s lost that race in a full run)
        wait_for(lambda: collect.poll() is None and client.execute_command("PUBSUB", "NUMPAT") >= 1, 60,
                 "doorman-collect subscribed to worker events")
        client.publish(channel, heartbeat("real@host", 30.0))  # the one real worker, alive throughout
        pipe = client.pipeline(transaction=False)
        for i in range(2000):
            pipe.publish(channel, heartbeat(f"fake{i}@evil", 0.5))
        pipe.execute()
        client.connection_pool.disconnect()
        wait_for(lambda: any(len(s["workers"]) >= MAX_WORKERS for s in records(out.read_bytes())), 60,
                 "a snapshot that saw the burst")
        time.sleep(3)  # and the snapshots after it, as before
    finally:
        collect.terminate()
        collect.wait(timeout=10)
    snaps = out.read_bytes()
    parsed = records(snaps)
    assert max(len(s["workers"]) for s in parsed) == MAX_WORKERS
    assert max(s["alive_workers"] for s in parsed) == 2001  # every one counted, 500 shown
    assert any((s.get("truncated") or {}).get("workers", {}).get("total") == 2001 for s in parsed)
    assert max(len(line) for line in snaps.splitlines()) < 4 * 1024 * 1024
    alerts = cli("doorman-analyze", input=snaps, env={"DOORMAN_CONFIG": "", "RECONNECT_GRACE_SECONDS": "0.001"})
    lost = [a for a in records(alerts.stdout) if a["alert_type"] == "worker_lost" and a["status"] == "firing"]
    assert len(lost) <= 1 and all(a["subject"] == "workers:many" for a in lost)


def test_two_thousand_workers_lost_at_once_are_one_alert_even_in_truncated_snapshots():
    """The burst's aftermath without processes: 2,000 fakes seen alive, then all silent, through
    the same bounding collect applies. One alert "N workers lost", never N alerts; a real worker
    lost alone still gets its own alert."""
    from doorman.analyze.engine import Engine
    from doorman.bounds import bound_snapshot
    from tests.support.scenario import cfg, queue, snap, worker

    def burst(t, fakes_alive: bool, real_alive: bool = True):
        ws = [worker("real@host", real_alive), worker("other@host")]
        ws += [worker(f"fake{i}@evil", fakes_alive) for i in range(2000)]
        return bound_snapshot(snap(t, workers=ws, queues={"celery": queue(0)}))

    engine = Engine(cfg(reconnect_grace_seconds=0.001))
    engine.process(burst(0, True))
    out = engine.process(burst(10, False))
    lost = [a for a in out if a["alert_type"] == "worker_lost" and a["status"] == "firing"]
    assert [(a["subject"], a["title"]) for a in lost] == [("workers:many", f"{lost[0]['details']['lost']} workers lost")]
    assert lost[0]["details"]["lost"] >= 490 and len(lost[0]["details"]["workers"]) == 20
    alone = Engine(cfg(reconnect_grace_seconds=0.001))
    alone.process(snap(0, workers=[worker("real@host"), worker("other@host")]))
    out = alone.process(snap(10, workers=[worker("real@host", False), worker("other@host")]))
    assert [a["subject"] for a in out if a["alert_type"] == "worker_lost"] == ["worker:real@host"]
