"""doorman-simulate's task-outcome scenarios end to end: its own redis-server, real workers (with
and without -E), the real collect | analyze pipeline reading task events. Exact alerts from stdout,
and nothing the run started is left. (They need doorman-collect's task-event reader, issue 24.)"""

from __future__ import annotations

import pytest

from doorman import demoapp
from tests.support.process import cli, free_port, records
from tests.support.simulate import assert_all_gone

pytestmark = pytest.mark.e2e  # real workers, brokers or whole pipelines


def scenario(name: str) -> tuple[int, list[dict], str]:
    port = free_port()
    got = cli("doorman-simulate", "--scenario", name, "--port", str(port), "--interval", "0.5", timeout=180)
    assert_all_gone(port)
    return got.returncode, records(got.stdout), got.stderr.decode()


def test_failing_task_gives_exactly_one_task_failure_rate():
    code, alerts, talk = scenario("failing-task")
    assert code == 0, talk[-3000:]
    assert [(a["alert_type"], a["severity"], a["status"], a["subject"]) for a in alerts] == [
        ("task_failure_rate", "warning", "firing", "task:doorman.demoapp.flaky")], talk[-3000:]
    d = alerts[0]["details"]
    assert d["failed"] >= 5 and d["ratio"] > 0.05 and set(d["exceptions"]) == {"FlakyError"}
    assert "the expected alert came" in talk


def test_events_off_gives_task_events_off_saying_how_to_turn_them_on():
    code, alerts, talk = scenario("events-off")
    assert code == 0, talk[-3000:]
    assert [(a["alert_type"], a["severity"], a["status"]) for a in alerts] == [
        ("task_events_off", "warning", "firing")], talk[-3000:]
    assert "-E" in alerts[0]["message"] and "worker_send_task_events" in alerts[0]["message"]


@pytest.mark.parametrize("task", [demoapp.flaky, demoapp.healthy])
def test_the_demo_tasks_fail_the_same_30_percent_on_every_run(task):
    failed = 0
    for i in range(100):
        try:
            assert task.run(i) == i
        except demoapp.FlakyError:
            failed += 1
    assert failed == (30 if task is demoapp.flaky else 0)
