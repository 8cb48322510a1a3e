"""doorman-serve as a drop-in for celery-exporter: its 16 series, bounded, monotonic, and its mixin's
dashboards and alerts answered by a real Prometheus scraping a real doorman-serve.

The stream is crafted (a known workload in the snapshot's `tasks` section); the same checks with
real workers are in tests/test_serve_exporter_e2e.py.
"""

from __future__ import annotations

import csv
import random
import re
import string
import subprocess
import time
import tracemalloc

import orjson
from prometheus_client.parser import text_string_to_metric_families

from doorman.serve.ingest import Ingest
from doorman.serve.metrics import exposition_maker
from doorman.serve.state import Limits, State
from doorman.serve.tasks import TaskCaps
from tests.support.exporter import (
    JOB,
    MIXIN,
    SINCE_AGO,
    Prometheus,
    WRow,
    expected_counters,
    fill,
    promtool_problems,
    queries,
    workload_snapshot,
)
from tests.support.process import require, wait_for
from tests.support.serve import Serve, lines, snapshot

TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def render(state: State, t: float) -> str:
    return exposition_maker(state, lambda: t)().decode()


def promtool() -> str:
    return require("promtool", "prometheus")


def test_every_exporter_series_has_its_name_type_labels_and_the_workloads_values():
    t = time.time()
    state = State()
    state.snapshot(workload_snapshot(t, t - SINCE_AGO))
    text = render(state, t)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    rows = list(csv.DictReader((MIXIN / "metrics.tsv").open(), delimiter="\t"))
    assert len(rows) == 16
    for row in rows:
        exposed, kind = row["name_as_exposed"], row["type"]
        fam = fams[exposed.removesuffix("_total")]
        assert fam.type == TYPES[kind], exposed
        labels = {x.strip() for x in row["labels"].split("[")[0].split(",")} | {"cluster"}
        if kind == "histogram":
            sets = {frozenset(s.labels) - {"le"} for s in fam.samples}
        else:
            sets = {frozenset(s.labels) for s in fam.samples if s.name == exposed}
        if exposed == "celery_active_consumer_count":  # RabbitMQ only, as the exporter: absent on Redis
            assert sets == set(), sets
            continue
        assert sets == {frozenset(labels)}, (exposed, sets)
    got = samples(text)
    want = expected_counters()
    assert {k: v for k, v in got.items() if k[0].startswith("celery_task_") and k[0].endswith("_total")} == want
    up = {k[1]: v for k, v in got.items() if k[0] == "celery_worker_up"}
    assert up == {(("cluster", "default"), ("hostname", "w1")): 1, (("cluster", "default"), ("hostname", "w2")): 1,
                  (("cluster", "default"), ("hostname", "w3")): 0}
    per_queue = {(k[0], dict(k[1])["queue_name"]): v for k, v in got.items()
                 if k[0] in ("celery_active_worker_count", "celery_active_process_count")}
    assert per_queue == {("celery_active_worker_count", "celery"): 2, ("celery_active_worker_count", "other"): 1,
                         ("celery_active_process_count", "celery"): 6, ("celery_active_process_count", "other"): 2}
    add_w1 = (("cluster", "default"), ("hostname", "w1"), ("name", "demo.add"), ("queue_name", "celery"))
    assert got[("celery_task_runtime_count", add_w1)] == 10
    assert got[("celery_task_runtime_bucket", tuple(sorted((*add_w1, ("le", "0.25")))))] == 9
    assert got[("celery_task_runtime_bucket", tuple(sorted((*add_w1, ("le", "0.5")))))] == 10
    assert got[("celery_task_queue_wait_time_count", add_w1)] == 10
    assert got[("celery_task_received_created", add_w1)] == t - SINCE_AGO  # created = the counting's start
    assert promtool_problems(promtool(), text) == []


def test_rabbitmq_consumer_count_is_the_brokers_and_worker_count_is_from_active_queues():
    t = time.time()
    snap = workload_snapshot(t, t - 10)
    snap["broker"] = "amqp://guest:***@127.0.0.1:5672/x"
    snap["queues"]["celery"]["consumers"] = 7  # RabbitMQ's own figure (channels, not workers)
    state = State()
    state.snapshot(snap)
    got = samples(render(state, t))
    q = (("cluster", "default"), ("queue_name", "celery"))
    assert got[("celery_active_consumer_count", q)] == 7
    assert got[("celery_active_worker_count", q)] == 2  # not the broker's consumer count


