"""Arbitrary input never raises: random snapshot-like objects through the engine, random bytes
through the command. Whatever comes in, what goes out is valid alerts and a valid state."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorman import plugins
from doorman.analyze.engine import Engine, snapshot_problem
from doorman.analyze.state import state_problem
from doorman.cli.analyze import main
from doorman.config.load import make_config
from doorman.contract.severity import SEVERITIES
from doorman.timefmt import iso

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


def maybe(good):
    """Mostly sensible (so the rules get exercised), once in a while anything at all."""
    return st.integers(0, 39).flatmap(lambda i: JSON if i == 0 else good)


NAMES = st.sampled_from(["celery", "mail", "x", ""])
TASK_IDS = st.sampled_from(["t1", "t2", "t3"]) | st.none()
HEAD = st.fixed_dictionaries({"task_id": maybe(TASK_IDS), "task_name": maybe(st.text(max_size=5)),
                              "priority": maybe(st.integers(0, 9)),
                              "age_seconds": maybe(st.none() | st.floats(0, 1e7))})
QUEUE = st.fixed_dictionaries({"pending": maybe(st.integers(0, 3000)), "heads": maybe(st.lists(HEAD, max_size=3)),
                               "oldest": maybe(st.none() | HEAD)})
WORKER = st.fixed_dictionaries({"name": maybe(st.sampled_from(["w1@t", "w2@t", "w3@t"])),
                                "alive": maybe(st.booleans())})
TASK = st.fixed_dictionaries({"task_id": maybe(TASK_IDS), "task_name": maybe(st.text(max_size=5)),
                              "worker": maybe(st.text(max_size=5)), "runtime_seconds": maybe(st.floats(0, 1e5))})
TS = st.floats(0, 4e9).map(iso) | st.text(max_size=30)


@st.composite
def snapshots(draw, t0: float = 1.8e9):
    obj = {
        "v": draw(maybe(st.just(1))), "kind": draw(maybe(st.just("snapshot"))),
        "ts": draw(maybe(st.floats(t0, t0 + 7200).map(iso))) if draw(st.integers(0, 9)) else draw(TS),
        "cluster": draw(maybe(st.sampled_from(["a", "b"]))), "redis_connected": draw(maybe(st.booleans())),
        "error": draw(maybe(st.none() | st.text(max_size=10))),
        "pending_tasks": draw(maybe(st.none() | st.integers(0, 5000))),
        "queues": draw(maybe(st.dictionaries(NAMES, maybe(QUEUE), max_size=3))),
        "alive_workers": draw(maybe(st.none() | st.integers(0, 3))),
        "workers": draw(maybe(st.lists(maybe(WORKER), max_size=3))),
        "active": draw(maybe(st.lists(maybe(TASK), max_size=3))),
    }
    for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=1)):
        obj.pop(key, None)
    return obj


CONFIG = make_config(alert_cooldown_seconds=60, thresholds=dict(
    max_queue_size=100, max_wait_time_seconds=5, max_task_runtime_seconds=10, critical_queues=["mail"],
    queues={"x": {"max_queue_size": 10, "max_wait_time_seconds": 1}}, worker_forget_seconds=600,
    backlog_growth_window_seconds=60, backlog_growth_min_samples=3))
ALERT_TYPES = tuple(t.name for r in plugins.rules() for t in r.alert_types)


def check_alert(a: dict) -> None:
    assert a["v"] == 1 and a["kind"] == "alert"
    assert a["alert_type"] in ALERT_TYPES and a["severity"] in SEVERITIES and a["status"] in ("firing", "resolved")
    assert len(a["fingerprint"]) == 32 and int(a["fingerprint"], 16) >= 0
    assert isinstance(a["title"], str) and isinstance(a["message"], str) and isinstance(a["details"], dict)
    assert a["subject"] == "cluster" or a["subject"].startswith(("queue:", "worker:"))
    assert isinstance(a["ts"], str) and isinstance(a["started_at"], str)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(snapshots(), min_size=1, max_size=12))
def test_engine_never_raises_on_arbitrary_objects(objs):
    engine = Engine(CONFIG)
    for obj in objs:
        if snapshot_problem(obj) is not None:
            continue
        for alert in engine.process(obj):
            check_alert(alert)
            orjson.dumps(alert)
    saved = orjson.loads(orjson.dumps(engine.state))
    assert state_problem(saved) is None


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=40) | snapshots().map(orjson.dumps) | JSON.map(orjson.dumps), max_size=8))
def test_command_never_raises_on_arbitrary_lines(chunks):
    data = b"\n".join(c.replace(b"\n", b" ") for c in chunks) + b"\n"
    result = CliRunner().invoke(main, [], input=data)
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for line in result.stdout_bytes.splitlines():
        check_alert(orjson.loads(line))


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | JSON.map(orjson.dumps))
def test_any_state_file_content_is_survived(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("s") / "state.json"
    path.write_bytes(content)
    good = orjson.dumps({"v": 1, "kind": "snapshot", "ts": iso(1.8e9), "redis_connected": False})
    result = CliRunner().invoke(main, ["--state", str(path)], input=good + b"\n")
    assert result.exit_code == 0
    assert [orjson.loads(x)["alert_type"] for x in result.stdout_bytes.splitlines()] == ["redis_down"]
    assert state_problem(orjson.loads(path.read_bytes())) is None
