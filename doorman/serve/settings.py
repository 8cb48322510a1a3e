"""doorman-serve's keys in the config file (its other options are flags): the Host allow-list, the caps on the celery-exporter series it builds from task outcomes, and how
long a gone worker keeps `celery_worker_up 0`.

The caps bound serve's memory and each scrape whatever the broker sends: a deploy that gives every
pod a new hostname, or task names made up at run time, costs a fixed amount. What is over a cap is
summed under the label value `(other)`; `doorman_series_omitted{what=...}` says how many distinct
keys were folded.
"""

from __future__ import annotations

from doorman.config.settings import Setting

SETTINGS = (
    Setting("serve_allowed_hosts", "list", [], ("DOORMAN_SERVE_ALLOWED_HOSTS",),
            "Host names doorman-serve answers to besides loopback names, IP addresses, its bind address "
            "and this machine's name (a request naming another host is refused: DNS rebinding)."),
    Setting("serve_max_task_names", "int", 500, ("DOORMAN_SERVE_MAX_TASK_NAMES",),
            "doorman-serve: task names per cluster in the celery_task_* series; the rest are summed under "
            "name=\"(other)\".", positive=True),
    Setting("serve_max_task_hostnames", "int", 200, ("DOORMAN_SERVE_MAX_TASK_HOSTNAMES",),
            "doorman-serve: worker hostnames per cluster in the celery_task_* series; the rest are summed under "
            "hostname=\"(other)\".", positive=True),
    Setting("serve_max_task_exceptions", "int", 50, ("DOORMAN_SERVE_MAX_TASK_EXCEPTIONS",),
            "doorman-serve: exception classes per cluster in celery_task_failed_total; the rest are summed under "
            "exception=\"(other)\".", positive=True),
    Setting("serve_max_task_series", "int", 2000, ("DOORMAN_SERVE_MAX_TASK_SERIES",),
            "doorman-serve: (name, hostname, queue_name) combinations per cluster in the celery_task_* series "
            "(each is 8 counters and 2 histograms); the rest are summed under all three set to \"(other)\".",
            positive=True),
    Setting("serve_worker_down_keep_seconds", "float", 1800.0, ("DOORMAN_SERVE_WORKER_DOWN_KEEP_SECONDS",),
            "doorman-serve: a gone worker shows celery_worker_up 0 this long (snapshot time) after it was last "
            "alive, then loses its series. Longer than the celery-exporter mixin's CeleryWorkerDown `for: 15m`, so "
            "that alert can fire.", positive=True),
)
