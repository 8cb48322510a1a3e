"""The seeded chaos soak (issue 17): one hour of broken workers, broker restarts and pauses, bursts and an
unconsumed queue against the real daemon line, every delivered alert scored against ground truth.

Real redis-server (free loopback port), three real prefork workers (--concurrency 1), the real
`doorman-collect --interval 5 | doorman-analyze | doorman-notify` to an HTTP receiver on 127.0.0.1;
see bench/chaos/ for the plan, the driver and the scoring rules. CHAOS_SECONDS (default 3600) and
CHAOS_SEED (default 17) choose the soak. Prints the score (goal at default settings: 0 missed,
0 false alarms, 0 duplicate pages), detection delays, the replay check and the timeline; keeps
the recording in bench-results/chaos-SEED-SECONDS/. Nothing is asserted.
"""

from __future__ import annotations

import os
import shutil
import sys

from bench.chaos.run import run_soak
from tests.support.process import ROOT

# bench/report.py (`make bench`) gives this benchmark the soak plus a quarter of an hour
TIMEOUT_SECONDS = float(os.environ.get("CHAOS_SECONDS") or 3600) + 900


def main() -> None:
    seconds = float(os.environ.get("CHAOS_SECONDS") or 3600)
    seed = int(os.environ.get("CHAOS_SEED") or 17)
    workdir = ROOT / "bench-results" / f"chaos-{seed}-{seconds:g}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, mode=0o700)
    print(f"chaos soak: seed {seed}, {seconds:g} s (CHAOS_SEED, CHAOS_SECONDS); progress on stderr", flush=True)
    outcome = run_soak(seed, seconds, str(workdir), progress=lambda s: print(s, file=sys.stderr, flush=True))
    for line in outcome.lines():
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