def test_counters_never_go_backwards_while_serve_runs_and_a_new_since_is_a_reset():
    t = 1_800_000_000.0
    state = State()
    add = WRow("demo.add", "celery@w1", "celery", {"received": 5, "succeeded": 5})
    state.snapshot(workload_snapshot(t, t - 100, rows=[add]))
    key = ("celery_task_succeeded_total", (("cluster", "default"), ("hostname", "w1"), ("name", "demo.add"),
                                           ("queue_name", "celery")))
    assert samples(render(state, t))[key] == 5
    fewer = WRow("demo.add", "celery@w1", "celery", {"received": 3, "succeeded": 3})
    state.snapshot(workload_snapshot(t + 10, t - 100, rows=[fewer]))  # same `since`, lower: a broken collector
    assert samples(render(state, t + 10))[key] == 5
    state.snapshot(workload_snapshot(t + 20, t + 15, rows=[fewer]))  # collect restarted: a reset, _created moves
    got = samples(render(state, t + 20))
    assert got[key] == 3
    assert got[("celery_task_succeeded_created", key[1])] == t + 15
    # a replay of the same file (serve restarted): the same totals, nothing counted twice
    again = State()
    for ts, since, rows in ((t, t - 100, [add]), (t + 20, t + 15, [fewer])):
        again.snapshot(workload_snapshot(ts, since, rows=rows))
    assert samples(render(again, t + 20))[key] == 3


def test_caps_fold_into_other_and_memory_stays_fixed_against_100k_random_names_and_hosts():
    caps = TaskCaps(names=20, hostnames=10, exceptions=5, series=50, queues=5)
    state = State(Limits(tasks=caps, max_workers=10))
    said: list[str] = []
    ingest = Ingest(state, None, said.append, clock=lambda: 1_800_000_000.0 + 200)  # the snapshots' time
    rng = random.Random(25)

    def word(n: int) -> str:
        return "".join(rng.choices(string.ascii_lowercase, k=n))

    t = 1_800_000_000.0
    sample_counts: list[int] = []
    held: list[int] = []
    for i in range(100):  # 100 snapshots x 1,000 new names and hosts: 100k of each through ingest
        rows = [WRow(f"task.{word(12)}", f"celery@{word(10)}", rng.choice(["celery", "a", "b", "c", "d", "e", "f"]),
                     {"received": 1, "failed": 1}, exceptions={f"E{word(6)}": 1}) for _ in range(1000)]
        # each with its own `since` (as many collect restarts): the totals are exact per snapshot
        snap = workload_snapshot(t + i, t + i - 0.5, rows=rows)
        snap["workers"] = [{"name": f"celery@{word(10)}", "alive": True, "active": 0} for _ in range(50)]
        line = orjson.dumps(snap)
        del snap, rows
        if i == 80:
            tracemalloc.start()
        ingest.line("random", i + 1, line)
        if i in (10, 80, 99):
            sample_counts.append(len(samples(render(state, t + i))))
            if i != 10:
                held.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    assert not said
    table = state.clusters["default"].tasks
    assert table is not None
    assert len(table.rows) <= caps.series + 1
    assert len({n for n, _h, _q in table.rows}) <= caps.names + 1
    assert len({h for _n, h, _q in table.rows}) <= caps.hostnames + 1
    assert len({c for r in table.rows.values() for c in r.exceptions}) <= caps.exceptions + 1
    assert all(len(a.keys) <= a.cap for a in table.admitted.values())
    # a fixed bound, however many names went by: per label set 8 counters and failed's exceptions (each
    # with _created), 2 histograms of 14 bounds (+Inf, _count, _sum, _created); ~200 gauges beside
    bound = (caps.series + 1) * (2 * (8 + 1 + caps.exceptions + 1) + 2 * (14 + 4)) + 200
    assert max(sample_counts) <= bound and max(sample_counts) - min(sample_counts) < 10
    assert held[1] - held[0] < 1_000_000  # 19,000 more names and hosts: no more memory held
    text = render(state, t + 99)
    got = samples(text)
    omitted = {dict(k[1])["what"]: v for k, v in got.items() if k[0] == "doorman_series_omitted"}
    assert (omitted["task_names"], omitted["task_hostnames"], omitted["task_exceptions"]) == (980, 990, 995)
    other = ("celery_task_received_total", (("cluster", "default"), ("hostname", "(other)"), ("name", "(other)"),
                                            ("queue_name", "(other)")))
    total = sum(v for k, v in got.items() if k[0] == "celery_task_received_total")
    assert total == 1000 and got[other] > 0  # nothing lost: the overflow is summed under (other)
    assert sum(1 for k in got if k[0] == "celery_worker_up") <= 10


