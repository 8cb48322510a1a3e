"""Five minutes of the same seeded chaos on RabbitMQ, scored against what really happened.

The machine's RabbitMQ in a throw-away vhost (never restarted: its outage is a relay cut, its pause a
relay hold, tests/chaos/rabbit_driver.py), three real prefork workers (one killed four times in a row,
others once), bursts over and under the backlog threshold, an unconsumed queue, and `doorman-collect
--interval 5 | doorman-analyze | doorman-notify` to a webhook on 127.0.0.1. Scored by
tests/chaos/score.py exactly as the Redis soak (tests/test_chaos.py): nothing missed, no false alarm,
no duplicate page, no early all-clear; the recorded snapshots replayed give the same alerts.

Like the Redis soak it mostly waits, so conftest.py starts it beside the rest of the suite (and
beside the Redis soak) once the tests are collected, and this test, placed last, collects it.
"""

from __future__ import annotations

import pytest

from bench.chaos.rabbit_driver import RabbitSoak
from tests.support.chaos import FIRST, LIMIT, SECONDS, SEED, Background
from tests.support.rabbit import require_rabbitmq

pytestmark = pytest.mark.soak


class RabbitBackground(Background):
    """The Redis soak's background runner, with the RabbitMQ driver (a missing RabbitMQ fails the
    soak's first step, and so the test, loudly)."""

    def _run(self) -> None:
        from bench.chaos.run import run_soak

        try:
            self.outcome = run_soak(SEED, SECONDS, self.dir, first=FIRST, cancel=self.cancel, soak=RabbitSoak)
        except BaseException as e:  # noqa: BLE001 - handed to the test, which fails with it
            self.error = e
        finally:
            self.done.set()


BACKGROUND = RabbitBackground()


@pytest.mark.timeout(LIMIT + 60)
def test_five_minutes_of_chaos_on_rabbitmq_score_clean_and_replay_the_same():
    require_rabbitmq()
    outcome = BACKGROUND.result()
    report = "\n".join(outcome.lines())
    sc = outcome.score
    kinds = [i.kind for i in sc.incidents if i.required]
    # the plan really broke what it says (the test cannot pass on a quiet run)
    assert kinds.count("worker_kill") + kinds.count("worker_kill_repeat") >= 4, report
    assert "worker_kill_repeat" in kinds and "broker_restart" in kinds and "burst_above" in kinds, report
    assert "pause_long" in kinds, report
    assert outcome.result.errors == [], report
    assert (len(sc.missed), len(sc.false_alarms), len(sc.duplicate_pages), len(sc.false_all_clears)) == (0, 0, 0, 0), report
    assert outcome.result.analyzed, report
    assert outcome.replay_same, report
    assert outcome.delivered_as_analyzed, report
