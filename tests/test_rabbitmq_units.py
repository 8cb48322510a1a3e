"""RabbitMQ pieces that need no server: URLs, the held-unacked lower bound, the health shape, the
two RabbitMQ rules, and hostile management API answers from a real local HTTP server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from doorman.brokers.rabbitmq import urls
from doorman.brokers.rabbitmq.broker import HeldUnacked, internal
from doorman.brokers.rabbitmq.management import Management, ManagementError, QueueRow, health_of
from doorman.rules import broker_alarm, consumer_timeout
from tests.support.scenario import cfg, run_rule, snap


@pytest.mark.e2e
@pytest.mark.parametrize("url,vhost", [
    ("amqp://h", "/"), ("amqp://h/", "/"), ("amqp://h//", "/"), ("amqp://h/%2F", "/"), ("amqp://h/app", "app"),
    ("pyamqp://u:p@h:5673/a%2Fb", "a/b"),
])
def test_vhost_as_kombu_reads_it(url, vhost):
    assert urls.target(url).vhost == vhost


def test_target_defaults_and_tls():
    t = urls.target("amqps://us%40er:p%3Ass@rabbit.example")
    assert (t.host, t.port, t.user, t.password, t.tls) == ("rabbit.example", 5671, "us@er", "p:ss", True)
    assert urls.ssl_options(t, None, False) == {"server_hostname": "rabbit.example", "cert_reqs": 2, "ca_certs": None}
    assert urls.ssl_options(t, "/ca.pem", True) == {"cert_reqs": 0}
    assert urls.ssl_options(urls.target("amqp://h"), None, False) is False


def test_management_address_from_the_broker_url_or_its_own():
    t = urls.target("amqp://u:pw@rabbit:5672/v")
    assert urls.management_base(None, t) == ("http://rabbit:15672", ("u", "pw"))
    assert urls.management_base(None, urls.target("amqps://u:pw@rabbit")) == ("https://rabbit:15671", ("u", "pw"))
    assert urls.management_base("https://m:pw2@mgmt:443/rabbitmq/", t) == ("https://mgmt:443/rabbitmq", ("m", "pw2"))
    assert urls.management_base("http://mgmt:15672", t) == ("http://mgmt:15672", ("u", "pw"))


@pytest.mark.parametrize("url,problem", [
    ("amqp://", "no host"), ("amqp://h:99999", "malformed"), ("amqp://a;amqp://b", "several"),
])
def test_bad_broker_urls_are_named_never_quoted(url, problem):
    assert problem in (urls.url_problem(url) or "")


def test_internal_queues_are_not_task_queues():
    assert [internal(n) for n in ("celery", "w1@h.celery.pidbox", "x.reply.celery.pidbox", "celeryev.1",
                                  "doorman.ev.1", "amq.gen-x", "celery.pidbox.looks")] == \
        [False, True, True, True, True, True, False]


def row(name: str, unacked: int, acked: int | None, redelivered: int | None = 0) -> QueueRow:
    return QueueRow(name, 0, unacked, 1, None, acked, redelivered)


def test_held_unacked_is_a_lower_bound_that_restarts_on_any_movement():
    held = HeldUnacked()
    assert held.update([row("q", 3, 10)], 100.0) is None  # first sight: no bound yet
    assert held.update([row("q", 3, 10)], 130.0) == 100.0  # no ack since: held since 100 at least
    assert held.update([row("q", 4, 10)], 160.0) == 100.0  # one more delivered, none acked
    assert held.update([row("q", 4, 11)], 190.0) is None  # an ack: maybe the old one left
    assert held.update([row("q", 4, 11)], 220.0) == 190.0
    assert held.update([row("q", 2, 11)], 250.0) is None  # unacked dropped without an ack (requeued)
    assert held.update([row("q", 2, 11, 1)], 280.0) is None  # a redelivery
    assert held.update([row("q", 0, 11, 1)], 310.0) is None  # nothing held
    assert held.update([row("q", 1, None)], 340.0) is None and held.update([row("q", 1, None)], 370.0) is None


def test_health_of_nodes_takes_the_fullest_node_and_every_alarm_and_ignores_garbage():
    nodes = [{"name": "a", "mem_used": 10, "mem_limit": 100, "mem_alarm": False, "disk_free_alarm": True},
             {"name": "b", "mem_used": 90, "mem_limit": 100, "mem_alarm": True, "disk_free_alarm": "yes"},
             "junk", {"mem_used": True, "mem_limit": -1}]
    h = health_of(nodes, {"rabbitmq_version": "3.13.1", "object_totals": {"connections": 7}})
    assert (h["server"], h["version"], h["used_memory_bytes"], h["max_memory_bytes"], h["connected_clients"]) == \
        ("rabbitmq", "3.13.1", 90, 100, 7)
    assert h["alarms"] == ["disk_free_alarm", "mem_alarm"]
    assert health_of([], {"rabbitmq_version": ["x"]})["version"] is None


def rabbit(t: float = 0.0, **fields) -> dict:
    s = snap(t)
    s["broker"] = "amqp://guest:***@rabbit:5672//"
    s.update(fields)
    return s


def test_broker_alarm_is_an_emergency_only_for_rabbitmq_alarms():
    health = {"server": "rabbitmq", "alarms": ["mem_alarm"], "used_memory_bytes": 5, "max_memory_bytes": 4}
    [c] = run_rule(broker_alarm, [rabbit(broker_health=health)], cfg())
    assert (c["alert_type"], c["severity"], c["subject"], c["status"]) == ("broker_alarm", "emergency", "cluster",
                                                                           "firing")
    assert c["message"] == ("RabbitMQ raised its memory alarm (mem_alarm): every connection that publishes is "
                            "blocked until it clears, so no new task can be sent.")
    for quiet in ({"alarms": []}, {"alarms": None}, {"alarms": ["<script>"]}, None, "junk"):
        assert run_rule(broker_alarm, [rabbit(broker_health=quiet)], cfg()) == []


def test_consumer_timeout_risk_warns_near_and_pages_past_the_timeout_on_rabbitmq_only():
    def unacked(age: float | None) -> dict:
        return {"count": 4, "oldest_delivered_at": None, "oldest_age_seconds": age, "visibility_timeout": None}

    c = cfg(rabbitmq_consumer_timeout_seconds=1000)
    assert run_rule(consumer_timeout, [rabbit(unacked=unacked(799))], c) == []
    [warn] = run_rule(consumer_timeout, [rabbit(unacked=unacked(800))], c)
    assert (warn["alert_type"], warn["severity"]) == ("consumer_timeout_risk", "warning")
    [page] = run_rule(consumer_timeout, [rabbit(unacked=unacked(1000))], c)
    assert page["severity"] == "critical" and page["details"]["consumer_timeout_seconds"] == 1000
    assert page["message"].startswith("An unacknowledged message has been held at least 16m, 100% of consumer_timeout")
    assert run_rule(consumer_timeout, [rabbit(unacked=unacked(None))], c) == []
    redis = snap()
    redis["unacked"] = unacked(5000)
    assert run_rule(consumer_timeout, [redis], c) == []  # Redis has its visibility timeout (redelivery_risk)


class Hostile(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802
        status, body = self.answers.get(self.path.split("?")[0], (404, b"{}"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hostile():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hostile_management_answers_are_bounded_and_never_crash(hostile):
    api = Management(hostile, ("u", "p"), 5)
    Hostile.answers = {"/api/queues/%2F": (200, b'[{"name": "ok", "messages_ready": 3, "consumers": "many", '
                                                b'"head_message_timestamp": 1e300}, {"name": 5}, "x", '
                                                b'{"name": "neg", "messages_ready": -4, "message_stats": []}]')}
    [ok, neg] = api.queues("/")
    assert (ok.name, ok.ready, ok.consumers, ok.head_timestamp) == ("ok", 3, None, None)
    assert (neg.ready, neg.acked) == (0, None)
    for body, status, why in ((b'{"not": "a list"}', 200, "management API: /api/queues answered something other "
                                                          "than a list"),
                              (b"not json", 200, "management API answer is not JSON"),
                              (b"[]", 401, "management API answered HTTP 401")):
        Hostile.answers = {"/api/queues/%2F": (status, body)}
        with pytest.raises(ManagementError) as e:
            api.queues("/")
        assert str(e.value) == why
    api.close()


def test_wire_messages_over_budget_or_too_deep_are_dropped():
    from doorman.bounds import MAX_EVENT_BYTES
    from doorman.brokers.rabbitmq.wire import parse_event

    assert parse_event(b'{"hostname": "w1@h", "type": "worker-heartbeat", "freq": 2}')["hostname"] == "w1@h"
    assert parse_event(b'{"hostname": "w1@h", "pad": "' + b"x" * MAX_EVENT_BYTES + b'"}') is None
    assert parse_event(b'{"hostname": "w1@h", "x": ' + b"[" * 40 + b"]" * 40 + b"}") is None
    for junk in (b"\x80\x03pickle", b"[]", b'{"hostname": 5}', b"", None):
        assert parse_event(junk) is None