def test_a_gone_worker_keeps_up_zero_for_worker_down_keep_seconds():
    state = State(Limits(worker_expiry=1800))
    t = 1_800_000_000.0
    state.snapshot(snapshot(t, {}, [("celery@w1", True, 0), ("celery@w2", True, 0)]))
    key = ("celery_worker_up", (("cluster", "default"), ("hostname", "w2")))
    for dt in (30, 900, 1500, 1799):  # CeleryWorkerDown needs 15 minutes of `== 0`
        state.snapshot(snapshot(t + dt, {}, [("celery@w1", True, 0)]))
        assert samples(render(state, t + dt))[key] == 0
    state.snapshot(snapshot(t + 1801, {}, [("celery@w1", True, 0)]))
    assert key not in samples(render(state, t + 1801))


def test_promtool_runs_the_mixins_own_alert_tests(tmp_path):
    """Unchanged but for the rule file's path: Doorman's names are the exporter's."""
    (tmp_path / "prometheus_alerts.yaml").write_bytes((MIXIN / "prometheus_alerts.yaml").read_bytes())
    tests = (MIXIN / "tests.yaml").read_text().replace("../prometheus_alerts.yaml", "prometheus_alerts.yaml")
    (tmp_path / "tests.yaml").write_text(tests)
    r = subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


# --- a real Prometheus scraping a real doorman-serve --------------------------------------------

LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")
INCREASE = re.compile(r"^(?:sum|round)\s*\(\s*(?:sum\s*\(\s*)?round\s*\(\s*increase\s*\(\s*(celery_task_\w+_total)\{")


def test_a_real_prometheus_answers_every_dashboard_and_alert_expression(tmp_path):
    t0 = time.time()
    since = t0 - SINCE_AGO
    stream = tmp_path / "snapshots.ndjson"
    stream.write_bytes(lines(workload_snapshot(t0, since, zero=True)))  # the counters at 0 first (as at start)
    serve = Serve(tmp_path, str(stream), args=("--history", "none")).wait_up()
    prom = Prometheus(tmp_path, f"127.0.0.1:{serve.port}", [MIXIN / "prometheus_alerts.yaml"])
    try:
        wait_for(lambda: prom.query('celery_task_received_total{name="demo.add"} == 0'), 60,
                 "Prometheus to scrape the zeroed counters")
        time.sleep(2.5)  # a couple more zero samples (scrape interval 1 s)
        with open(stream, "ab") as out:
            out.write(lines(workload_snapshot(time.time(), since)))
        wait_for(lambda: prom.query('sum(celery_task_received_total) == 26'), 60, "the workload in Prometheus")
        time.sleep(2.5)
        [last] = prom.query('timestamp(celery_task_received_total{name="demo.add",hostname="w1"})')
        at = float(last["value"][1])  # evaluate at the newest sample: no extrapolation, increase() is exact
        want = expected_counters()
        empty: list[str] = []
        for row in queries():
            expr = fill(row["expr"])
            m = LABEL_VALUES.match(expr)
            if m:
                values = prom.get("label/" + m.group(2) + "/values", **{"match[]": m.group(1) or "{__name__!=''}"})
                if not values:
                    empty.append(f"{row['panel_or_alert_title']}: {expr}")
                continue
            result = prom.query(expr, at)
            if not result:
                empty.append(f"{row['panel_or_alert_title']}: {expr}")
                continue
            m = INCREASE.match(expr)
            by = re.search(r"\)\s*(?:by\s*\(([\w, ]+)\)\s*\)?\s*)?$", expr.split(">")[0])
            if m and "/" not in expr and ">" not in expr and "topk" not in expr:
                keys = [k.strip() for k in (by.group(1) if by and by.group(1) else "").split(",") if k.strip()]
                expect: dict[tuple[str, ...], float] = {}
                for (series, labels), v in want.items():
                    if series == m.group(1):
                        lab = dict(labels, job=JOB)
                        g = tuple(lab.get(k, "") for k in keys)
                        expect[g] = expect.get(g, 0) + v
                got = {tuple(r["metric"].get(k, "") for k in keys): float(r["value"][1]) for r in result}
                assert got == expect, (row["panel_or_alert_title"], expr)
        # Doorman has no `namespace` label (relabel one in if you use it): Grafana's variable is then empty
        # and `namespace=""` matches every series, so the panels above answered all the same
        assert all("namespace)" in e for e in empty), "empty answers:\n" + "\n".join(empty)
        [high] = prom.query(next(r for r in queries() if r["panel_or_alert_title"] == "CeleryHighQueueLength")["expr"],
                            at)
        assert (high["metric"]["queue_name"], float(high["value"][1])) == ("celery", 150)
        # spot checks the generic comparison above does not cover
        assert float(prom.query(fill('count( celery_worker_up{ cluster="$cluster", namespace="$namespace", '
                                     'job=~"$job" , queue_name!~"None" } == 1 )'), at)[0]["value"][1]) == 2
        assert float(prom.query(fill('count( group by (queue_name) ( celery_queue_length{ cluster="$cluster", '
                                     'namespace="$namespace", job=~"$job" } ) )'), at)[0]["value"][1]) == 2
        fail_rate = next(r for r in queries() if r["panel_or_alert_title"] == "CeleryTaskHighFailRate")
        [only] = prom.query(fail_rate["expr"], at)
        assert only["metric"]["name"] == "demo.fail" and float(only["value"][1]) == 100
        success = next(r for r in queries() if r["panel_or_alert_title"] == "Summary / Tasks Success Rate [1w]")
        assert float(prom.query(fill(success["expr"]), at)[0]["value"][1]) == 17 / 23
        pending = wait_for(lambda: [a for a in (prom.get("alerts") or {}).get("alerts", [])
                                    if a["labels"]["alertname"] == "CeleryTaskHighFailRate"], 60,
                           "the mixin's CeleryTaskHighFailRate pending or firing in Prometheus")
        assert [a["labels"]["name"] for a in pending] == ["demo.fail"]
        assert len(queries()) >= 100
    finally:
        prom.stop()
        serve.stop()


