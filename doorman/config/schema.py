"""Which configuration keys exist: the core's (`CORE`), doorman-collect's and doorman-scale's, and
every sink's, rule's and broker's (plugins' included), by section, each declared once.

`schema()` is the one list the loader (doorman.config.load), `config.example.yaml`,
`docs/configuration.md` and `--help` are made from.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from doorman import plugins
from doorman.config.settings import THRESHOLDS, TOP, TRANSPORT, Setting, queue_names
from doorman.errors import DoormanError

CORE: tuple[Setting, ...] = (
    Setting("broker_url", "broker_url", "redis://127.0.0.1:6379/0", ("REDIS_URL", "CELERY_BROKER_URL", "BROKER_URL"),
            "Broker URL, as in the Celery app (redis://, rediss://, unix://, sentinel://, amqp://, amqps://).",
            secret=True,
            aliases=("redis_url",)),
    Setting("cluster", "str", "default", ("DOORMAN_CLUSTER",),
            "Name stamped on every snapshot and alert, to tell merged streams apart.",
            check=lambda v: None if v.strip() else "must not be empty (it names the cluster in every alert)"),
    Setting("clusters", "list", None, (),
            "Many brokers in one config: a list of {name, broker_url, ...} where each entry may override the "
            "per-broker keys (thresholds, monitored_queues, check_interval, ...) of the top level; then "
            "broker_url and cluster come from the entries only (docs/fleet.md)."),
    Setting("http_connect_timeout", "float", 3.05, ("DOORMAN_HTTP_CONNECT_TIMEOUT",),
            "Seconds to open a connection to a destination.", positive=True),
    Setting("http_read_timeout", "float", 10.0, ("DOORMAN_HTTP_READ_TIMEOUT",),
            "Seconds to wait for a destination's answer.", positive=True),
    Setting("delivery_max_attempts", "int", 3, ("DOORMAN_DELIVERY_MAX_ATTEMPTS",),
            "HTTP attempts per alert and destination before it is spooled.", positive=True),
    Setting("delivery_max_seconds", "float", 10.0, ("DOORMAN_DELIVERY_MAX_SECONDS",),
            "No retry starts later than this after the first attempt.", positive=True),
    Setting("delivery_backoff_seconds", "float", 0.5, ("DOORMAN_DELIVERY_BACKOFF_SECONDS",),
            "First retry delay; doubles per attempt, with jitter."),
    Setting("spool_path", "str", None, ("DOORMAN_SPOOL",),
            "Undelivered alerts (default $XDG_STATE_HOME/celery-doorman/spool.ndjson)."),
    Setting("spool_retry_seconds", "float", 30.0, ("DOORMAN_SPOOL_RETRY_SECONDS",),
            "A streaming run retries the spool this often.", positive=True),
    Setting("allow_insecure_webhooks", "bool", False, ("DOORMAN_ALLOW_INSECURE_WEBHOOKS",),
            "Allow http:// webhooks to hosts other than loopback."),
    Setting("check_interval", "float", 30.0, ("CHECK_INTERVAL",), "Seconds between checks in daemon mode.",
            positive=True),
    Setting("alert_cooldown_seconds", "float", 300.0, ("ALERT_COOLDOWN_SECONDS",),
            "An unchanged alert is not repeated within this many seconds."),
    Setting("flap_window_seconds", "float", None, ("DOORMAN_FLAP_WINDOW_SECONDS",),
            "A problem back within this long of its resolution flaps: one firing per window, one resolution "
            "when stable this long (default: alert_cooldown_seconds)."),
    Setting("state_lock_timeout", "float", 30.0, ("DOORMAN_STATE_LOCK_TIMEOUT",),
            "Seconds doorman-analyze waits for another run's lock on the state file."),
    Setting("monitored_queues", "list", ["celery"], ("MONITORED_QUEUES",),
            "Queues always checked (more are discovered from the broker).", convert=queue_names),
    Setting("inspect_timeout", "float", 1.0, ("DOORMAN_INSPECT_TIMEOUT",),
            "Seconds to wait for workers' replies to the active-tasks request.", positive=True),
    Setting("inspect", "bool", True, ("DOORMAN_INSPECT",),
            "false: strictly read-only (no PUBLISH, no pidbox writes); liveness from heartbeats and the "
            "connection table only, no active tasks (docs/security.md)."),
    Setting("publish_time_header", "str", "x_doorman_published_at", ("DOORMAN_PUBLISH_TIME_HEADER",),
            "Message header holding the publish time (epoch seconds), set by doorman.hook."),
    Setting("tls_ca_file", "str", None, ("DOORMAN_TLS_CA_FILE",),
            "CA bundle to verify the broker's TLS certificate (default: the system's)."),
    Setting("tls_insecure", "bool", False, ("DOORMAN_TLS_INSECURE",),
            "Skip TLS certificate verification of the broker (warned about at every start)."),
    Setting(THRESHOLDS, "map", None, (), "Alert thresholds; each is declared by the rule that uses it."),
    Setting(TRANSPORT, "map", None, (),
            "The same options as your Celery app's broker_transport_options (only these are read)."),
    Setting("queues", "map", None, (), "Per-queue overrides: {queue: {key: value}} of the per-queue keys.",
            section=THRESHOLDS),
    Setting("reconnect_grace_seconds", "float", 20.0, ("RECONNECT_GRACE_SECONDS",),
            "Worker alerts wait this long after the broker comes back (and when a daemon starts while known "
            "workers have not answered yet).", section=THRESHOLDS),
)


@functools.cache
def owners(builtin_only: bool = False) -> dict[str, str]:
    """{key path: who declares it ("doorman", "sink slack", "rule latency", "broker redis")}."""
    out: dict[str, str] = {}
    for owner, settings in _declarations(builtin_only):
        for s in settings:
            if s.path in out:
                raise DoormanError(f"{owner} declares the configuration key {s.path}, already declared by "
                                   f"{out[s.path]}")
            out[s.path] = owner
    return out


@functools.cache
def schema(builtin_only: bool = False) -> dict[str, dict[str, Setting]]:
    """Every key by section: the core's, then each sink's, rule's and broker's, in load order.
    `builtin_only`: Doorman's own keys, whatever plugins are installed (the generated docs)."""
    out: dict[str, dict[str, Setting]] = {TOP: {}}
    owners(builtin_only)  # refuses a key declared twice
    for _owner, settings in _declarations(builtin_only):
        for s in settings:
            out.setdefault(s.section, {})[s.name] = s
    for section in out:
        if section and out[TOP].get(section, Setting(section, "str")).type != "map":
            raise DoormanError(f"the configuration section {section} has no top-level `map` setting to document it")
    return out


