"""`doorman-collect` over many brokers (`clusters:`): one thread per cluster, each running its own
`collect` schedule, so one broker's slowness or outage never delays another's snapshots.

A black-holed broker (it accepts the connection and never answers) holds only its own thread, for
its own timeouts (`redis_timeout`, `rabbitmq_timeout`), and its snapshots say it is down. Lines
from every thread go through one lock and are written whole. A stop finishes each cluster's
snapshot in hand; a cluster whose collector fails outright is reported and started again after
its interval, the others going on meanwhile. In a daemon the clusters' schedules are spread evenly
over the interval (cluster i of n starts i/n of its interval late): a snapshot costs the one
interpreter a few milliseconds, and 50 of them at the same instant would queue behind each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from doorman.collect.run import run as collect
from doorman.config.settings import Config
from doorman.contract.snapshot import Snapshot
from doorman.redact import Scrubber

Emit = Callable[[Snapshot, int], None]
Collect = Callable[..., int]


class Fleet:
    """Run with `run()`; `stop()` (from any thread, e.g. the signal thread) ends every cluster's
    schedule after the snapshot in hand."""

    def __init__(self, clusters: Sequence[Config], emit: Emit, say: Callable[[str], None], *,
                 once: bool = False, count: int | None = None, collect_one: Collect = collect):
        self.clusters = list(clusters)
        self.emit, self.say = emit, say
        self.once, self.count = once, count
        self.collect_one = collect_one
        self.stopping = threading.Event()
        self.wakes = {c.cluster: threading.Event() for c in self.clusters}  # each cluster's heartbeat wake-up
        self.lock = threading.Lock()
        self.failed: set[str] = set()  # clusters whose collector raised (a down broker is not a failure)
        self.pipe_closed: BaseException | None = None

    def stop(self) -> None:
        self.stopping.set()
        for wake in self.wakes.values():
            wake.set()

    def run(self) -> int:
        """Until stopped (or each cluster's `once`/`count` is done); how many clusters failed."""
        n = len(self.clusters)
        threads = [threading.Thread(target=self._watch, args=(c, 0.0 if self.once else i * c.check_interval / n),
                                    name=f"collect {c.cluster}", daemon=True)
                   for i, c in enumerate(self.clusters)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # join in slices: the main thread stays responsive
                t.join(0.5)
        if self.pipe_closed is not None:
            raise self.pipe_closed  # the reader went away (`| head`): the CLI ends quietly
        return len(self.failed)

    def _watch(self, cfg: Config, offset: float) -> None:
        """One cluster's schedule, starting `offset` seconds in: the clusters' ticks are spread over
        the interval, so their snapshots do not all contend for the interpreter at one instant."""
        taken = 0
        name = cfg.cluster
        if self.stopping.wait(offset):
            return

        def emit(snap: Snapshot, n: int) -> None:
            nonlocal taken
            taken += 1
            self._write(snap, taken)

        while not self.stopping.is_set():
            left = None if self.count is None else self.count - taken
            if left is not None and left <= 0:
                return
            try:
                self.collect_one(cfg, emit, once=self.once, count=left, stopping=self.stopping,
                                 wake=self.wakes[name])
                return
            except BrokenPipeError:
                return
            except Exception as e:  # noqa: BLE001 - one cluster's failure must not end the others
                self.failed.add(name)
                text = Scrubber(cfg.secrets())(f"{type(e).__name__}: {e}")[:500]
                self.say(f"cluster {name}: the collector failed ({text}); "
                         f"{'giving up' if self.once else f'starting again in {cfg.check_interval:g}s'}")
                if self.once:
                    return
            self.stopping.wait(cfg.check_interval)

    def _write(self, snap: Snapshot, n: int) -> None:
        with self.lock:
            if self.pipe_closed is not None:
                raise BrokenPipeError
            try:
                self.emit(snap, n)
            except BrokenPipeError as e:
                self.pipe_closed = e
                self.stop()
                raise

