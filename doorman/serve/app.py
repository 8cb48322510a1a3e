"""doorman-serve's run: readers of the streams in threads, the HTTP server in the main thread.

Serve sits beside the pipeline (it reads the files `tee -a` writes), never in it: whatever
happens here — slow SQLite, a stuck client, SIGSTOP, a crash — no stage waits for it.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from doorman.errors import DoormanError
from doorman.process import stop_signals
from doorman.serve.auth import check_bind, parse_listen
from doorman.serve.follow import follow_files, read_stream
from doorman.serve.history import History
from doorman.serve.http import App, allowed_hosts, make_server
from doorman.serve.ingest import Ingest
from doorman.serve.metrics import Exposition
from doorman.serve.state import Limits, State


class CannotListen(DoormanError):
    exit_code = 2


@dataclass(frozen=True)
class ServeOptions:
    files: tuple[str, ...]
    listen: str
    history: str | None  # None: no history (no dashboard charts)
    retention: float
    check_interval: float
    token: str | None
    no_auth: bool
    limits: Limits
    backlog: int = 16 * 1024 * 1024
    allowed_hosts: tuple[str, ...] = ()  # serve_allowed_hosts


def parse_duration(text: str) -> float:
    """`7d`, `24h`, `90m`, `30s` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    mult = units.get(t[-1:], None)
    try:
        value = float(t[:-1] if mult else t) * (mult or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 7d, 24h, 3600)") from None
    if not value > 0:
        raise ValueError(f"{text!r}: must be more than 0")
    return value


def serve(opts: ServeOptions, warn: Callable[[str], None], stdin: IO[bytes],
          ready: Callable[[str], None] | None = None) -> int:
    host, port = parse_listen(opts.listen)
    note = check_bind(host, opts.token, opts.no_auth)
    if note:
        warn(note)
    state = State(opts.limits)
    history = History(opts.history, opts.retention) if opts.history else None
    ingest = Ingest(state, history, warn)
    exposition = Exposition(state, time.time)
    app = App(state, exposition.render, opts.history, opts.check_interval, opts.token,
              hosts=allowed_hosts(host, opts.allowed_hosts), metrics_gzip=exposition.render_gzip)
    try:
        server = make_server(host, port, app)
    except OSError as e:
        raise CannotListen(f"--listen {opts.listen}: {e.strerror}") from None
    stop = threading.Event()
    lock = threading.Lock()  # one reader at a time writes to SQLite

    def sink(source: str, lineno: int, raw: bytes) -> None:
        with lock:
            ingest.line(source, lineno, raw)

    def read() -> None:
        try:
            if opts.files:
                follow_files(list(opts.files), sink, warn, stop, opts.backlog)
            else:
                read_stream(stdin, "<stdin>", sink, warn)  # EOF: keep serving what we have
        except Exception as e:  # noqa: BLE001 - the reader must say why it stopped, and serve on
            warn(f"reading stopped: {type(e).__name__}: {e}")

    reader = threading.Thread(target=read, name="serve-reader", daemon=True)
    reader.start()

    def keep_metrics_fresh() -> None:  # a scrape then only adds the snapshots' age
        while not stop.wait(0.2):
            exposition.refresh()

    threading.Thread(target=keep_metrics_fresh, name="serve-metrics", daemon=True).start()

    def on_signal(signum: int) -> None:  # noqa: ARG001 - from doorman.process's thread, not a handler
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signals = contextlib.ExitStack()
    if threading.current_thread() is threading.main_thread():
        signals.enter_context(stop_signals(on_signal, (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)))
    bound = server.server_address
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound[1]}/"
    warn(f"serving {url} (metrics at {url}metrics); reading {', '.join(opts.files) or 'stdin'}")
    if ready:
        ready(url)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        signals.close()
        stop.set()
        server.server_close()
        reader.join(2)
        if history is not None:
            with lock:
                history.close()
    return 0


def main_stdin() -> IO[bytes]:
    return sys.stdin.buffer
