"""The seeded chaos soak on RabbitMQ (issue 26): one hour of the same plan as bench_chaos.py, against
the machine's RabbitMQ in a throw-away vhost (its outage a relay cut, its pause a relay hold: the
shared server is never restarted; tests/chaos/rabbit_driver.py), three real prefork workers and the
real `doorman-collect --interval 5 | doorman-analyze | doorman-notify` to an HTTP receiver.

CHAOS_SECONDS (default 3600) and CHAOS_SEED (default 17) choose the soak, as for bench_chaos. Prints
the score (goal: 0 missed, 0 false alarms, 0 duplicate pages), detection delays, the replay check
and the timeline; keeps the recording in bench-results/chaos-rabbitmq-SEED-SECONDS/. Nothing is asserted.
"""

from __future__ import annotations

import os
import shutil
import sys

from bench.chaos.rabbit_driver import RabbitSoak
from bench.chaos.run import run_soak
from tests.support.process import ROOT

TIMEOUT_SECONDS = float(os.environ.get("CHAOS_SECONDS") or 3600) + 900


def main() -> None:
    seconds = float(os.environ.get("CHAOS_SECONDS") or 3600)
    seed = int(os.environ.get("CHAOS_SEED") or 17)
    workdir = ROOT / "bench-results" / f"chaos-rabbitmq-{seed}-{seconds:g}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, mode=0o700)
    print(f"chaos soak on RabbitMQ: seed {seed}, {seconds:g} s (CHAOS_SEED, CHAOS_SECONDS); progress on stderr",
          flush=True)
    outcome = run_soak(seed, seconds, str(workdir), progress=lambda s: print(s, file=sys.stderr, flush=True),
                       soak=RabbitSoak)
    for line in outcome.lines():
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
