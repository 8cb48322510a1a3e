"""Stop signals for the threaded stages, handled without a signal handler.

A Python signal handler runs in the main thread between two bytecodes, possibly while that thread
holds the very lock the handler needs: `threading.Event.set()` or `Queue.put()` from a handler
can deadlock the process for good (seen: a collect daemon that ignored SIGTERM for ever). So
collect and notify block the stop signals in every thread and take them in a dedicated thread
with `sigwait`, which then sets events like any other thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signal(callback: Callable[[int], None], signals: Iterable[int] = STOP_SIGNALS) -> None:
    """Call `callback(signum)` from a helper thread for every stop signal.

    Call it before starting any other thread: threads inherit the signal mask, so the signals
    then reach only the waiting thread. (Not for a process that spawns children: they would
    inherit the blocked mask.)"""
    sigs = set(signals)
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)

    def wait_for_signals() -> None:
        while True:
            callback(signal.sigwait(sigs))

    threading.Thread(target=wait_for_signals, name="doorman-signals", daemon=True).start()
