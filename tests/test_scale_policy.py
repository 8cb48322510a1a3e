"""The scaling policy on synthetic snapshot sequences (docs/scale.md, "The policy"): a small
queueing model makes the snapshots a collector would write, the policy reads them, and the tests
check the decisions: steady load, a burst, a slow drain, the broker down, stale data, a worker
crash. No clock, no sleep: time is the snapshots' ts."""

from __future__ import annotations

import math

from doorman.scale.policy import Decision, Hold, Policy, State, step
from doorman.scale.settings import Pool
from doorman.timefmt import iso
from tests.support.scale import T0, Model

POOL = Pool("default", None, 1, 20, 30.0)
POLICY = Policy(stabilization=300.0, rate_window=60.0, stale_after=120.0)


def run(snaps, pool: Pool = POOL, policy: Policy = POLICY, state: State | None = None):
    state = state or State()
    outs = []
    for s in snaps:
        state, out = step(state, s, pool, policy)
        outs.append(out)
    return state, outs


def drive(model: Model, seconds: int, every: int = 5, rate: float = 0.0, follow: bool = True,
          state: State | None = None, pool: Pool = POOL, burst: int = 0):
    """Snapshot every `every` s for `seconds`; with `follow` the model's workers follow each decision
    (an engine that obeys at once)."""
    state = state or State()
    outs: list[Decision | Hold] = []
    for i in range(seconds // every):
        model.advance(every, rate, burst if i == 0 else 0)
        state, out = step(state, model.snapshot(), pool, POLICY)
        outs.append(out)
        if follow and isinstance(out, Decision):
            model.scale_to(out.desired)
    return state, outs


def changes(outs) -> list[Decision]:
    return [o for o in outs if isinstance(o, Decision) and o.changed]


def test_steady_load_without_backlog_keeps_the_workers_it_has():
    model = Model(workers=3)
    state, outs = drive(model, 1800, rate=2)
    assert isinstance(outs[0], Hold) and "first reading" in outs[0].reason
    [first] = changes(outs)  # the first decision only: nothing to change over half an hour
    assert first.desired == 3 and first.current == 3
    assert all(o.desired == 3 for o in outs[1:])
    assert model.pending == 0


def test_idle_pool_shrinks_to_min_one_step_per_window():
    model = Model(workers=8)
    state, outs = drive(model, 1200)
    downs = changes(outs)[1:]
    assert [d.desired for d in downs] == [4, 2, 1]  # at most half each time, down to min 1
    gaps = [b.ts - a.ts for a, b in zip(downs, downs[1:], strict=False)]
    assert all(g >= POLICY.stabilization for g in gaps), gaps
    assert downs[0].ts - T0 >= POLICY.stabilization


def test_burst_scales_up_at_once_then_down_without_flapping():
    model = Model(workers=1, pace=1.0)
    warm, _ = drive(model, 20, rate=0.5)
    state, outs = drive(model, 1500, burst=300, state=warm)
    ups = [d for d in changes(outs) if d.reason.startswith("scale up")]
    first_up = ups[0]
    # Within two snapshots of the burst (one to measure the pace of a busy worker):
    assert first_up.ts - (T0 + model.t - 1500) <= 10
    i = first_up.inputs  # Little's law: (λ + backlog / 30 s) / 1 task/s per worker
    assert i["pending"] > 250 and i["service_rate"] == 1.0 and i["arrival_rate"] > 4  # the burst arrived
    assert first_up.desired == math.ceil((i["arrival_rate"] + i["pending"] / 30) / 1.0) == 15
    drained = next(o.ts for o in outs if isinstance(o, Decision) and o.inputs["pending"] == 0)
    assert drained - (T0 + model.t - 1500) <= 45  # 300 tasks of 1 s in well under 300 s
    downs = [d for d in changes(outs) if d.reason.startswith("scale down")]
    assert downs, "never scaled back down"
    assert all(b.desired >= (a.desired + 1) // 2 for a, b in zip(changes(outs), changes(outs)[1:], strict=False)
               if b.desired < a.desired)
    assert all(b.ts - a.ts >= POLICY.stabilization for a, b in zip(downs, downs[1:], strict=False))
    assert not [d for d in changes(outs) if d.reason.startswith("scale up") and d.ts > downs[0].ts]  # no flapping
    # Down by at most half, never under the highest need of the last window (10 while draining):
    assert [d.desired for d in changes(outs)] == [15, 10, 5, 3, 2]


def test_slow_drain_holds_while_tasks_are_late_and_never_goes_to_zero_while_tasks_wait():
    pool = Pool("slow", ("celery",), 0, 4, 30.0)
    model = Model(workers=4, pace=0.25)  # 1 task/s over 4 workers, 200 waiting: late for minutes
    state, outs = drive(model, 1500, burst=200, pool=pool)
    decisions = [o for o in outs if isinstance(o, Decision)]
    late = [d for d in decisions if d.inputs["oldest_age_seconds"] and d.inputs["oldest_age_seconds"] > 30]
    assert late and all(d.desired == 4 for d in late)
    assert all(d.desired >= 1 for d in decisions if d.inputs["pending"] > 0)
    assert decisions[-1].inputs["pending"] == 0 and decisions[-1].desired < 4


def test_never_zero_while_tasks_wait_even_with_min_zero_and_no_pace_measured():
    pool = Pool("p", None, 0, 5, 30.0)
    model = Model(workers=0)
    state, outs = drive(model, 20, burst=3, pool=pool, follow=False)
    [d] = changes(outs)
    assert d.current == 0 and d.desired == 1 and "not measured" in d.reason


def test_broker_down_means_no_decision_and_a_fresh_start_after():
    model = Model(workers=4)
    state, outs = drive(model, 60)
    down = {**model.snapshot(), "redis_connected": False, "error": "ConnectionError: refused", "queues": {},
            "workers": []}
    later = []
    for i in range(100):  # 500 s down, longer than the stabilization window
        down = {**down, "ts": iso(T0 + model.t + 5 * (i + 1))}
        later.append(down)
    model.advance(505)
    state, outs = run([*later, model.snapshot()], state=state)
    assert all(isinstance(o, Hold) and o.reason.startswith("broker down") for o in outs[:-1])
    assert isinstance(outs[-1], Hold) and "first reading" in outs[-1].reason
    assert state.desired == 4  # nothing decided from the outage: the empty worker list is not "0 workers"
    model.advance(5)
    state, [after] = run([model.snapshot()], state=state)
    assert isinstance(after, Decision) and after.desired == 4 and "hold" in after.reason


def test_stale_or_out_of_order_snapshots_give_no_decision():
    model = Model(workers=2)
    state, outs = drive(model, 30)
    model.advance(600)  # the collector was stuck for 10 minutes
    state, [gap] = run([model.snapshot()], state=state)
    assert isinstance(gap, Hold) and gap.reason.startswith("stale data: 600 s")
    old = {**model.snapshot(), "ts": iso(T0 + 10)}
    state, [back] = run([old], state=state)
    assert isinstance(back, Hold) and "older than the previous" in back.reason
    model.advance(5)
    state, [ok] = run([model.snapshot()], state=state)
    assert isinstance(ok, Decision)


def test_worker_crash_keeps_the_pace_estimate_and_the_decision():
    model = Model(workers=4, pace=1.0)
    state, outs = drive(model, 30, rate=4.5, pool=Pool("p", None, 1, 4, 30.0))
    pace = state.service
    model.crash("w2@host")
    restarted = model.snapshot()
    restarted["workers"].append({"name": "w3@host", "alive": False, "processed": None})
    model.advance(5, rate=4.5)
    snap = model.snapshot()
    snap["workers"][0]["processed"] = 2  # w1 restarted under the same name: its counter began again
    state, [after] = run([snap], state=state, pool=Pool("p", None, 1, 4, 30.0))
    assert isinstance(after, Decision)
    assert after.current == 3 and after.desired == 4 and not after.changed
    assert after.inputs["service_rate"] > 0 and abs(after.inputs["service_rate"] - pace) < 0.5
    assert after.inputs["arrival_rate"] >= 0


def test_hostile_snapshot_fields_are_ignored_not_fatal():
    model = Model(workers=1)
    state, _ = drive(model, 10)
    s = model.snapshot()
    s["queues"] = {"celery": {"pending": "many", "oldest": {"age_seconds": float("nan")}}, "x": [1]}
    s["workers"] = [{"name": 5, "alive": True}, {"name": "w1@host", "alive": True, "processed": -3,
                                                 "last_heartbeat": "yesterday"}, "junk"]
    model.advance(5)
    s["ts"] = model.snapshot()["ts"]
    state, [out] = run([s], state=state)
    assert isinstance(out, Decision) and out.inputs["pending"] == 0 and out.current == 1


def test_replay_is_deterministic():
    def once():
        model = Model(workers=1)
        return drive(model, 900, burst=120)[1]

    assert once() == once()


def test_no_scale_down_while_the_oldest_task_is_over_its_target():
    """Few tasks left but one has waited 100 s (a stuck head): the pace says 1 worker would do."""
    from dataclasses import replace

    model = Model(workers=6)
    state, _ = drive(model, 20)
    state = replace(state, desired=6, lower_since=T0 - 1000, service=5.0, arrival=0.0)
    model.advance(5)
    snap = model.snapshot()
    snap["queues"]["celery"] = {"pending": 2, "oldest": {"task_id": "a", "age_seconds": 100.0}, "heads": []}
    state, [d] = run([snap], state=state)
    assert d.desired == 6 and d.reason.startswith("hold 6: the oldest task has waited 100 s")