def test_hostile_task_sections_are_read_as_nothing_and_names_escaped():
    t = time.time()
    state = State()
    said: list[str] = []
    ingest = Ingest(state, None, said.append)
    odd_rows = [{"name": 'a"b\\c\nd', "hostname": "x@y@z", "queue": "q", "received": 2, "failed": "many",
                 "exceptions": {"": 1, "E" * 500: True}, "runtime": {"counts": [1], "count": 1, "sum": "x"}},
                {"name": None, "hostname": 7, "queue": [], "received": -3, "runtime": None},
                "not a row", {"received": 10**18}]
    for i, tasks in enumerate([{"since": None, "series": {"not": "a list"}}, [],
                               {"since": "yesterday", "series": odd_rows, "buckets": {"runtime": [3, 2, 1]},
                                "omitted": {"names": "x"}}], start=1):
        snap = workload_snapshot(t + i, t)
        snap["tasks"] = tasks
        ingest.line("hostile", i, orjson.dumps(snap))
    odd = WRow("a\"b\\c\nd", "x@y@z", "q", {"received": 2})  # a valid section with hostile names
    ingest.line("hostile", 4, orjson.dumps(workload_snapshot(t + 4, t, rows=[odd])))
    text = render(state, t + 5)
    assert promtool_problems(promtool(), text) == []
    got = samples(text)
    names = {dict(k[1]).get("name") for k in got if k[0] == "celery_task_received_total"}
    assert 'a"b\\cd' in names  # control characters kept out; quotes and backslashes escaped, read back whole
    assert not said
    assert {dict(k[1]).get("hostname") for k in got if k[0] == "celery_task_received_total"} >= {"y@z"}


def test_a_label_set_born_after_serve_started_is_scraped_at_zero_once_before_its_value():
    """A counter born at its value is invisible to increase(): the first failures of a new task
    would never show in CeleryTaskHighFailRate. A restart (serve's first look) shows values at once."""
    t = time.time()
    state = State()
    ingest = Ingest(state, None, lambda _m: None)
    scrape = exposition_maker(state, lambda: t)
    ingest.line("s", 1, orjson.dumps(workload_snapshot(t - 2, t - 10, rows=[])))
    scrape()
    new = WRow("app.new", "celery@w1", "celery", {"received": 3, "started": 3, "failed": 3},
               exceptions={"ValueError": 3})
    ingest.line("s", 2, orjson.dumps(workload_snapshot(t - 1, t - 10, rows=[new])))
    key = ("cluster", "default"), ("exception", "ValueError"), ("hostname", "w1"), ("name", "app.new"), \
        ("queue_name", "celery")
    assert samples(scrape().decode())[("celery_task_failed_total", key)] == 0  # seen at 0 by a scrape
    ingest.line("s", 3, orjson.dumps(workload_snapshot(t, t - 10, rows=[new])))
    assert samples(scrape().decode())[("celery_task_failed_total", key)] == 3  # then its value

    restarted = State()  # serve restarted: its first snapshot already holds the row
    Ingest(restarted, None, lambda _m: None).line("s", 1, orjson.dumps(workload_snapshot(t, t - 10, rows=[new])))
    assert samples(render(restarted, t))[("celery_task_failed_total", key)] == 3
