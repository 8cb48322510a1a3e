"""How long `doorman-notify` takes to deliver a burst of 100 alerts to local receivers.

Runs the real command (process start included) against the tests' threaded HTTP receiver on
127.0.0.1: webhook + PagerDuty (200 requests, one per alert and destination), then Slack alone
(the burst becomes summary messages, paced at one a second). Prints the median of a few runs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from tests.support.notify import HOOK_PATH, PD_PATH, SLACK_PATH, alert, ndjson, notify_env
from tests.support.process import cli, records
from tests.support.receiver import Receiver, Reply

RUNS = 5
BURST = 100


def one_run(receiver: Receiver, **destinations: str) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory(prefix="doorman-bench-") as tmp:
        env = notify_env(Path(tmp), PAGERDUTY_MIN_SEVERITY="info", **destinations)
        before = len(receiver.requests)
        started = time.perf_counter()
        p = cli("doorman-notify", input=ndjson(*[alert(i) for i in range(1, BURST + 1)]), env=env)
        elapsed = time.perf_counter() - started
        if p.returncode != 0:
            raise RuntimeError(f"doorman-notify exited {p.returncode}: {p.stderr.decode()[-500:]}")
        delivered = sum(r["result"] == "delivered" for r in records(p.stdout))
        return elapsed, delivered, len(receiver.requests) - before


def measure(label: str, receiver: Receiver, **destinations: str) -> None:
    runs = [one_run(receiver, **destinations) for _ in range(RUNS)]
    times = sorted(r[0] for r in runs)
    _, delivered, posts = runs[0]
    print(f"{label:<34} median {statistics.median(times):6.2f} s  (min {times[0]:.2f}, max {times[-1]:.2f}; "
          f"{delivered} delivery records, {posts} HTTP posts per run)", flush=True)


def main() -> None:
    receiver = Receiver()
    receiver.script(PD_PATH, Reply(202, '{"status":"success"}'))
    try:
        empty = time.perf_counter()
        cli("doorman-notify", input=b"", env=notify_env(Path(tempfile.gettempdir()) / "doorman-bench-empty"))
        print(f"process start, empty input:        {time.perf_counter() - empty:6.2f} s", flush=True)
        measure(f"{BURST} alerts → webhook + pagerduty", receiver,
                hook=receiver.url(HOOK_PATH), pd=receiver.url(PD_PATH))
        measure(f"{BURST} alerts → slack (summaries)", receiver, slack=receiver.url(SLACK_PATH))
    finally:
        receiver.close()


if __name__ == "__main__":
    main()
