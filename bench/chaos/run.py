"""One soak end to end: plan it, carry it out, score it, replay it. Shared by the bench and the test."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.chaos import driver, scenario
from bench.chaos.report import report, timeline
from bench.chaos.score import Rules, Score, score
from doorman import plugins


@dataclass
class Outcome:
    seed: int
    seconds: float
    result: driver.Result
    score: Score
    replayed: list[dict[str, Any]]
    plan: list[scenario.Step]

    @property
    def replay_same(self) -> bool:
        return self.replayed == self.result.analyzed

    @property
    def delivered_as_analyzed(self) -> bool:
        """Every alert analyze wrote reached the webhook once, in order."""
        return [a["alert"] for a in sorted(self.result.alerts, key=lambda a: a["received"])] == self.result.analyzed

    def lines(self) -> list[str]:
        r = self.result
        out = [f"chaos soak: seed {self.seed}, {self.seconds:g} s, {len(self.plan)} steps "
               f"({', '.join(f'{k} {v}' for k, v in scenario.kinds(self.plan).items())}); "
               f"{r.snapshots} snapshots recorded in {r.dir}/snapshots.ndjson"]
        out += report(self.score)
        out.append(f"replay of the recorded snapshots through doorman-analyze: "
                   f"{'the same' if self.replay_same else 'DIFFERENT'} {len(self.replayed)} alerts "
                   f"(live: {len(r.analyzed)}); webhook got every alert analyze wrote, once, in order: "
                   f"{'yes' if self.delivered_as_analyzed else 'NO'}")
        if r.errors:
            out += ["driver errors:"] + [f"  {e}" for e in r.errors]
        out.append("timeline (seconds from the soak's start):")
        out += ["  " + line for line in timeline(self.score, r.log, r.t0)]
        return out


def alert_types() -> frozenset[str]:
    return frozenset(t.name for r in plugins.rules() for t in r.alert_types)


def run_soak(seed: int, seconds: float, workdir: str | None = None,
             progress: Callable[[str], None] | None = None, first: tuple[str, ...] | None = None,
             cancel: threading.Event | None = None, soak: type[driver.Soak] = driver.Soak) -> Outcome:
    """`soak`: the driver, driver.Soak (Redis) or rabbit_driver.RabbitSoak (RabbitMQ)."""
    steps = scenario.plan(seed, seconds, first=first)
    result = soak(workdir, cancel=cancel).run(steps, seconds, progress)
    rules = Rules(interval=driver.INTERVAL, max_wait=driver.MAX_WAIT, alert_types=alert_types())
    sc = score(result.log, result.alerts, rules, result.end)
    replayed = driver.replay(result)
    out = Outcome(seed, seconds, result, sc, replayed, steps)
    (result.dir / "score.json").write_bytes(orjson.dumps(
        {"seed": seed, "seconds": seconds, **sc.summary(), "replay_same": out.replay_same,
         "delivered_as_analyzed": out.delivered_as_analyzed, "errors": result.errors},
        option=orjson.OPT_INDENT_2))
    return out


def rescore(workdir: str) -> list[str]:
    """Score a recorded soak again from its files (events.ndjson, received.ndjson): the report and timeline."""
    d = Path(workdir)
    log = [orjson.loads(line) for line in (d / "events.ndjson").read_bytes().splitlines() if line.strip()]
    alerts = [orjson.loads(line) for line in (d / "received.ndjson").read_bytes().splitlines() if line.strip()]
    t0 = next(e["t"] for e in log if e["action"] == "soak_start")
    end = next((e["t"] for e in log if e["action"] == "soak_end"), max(e["t"] for e in log))
    sc = score(log, alerts, Rules(interval=driver.INTERVAL, max_wait=driver.MAX_WAIT, alert_types=alert_types()), end)
    return report(sc) + ["timeline (seconds from the soak's start):"] + ["  " + x for x in timeline(sc, log, t0)]


if __name__ == "__main__":  # python -m bench.chaos.run DIR: score a recorded soak again
    print("\n".join(rescore(sys.argv[1])))
