"""The dead-man's switch: who watches Doorman (its pings; the `tick` record is `doorman.contract.tick`).

doorman-analyze writes one `tick` record after each snapshot's alerts, whether it raised any or
not (a quiet cycle writes nothing else), when `heartbeat_url` is set. doorman-notify, the last
stage, consumes the ticks (they never reach a destination and are never printed) and pings
`heartbeat_url` once per batch of input that held a tick, after that batch's alerts were handed to
their destinations. So the pings stop when collect, analyze or notify dies, or when the pipe
between them breaks. A batch in which a tick says the broker could not be read pings
`heartbeat_url` + `heartbeat_fail_suffix` (`/fail`, as healthchecks.io expects).

A ping is one GET with a short timeout on a background thread: a slow or dead monitor never
holds up an alert. Only the newest ping waits while one is in flight (a backlog of old pings
tells a monitor nothing).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from doorman.config.settings import Setting
from doorman.contract.tick import Tick

SETTINGS = (
    Setting("heartbeat_url", "webhook", None, ("DOORMAN_HEARTBEAT_URL",),
            "Dead-man's switch (healthchecks.io, Cronitor...): doorman-notify GETs it once per cycle. Set it for "
            "doorman-analyze too, which then writes the cycle's `tick` records.", secret=True),
    Setting("heartbeat_fail_suffix", "str", "/fail", ("DOORMAN_HEARTBEAT_FAIL_SUFFIX",),
            "Appended to heartbeat_url's path for a cycle in which the broker could not be read."),
    Setting("heartbeat_timeout_seconds", "float", 5.0, ("DOORMAN_HEARTBEAT_TIMEOUT_SECONDS",),
            "Seconds one heartbeat ping may take (connect and answer).", positive=True),
)

def fail_url(url: str, suffix: str) -> str:
    """`suffix` appended to the URL's path, its query kept: https://hc-ping.com/<uuid>/fail."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path.rstrip("/") + suffix, p.query, p.fragment))


Get = Callable[[str, float], int]  # (url, timeout) -> HTTP status; raises on a network error


def requests_get() -> Get:
    """A GET through `doorman.httpcall`: `timeout` is the whole ping's deadline, the answer is read
    up to `MAX_HTTP_ANSWER_BYTES` and dropped; any failure raises `HttpError`."""
    from doorman import httpcall
    from doorman.bounds import MAX_HTTP_ANSWER_BYTES

    session = httpcall.session()

    def get(url: str, timeout: float) -> int:
        resp = httpcall.call(session, "GET", url, deadline=timeout, max_bytes=MAX_HTTP_ANSWER_BYTES, over="cut",
                             headers={"User-Agent": "celery-doorman/0.1 (doorman-notify heartbeat)"})
        return resp.status_code

    return get


class Pinger:
    """Pings on its own thread. `beat(ok)` never blocks; `close(timeout)` lets a last ping finish
    (a cron run exits right after its only cycle). A failing monitor is said once on stderr
    (`say` scrubs secrets), and again when it answers again."""

    def __init__(self, url: str, fail_suffix: str, timeout: float, say: Callable[[str], None],
                 get: Get | None = None):
        self.url, self.fail = url, fail_url(url, fail_suffix)
        self.timeout, self.say = timeout, say
        self.get = get
        self.pending: queue.Queue[bool | None] = queue.Queue(maxsize=1)
        self.failing = False
        self.sent = 0
        self.idle = threading.Event()  # no ping waiting or in flight
        self.idle.set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="doorman-heartbeat", daemon=True)
        self.thread.start()

    def beat(self, ok: bool) -> None:
        """Ping the URL (or its /fail form) soon. Replaces a ping still waiting."""
        with self.lock:
            self.idle.clear()
            try:
                self.pending.get_nowait()  # an older ping not sent yet: the newest replaces it
            except queue.Empty:
                pass
            self.pending.put_nowait(ok)

    def ticks(self, ticks: list[Tick]) -> None:
        """One ping for a batch of cycles: to the /fail URL when any says the broker could not be read."""
        if ticks:
            self.beat(all(t.get("broker_ok") is True for t in ticks))

    def close(self, timeout: float) -> None:
        """Wait up to `timeout` for the ping in hand; then stop the thread."""
        self.idle.wait(timeout)
        try:
            self.pending.put_nowait(None)
        except queue.Full:
            pass

    def _run(self) -> None:
        get = self.get or requests_get()
        while True:
            ok = self.pending.get()
            if ok is None:
                return
            self._ping(get, self.url if ok else self.fail)
            with self.lock:
                if self.pending.empty():
                    self.idle.set()

    def _ping(self, get: Get, url: str) -> None:
        where = "heartbeat_url" + ("" if url == self.url else " (fail)")
        try:
            status = get(url, self.timeout)
            problem = None if 200 <= status < 300 else f"HTTP {status}"
        except Exception as e:  # noqa: BLE001 - any failure of a ping is said, never raised
            from doorman.httpcall import HttpError, network_problem

            try:
                problem = str(e) if isinstance(e, HttpError) else network_problem(e, url, (self.timeout, self.timeout))
            except Exception:  # noqa: BLE001
                problem = type(e).__name__
        self.sent += 1
        if problem and not self.failing:
            self.say(f"warning: the heartbeat ping to {where} failed: {problem}; alerts are unaffected")
        elif not problem and self.failing:
            self.say("the heartbeat ping works again")
        self.failing = bool(problem)
