"""One configuration for all four commands: defaults < YAML file < environment < flags.

Every key is declared once in `KEYS` with its type, default and environment variable, so the
loader, the error messages and `config.example.yaml` agree. A bad value is a `BadConfig` naming
the file (or `environment` / `--flag`) and the key; the CLIs print it on one line and exit 2.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from doorman.errors import BadConfig

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = ("info", "warning", "critical", "emergency")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket", "sentinel")


@dataclass(frozen=True)
class Key:
    type: str  # str | int | float | bool | list | map | url | webhook | severity
    default: Any = None
    env: tuple[str, ...] = ()
    doc: str = ""
    positive: bool = False  # 0 is refused


KEYS: dict[str, Key] = {
    "redis_url": Key("url", "redis://127.0.0.1:6379/0", ("REDIS_URL", "CELERY_BROKER_URL"),
                     "Broker URL, as in the Celery app (redis://, rediss://, unix://, sentinel://)."),
    "cluster": Key("str", "default", ("DOORMAN_CLUSTER",),
                   "Name stamped on every snapshot and alert, to tell merged streams apart."),
    "slack_webhook_url": Key("webhook", None, ("SLACK_WEBHOOK_URL",), "Slack incoming webhook."),
    "pagerduty_routing_key": Key("str", None, ("PAGERDUTY_ROUTING_KEY",),
                                 "PagerDuty Events v2 integration (routing) key."),
    "pagerduty_events_url": Key("webhook", PAGERDUTY_EVENTS_URL, ("PAGERDUTY_EVENTS_URL",),
                                "PagerDuty Events v2 endpoint."),
    "generic_webhook_url": Key("webhook", None, ("GENERIC_WEBHOOK_URL",),
                               "Any HTTP endpoint; receives the alert JSON as is."),
    "slack_min_severity": Key("severity", "warning", ("SLACK_MIN_SEVERITY",),
                              "Lowest severity sent to Slack."),
    "pagerduty_min_severity": Key("severity", "critical", ("PAGERDUTY_MIN_SEVERITY",),
                                  "Lowest severity sent to PagerDuty."),
    "generic_webhook_min_severity": Key("severity", "info", ("GENERIC_WEBHOOK_MIN_SEVERITY",),
                                        "Lowest severity sent to the generic webhook."),
    "http_connect_timeout": Key("float", 3.05, ("DOORMAN_HTTP_CONNECT_TIMEOUT",),
                                "Seconds to open a connection to a destination."),
    "http_read_timeout": Key("float", 10.0, ("DOORMAN_HTTP_READ_TIMEOUT",),
                             "Seconds to wait for a destination's answer."),
    "delivery_max_attempts": Key("int", 3, ("DOORMAN_DELIVERY_MAX_ATTEMPTS",),
                                 "HTTP attempts per alert and destination before it is spooled."),
    "delivery_max_seconds": Key("float", 10.0, ("DOORMAN_DELIVERY_MAX_SECONDS",),
                                "No retry starts later than this after the first attempt."),
    "delivery_backoff_seconds": Key("float", 0.5, ("DOORMAN_DELIVERY_BACKOFF_SECONDS",),
                                    "First retry delay; doubles per attempt, with jitter."),
    "spool_path": Key("str", None, ("DOORMAN_SPOOL",),
                      "Undelivered alerts (default $XDG_STATE_HOME/celery-doorman/spool.ndjson)."),
    "spool_retry_seconds": Key("float", 30.0, ("DOORMAN_SPOOL_RETRY_SECONDS",),
                               "A streaming run retries the spool this often."),
    "check_interval": Key("float", 30.0, ("CHECK_INTERVAL",), "Seconds between checks in daemon mode."),
    "alert_cooldown_seconds": Key("float", 300.0, ("ALERT_COOLDOWN_SECONDS",),
                                  "An unchanged alert is not repeated within this many seconds."),
    "monitored_queues": Key("list", ["celery"], ("MONITORED_QUEUES",),
                            "Queues always checked (more are discovered from kombu's bindings)."),
    "exchanges": Key("list", ["celery"], ("DOORMAN_EXCHANGES",),
                     "Exchanges whose kombu binding sets are read to discover queues."),
    "inspect_timeout": Key("float", 1.0, ("DOORMAN_INSPECT_TIMEOUT",),
                           "Seconds to wait for workers' replies to the active-tasks request."),
    "redis_timeout": Key("float", 5.0, ("DOORMAN_REDIS_TIMEOUT",),
                         "Connect and read timeout of every Redis command."),
    "publish_time_header": Key("str", "x_doorman_published_at", ("DOORMAN_PUBLISH_TIME_HEADER",),
                               "Message header holding the publish time (epoch seconds)."),
    "state_lock_timeout": Key("float", 30.0, ("DOORMAN_STATE_LOCK_TIMEOUT",),
                              "Seconds doorman-analyze waits for another run's lock on the state file."),
    "tls_ca_file": Key("str", None, ("DOORMAN_TLS_CA_FILE",),
                       "CA bundle to verify a rediss:// broker's certificate (default: the system's)."),
    "tls_insecure": Key("bool", False, ("DOORMAN_TLS_INSECURE",),
                        "Skip TLS certificate verification of the broker (warned about at every start)."),
    "allow_insecure_webhooks": Key("bool", False, ("DOORMAN_ALLOW_INSECURE_WEBHOOKS",),
                                   "Allow http:// webhooks to hosts other than loopback."),
    "thresholds": Key("map", None, (), "Alert thresholds (see below)."),
    "broker_transport_options": Key("map", None, (), "As in the Celery app's config."),
}

THRESHOLD_KEYS: dict[str, Key] = {
    "max_queue_size": Key("int", 1000, ("MAX_QUEUE_SIZE",), "Total pending tasks above this: backlog."),
    "max_wait_time_seconds": Key("float", 60.0, ("MAX_WAIT_TIME",),
                                 "Oldest waiting task older than this: high latency."),
    "max_task_runtime_seconds": Key("float", 1800.0, ("MAX_TASK_RUNTIME",),
                                    "A task running longer than this is a zombie."),
    "critical_queues": Key("list", [], ("CRITICAL_QUEUES",), "Queues whose latency is critical."),
    "queues": Key("map", None, (), "Per-queue overrides: {queue: {max_queue_size, max_wait_time_seconds}}."),
    "worker_forget_seconds": Key("float", 3600.0, ("WORKER_FORGET_SECONDS",),
                                 "A lost worker gone this long is forgotten (its worker_lost alert resolves)."),
    "backlog_growth_horizon_seconds": Key("float", 600.0, ("BACKLOG_GROWTH_HORIZON",),
                                          "backlog_growing fires when the threshold is this close."),
    "backlog_growth_window_seconds": Key("float", 300.0, ("BACKLOG_GROWTH_WINDOW",),
                                         "Pending counts of this many recent seconds give the growth rate."),
    "backlog_growth_min_samples": Key("int", 5, ("BACKLOG_GROWTH_MIN_SAMPLES",),
                                      "Fewest samples (over at least half the window) for a growth rate."),
}

TRANSPORT_KEYS: dict[str, Key] = {
    "global_keyprefix": Key("str", "", (), "kombu's global_keyprefix."),
    "priority_steps": Key("list", [0, 3, 6, 9], (), "kombu's priority_steps."),
    "sep": Key("str", "\x06\x16", (), "kombu's priority separator."),
    "visibility_timeout": Key("float", 3600.0, (), "kombu's visibility_timeout (read only, never applied)."),
    "master_name": Key("str", None, (), "Sentinel master name (sentinel:// URLs)."),
}

PER_QUEUE_KEYS = ("max_queue_size", "max_wait_time_seconds")

# Zero would break these: a busy loop, no timeout at all, a worker never given time to answer.
POSITIVE = ("check_interval", "redis_timeout", "inspect_timeout", "http_connect_timeout", "http_read_timeout",
            "delivery_max_attempts", "delivery_max_seconds", "spool_retry_seconds",
            "backlog_growth_window_seconds", "backlog_growth_min_samples", "visibility_timeout")
for _keys in (KEYS, THRESHOLD_KEYS, TRANSPORT_KEYS):
    for _name in POSITIVE:
        if _name in _keys:
            _keys[_name] = replace(_keys[_name], positive=True)


@dataclass(frozen=True)
class Thresholds:
    max_queue_size: int = 1000
    max_wait_time_seconds: float = 60.0
    max_task_runtime_seconds: float = 1800.0
    critical_queues: tuple[str, ...] = ()
    queues: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    worker_forget_seconds: float = 3600.0
    backlog_growth_horizon_seconds: float = 600.0
    backlog_growth_window_seconds: float = 300.0
    backlog_growth_min_samples: int = 5

    def for_queue(self, queue: str, name: str) -> float:
        """A per-queue override if there is one, else the global threshold."""
        return self.queues.get(queue, {}).get(name, getattr(self, name))


@dataclass(frozen=True)
class Transport:
    global_keyprefix: str = ""
    priority_steps: tuple[int, ...] = (0, 3, 6, 9)
    sep: str = "\x06\x16"
    visibility_timeout: float = 3600.0
    master_name: str | None = None


@dataclass(frozen=True)
class Config:
    redis_url: str = "redis://127.0.0.1:6379/0"
    cluster: str = "default"
    slack_webhook_url: str | None = None
    pagerduty_routing_key: str | None = None
    pagerduty_events_url: str = PAGERDUTY_EVENTS_URL
    generic_webhook_url: str | None = None
    slack_min_severity: str = "warning"
    pagerduty_min_severity: str = "critical"
    generic_webhook_min_severity: str = "info"
    http_connect_timeout: float = 3.05
    http_read_timeout: float = 10.0
    delivery_max_attempts: int = 3
    delivery_max_seconds: float = 10.0
    delivery_backoff_seconds: float = 0.5
    spool_path: str | None = None
    spool_retry_seconds: float = 30.0
    check_interval: float = 30.0
    alert_cooldown_seconds: float = 300.0
    monitored_queues: tuple[str, ...] = ("celery",)
    exchanges: tuple[str, ...] = ("celery",)
    inspect_timeout: float = 1.0
    redis_timeout: float = 5.0
    publish_time_header: str = "x_doorman_published_at"
    state_lock_timeout: float = 30.0
    tls_ca_file: str | None = None
    tls_insecure: bool = False
    allow_insecure_webhooks: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    broker_transport_options: Transport = field(default_factory=Transport)
    source: str = "defaults"
    notes: tuple[str, ...] = ()  # warnings for stderr (e.g. a world-readable file holding secrets)

    def secrets(self) -> list[str]:
        """Every secret string this config holds, for `redact.Scrubber`."""
        from doorman.redact import url_secrets, webhook_secrets

        out = url_secrets(self.redis_url)
        for url in (self.slack_webhook_url, self.generic_webhook_url):
            out += webhook_secrets(url)
        if self.pagerduty_events_url != PAGERDUTY_EVENTS_URL:
            out += webhook_secrets(self.pagerduty_events_url)
        if self.pagerduty_routing_key:
            out.append(self.pagerduty_routing_key)
        return out


def _suggest(key: str, known: Mapping[str, Any]) -> str:
    """The closest known key; at the top level, nested keys are candidates too (with their path)."""
    names = {k: k for k in known}
    if known is KEYS:
        names.update({k: f"thresholds.{k}" for k in THRESHOLD_KEYS})
        names.update({k: f"broker_transport_options.{k}" for k in TRANSPORT_KEYS})
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f" (did you mean '{names[close[0]]}'?)" if close else ""


def _coerce(value: Any, spec: Key, source: str, name: str, from_text: bool) -> Any:
    """Check and convert one value; environment values arrive as text and are parsed."""
    t = spec.type
    if value is None:
        if spec.default is None or t == "map":
            return None  # optional (a destination left unset) or an empty section
        raise BadConfig(source, name, f"must not be empty (default: {spec.default!r})")
    if t in ("str", "url", "webhook", "severity"):
        if not isinstance(value, str):
            raise BadConfig(source, name, f"must be a string, got {type(value).__name__}")
        if t == "url":
            _check_redis_url(value, source, name)
        elif t == "webhook":
            _check_webhook(value, source, name)
        elif t == "severity" and value not in SEVERITIES:
            raise BadConfig(source, name, f"must be one of {', '.join(SEVERITIES)}, got {value!r}")
        return value
    if t == "bool":
        if from_text:
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise BadConfig(source, name, f"must be true or false, got {value!r}")
            return text in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise BadConfig(source, name, f"must be true or false, got {value!r}")
        return value
    if t in ("int", "float"):
        if from_text:
            try:
                value = int(value) if t == "int" else float(value)
            except ValueError:
                raise BadConfig(source, name, f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadConfig(source, name, f"must be a number, got {type(value).__name__} {value!r}")
        if t == "int" and value != int(value):
            raise BadConfig(source, name, f"must be a whole number, got {value!r}")
        if value < 0 or value != value or value in (float("inf"),):
            raise BadConfig(source, name, f"must be a finite number >= 0, got {value!r}")
        if value == 0 and spec.positive:
            raise BadConfig(source, name, "must be greater than 0")
        return int(value) if t == "int" else float(value)
    if t == "list":
        if from_text:
            value = [v.strip() for v in str(value).split(",") if v.strip()]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise BadConfig(source, name, f"must be a list, got {type(value).__name__}")
        return value
    if t == "map":
        if not isinstance(value, dict):
            raise BadConfig(source, name, f"must be a mapping, got {type(value).__name__}")
        return value
    raise AssertionError(t)


def _check_redis_url(url: str, source: str, name: str) -> None:
    for part in url.split(";"):
        try:
            p = urlsplit(part)
            p.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            # never quote the parser's message: it can contain a piece of the password
            raise BadConfig(source, name, "malformed URL (check the host and port, and URL-encode "
                                          "special characters such as # / ? @ in the password)") from None
        if p.scheme not in REDIS_SCHEMES:
            raise BadConfig(source, name, f"unsupported scheme {p.scheme!r}; use one of {', '.join(REDIS_SCHEMES)}")
        if p.scheme in ("redis", "rediss", "sentinel") and not p.hostname:
            raise BadConfig(source, name, "malformed URL: no host")
        if p.scheme in ("unix", "redis+socket") and not p.path:
            raise BadConfig(source, name, "malformed URL: no socket path")
        db = p.path.strip("/")
        if p.scheme in ("redis", "rediss", "sentinel") and db and not db.isdigit():
            raise BadConfig(source, name, f"the database must be a number (redis://host:6379/0), got /{db}")


def _check_webhook(url: str, source: str, name: str) -> None:
    try:
        p = urlsplit(url)
        p.port  # noqa: B018
    except ValueError:
        raise BadConfig(source, name, "malformed URL (check the host and port)") from None
    if p.scheme not in ("http", "https") or not p.hostname:
        raise BadConfig(source, name, "must be an http:// or https:// URL with a host")


def _read_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise BadConfig(path, "", f"cannot read config file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise BadConfig(path, "", f"not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise BadConfig(path, "", f"{where}{problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadConfig(path, "", f"must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge_section(raw: Mapping[str, Any], keys: Mapping[str, Key], source: str, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name = f"{prefix}{k}"
        if not isinstance(k, str) or k not in keys:
            raise BadConfig(source, name, f"unknown key{_suggest(str(k), keys)}")
        out[k] = _coerce(v, keys[k], source, name, from_text=False)
    return out


def _validate_queues(raw: Mapping[str, Any], source: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for q, over in raw.items():
        if not isinstance(over, dict):
            raise BadConfig(source, f"thresholds.queues.{q}", "must be a mapping")
        keys = {k: THRESHOLD_KEYS[k] for k in PER_QUEUE_KEYS}
        out[str(q)] = _merge_section(over, keys, source, f"thresholds.queues.{q}.")
    return out


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective config. `overrides` are flags: {key: value}, None meaning unset."""
    env = os.environ if env is None else env
    path = path or env.get("DOORMAN_CONFIG") or None
    file_data = _read_file(path) if path else {}
    src = path or "config"

    top = _merge_section(file_data, KEYS, src, "")
    thresholds = _merge_section(top.pop("thresholds", None) or {}, THRESHOLD_KEYS, src, "thresholds.")
    transport = _merge_section(top.pop("broker_transport_options", None) or {}, TRANSPORT_KEYS, src,
                               "broker_transport_options.")
    if "queues" in thresholds:
        thresholds["queues"] = _validate_queues(thresholds["queues"], src)

    origin = {k: (src, k) for k in top}
    for section, keys in ((top, KEYS), (thresholds, THRESHOLD_KEYS)):
        for k, spec in keys.items():
            for var in spec.env:
                if env.get(var):
                    section[k] = _coerce(env[var], spec, "environment", var, from_text=True)
                    origin[k] = ("environment", var)
                    break

    for k, v in (overrides or {}).items():
        if v is None:
            continue
        spec = KEYS.get(k) or THRESHOLD_KEYS.get(k)
        target = top if k in KEYS else thresholds
        flag = (flag_names or {}).get(k) or "--" + k.replace("_", "-")
        target[k] = _coerce(v, spec, "command line", flag, from_text=isinstance(v, str))
        origin[k] = ("command line", flag)

    steps = transport.get("priority_steps", [0, 3, 6, 9])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in steps) or not steps:
        raise BadConfig(src, "broker_transport_options.priority_steps", "must be a list of integers")
    for name in ("critical_queues",):
        if name in thresholds:
            thresholds[name] = tuple(str(q) for q in thresholds[name])
    for name in ("monitored_queues", "exchanges"):
        if name in top:
            top[name] = tuple(str(q) for q in top[name])
    transport["priority_steps"] = tuple(sorted(set(steps)))
    cfg = Config(
        **top,
        thresholds=Thresholds(**thresholds),
        broker_transport_options=Transport(**transport),
        source=path or "defaults",
    )
    _check_plain_http(cfg, origin)
    if cfg.redis_url.startswith("sentinel://") and not cfg.broker_transport_options.master_name:
        raise BadConfig(src, "broker_transport_options.master_name", "required with sentinel:// URLs")
    notes = []
    if path and cfg.secrets() and _readable_by_others(path) and any(
            k in file_data for k in ("redis_url", "slack_webhook_url", "generic_webhook_url",
                                     "pagerduty_routing_key", "pagerduty_events_url")):
        notes.append(f"warning: {path} holds secrets and is readable by other users (chmod 600 {path})")
    if cfg.tls_insecure or "ssl_cert_reqs=none" in cfg.redis_url.lower():
        notes.append("warning: TLS certificate verification of the broker is disabled (tls_insecure)")
    return replace(cfg, notes=tuple(notes)) if notes else cfg


LOOPBACK_HOSTS = ("localhost", "::1")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name such as 127.attacker.example is not loopback


def _check_plain_http(cfg: Config, origin: Mapping[str, tuple[str, str]]) -> None:
    """Webhook URLs carry credentials: plain http only to loopback, or when explicitly allowed."""
    if cfg.allow_insecure_webhooks:
        return
    for key in ("slack_webhook_url", "generic_webhook_url", "pagerduty_events_url"):
        url = getattr(cfg, key)
        if url and urlsplit(url).scheme == "http" and not _is_loopback(urlsplit(url).hostname):
            raise BadConfig(*origin.get(key, ("config", key)),
                            "must be https:// (plain http sends the secret in clear; set "
                            "allow_insecure_webhooks: true to override)")


def _readable_by_others(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o044)
    except OSError:
        return False