def sections() -> list[str]:
    """The named sections (`thresholds`, `broker_transport_options`, plugins' own), in order."""
    return [s for s in schema() if s]


# Keys of Doorman's own parts that are neither a rule, a sink nor a broker: owner -> module:attribute.
PARTS = {
    "doorman-collect liveness": "doorman.collect.liveness:SETTINGS",  # the connection-table watch
    "doorman-collect task events": "doorman.tasks.counts:SETTINGS",  # the task-event reader
    "doorman-scale": "doorman.scale.settings:SETTINGS",
    "doorman heartbeat": "doorman.notify.heartbeat:SETTINGS",  # the dead-man's switch (ticks, pings)
    "doorman-serve": "doorman.serve.settings:SETTINGS",  # the Host allow-list, the exporter drop-in's caps, gone workers kept
}


def _declarations(builtin_only: bool) -> Iterable[tuple[str, Iterable[Setting]]]:
    yield "doorman", CORE
    for owner, ref in PARTS.items():
        yield owner, plugins.load_ref(ref)
    for kind, group in (("sink", "doorman.sinks"), ("rule", "doorman.rules"), ("broker", "doorman.brokers")):
        for p in plugins.builtins(group) if builtin_only else plugins.load(group):
            yield f"{kind} {p.name}", getattr(p, "settings", ()) or ()  # an incomplete plugin: none


def all_settings(builtin_only: bool = False) -> list[Setting]:
    return [s for section in schema(builtin_only).values() for s in section.values()]


def setting(path: str) -> Setting:
    section, _, name = path.rpartition(".")
    return schema()[section][name]
