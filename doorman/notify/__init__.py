"""doorman-notify's engine: intake, routing, retries and pacing, the spool, the records.

`run_notify` is the whole command; the parts are importable for tests and embedding:
`intake` (reading and batching alerts), `dispatch` (routing), `courier` (sending one
destination's alerts), `replay` (the write-ahead path), `journal` (the spool file), `retry`
(backoff and pacing on an injectable clock), `records` (delivery records).
"""

from doorman.notify.dispatch import Dispatcher
from doorman.notify.intake import Intake, alert_problem, stream_alerts
from doorman.notify.journal import Spool, default_path
from doorman.notify.retry import Clock, Pacer, RetryPolicy, send_with_retry
from doorman.notify.service import Shutdown, run, run_notify

__all__ = ["Clock", "Dispatcher", "Intake", "Pacer", "RetryPolicy", "Shutdown", "Spool", "alert_problem",
           "default_path", "run", "run_notify", "send_with_retry", "stream_alerts"]
