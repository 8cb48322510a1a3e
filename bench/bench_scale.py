"""`make bench` figures for doorman-scale.

1. Policy throughput: a day of 5-second snapshots (a burst every hour) through `Stage`, decisions
   only. Goal: >= 5,000 snapshots/s (a day replays in seconds; a collector writes about one a second).
2. The autoscale demo on real workers (`doorman.simulate.autoscale`), 120 tasks of 1 s: the drain
   time with scaling and without. Goals: with scaling at most half; no flapping (at most one
   scale-down per stabilization window, no scale-up after the first scale-down).
"""

from __future__ import annotations

import os
import time

from doorman.scale.policy import Policy
from doorman.scale.settings import Pool
from doorman.scale.stage import Stage
from doorman.simulate.autoscale import AutoscaleOptions, autoscale
from tests.support.process import free_port
from tests.support.scale import Model


def policy_throughput() -> None:
    model, snaps = Model(workers=2), []
    for i in range(17_280):  # one day, every 5 s
        model.advance(5, rate=0.3, burst=400 if i % 720 == 0 else 0)
        snaps.append(model.snapshot())
    decisions: list[dict] = []
    stage = Stage([Pool("default", None, 1, 20, 30.0)], Policy(), decisions.append, lambda _: None)
    started = time.perf_counter()
    for s in snaps:
        stage.feed(s)
    took = time.perf_counter() - started
    print(f"policy: {len(snaps)} snapshots in {took:.2f} s = {len(snaps) / took:,.0f} snapshots/s "
          f"(goal >= 5,000); {len(decisions)} decisions written")


def demo() -> None:
    opts = AutoscaleOptions(tasks=120, task_seconds=1.0, port=free_port())
    result = autoscale(opts, dict(os.environ), lambda m: print(f"  {m}", flush=True))
    for line in result.lines():
        print(line)


def main() -> None:
    policy_throughput()
    demo()


if __name__ == "__main__":
    main()
