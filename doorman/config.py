"""One configuration for every command: defaults < YAML file < environment < flags.

The keys every command shares are declared here (`CORE`); rules, sinks and brokers declare their
own next to their code (`settings`), plugins' included. `schema()` gathers them all, and the
loader, `config.example.yaml`, `docs/configuration.md` and `--help` are made from it. A bad value
is a `BadConfig` naming the file (or `environment` / `--flag`) and the key; the CLIs print it on
one line and exit 2.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterable, Mapping
from typing import Any

from doorman import config_warnings, plugins
from doorman.config_values import coerce, plain_http_problem
from doorman.errors import BadConfig, DoormanError
from doorman.redact import url_secrets, webhook_secrets
from doorman.settings import THRESHOLDS, TOP, TRANSPORT, Config, Section, Setting, Thresholds, queue_names

CORE: tuple[Setting, ...] = (
    Setting("broker_url", "broker_url", "redis://127.0.0.1:6379/0", ("REDIS_URL", "CELERY_BROKER_URL", "BROKER_URL"),
            "Broker URL, as in the Celery app (redis://, rediss://, unix://, sentinel://, amqp://, amqps://).",
            secret=True,
            aliases=("redis_url",)),
    Setting("cluster", "str", "default", ("DOORMAN_CLUSTER",),
            "Name stamped on every snapshot and alert, to tell merged streams apart.",
            check=lambda v: None if v.strip() else "must not be empty (it names the cluster in every alert)"),
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


def _declarations(builtin_only: bool) -> Iterable[tuple[str, Iterable[Setting]]]:
    yield "doorman", CORE
    from doorman.collect.liveness import SETTINGS as LIVENESS  # doorman-collect's connection-table watch

    yield "doorman-collect liveness", LIVENESS
    from doorman.scale.settings import SETTINGS as SCALE  # the doorman-scale command's section

    yield "doorman-scale", SCALE
    for kind, group in (("sink", "doorman.sinks"), ("rule", "doorman.rules"), ("broker", "doorman.brokers")):
        for p in plugins.builtins(group) if builtin_only else plugins.load(group):
            yield f"{kind} {p.name}", p.settings


def all_settings(builtin_only: bool = False) -> list[Setting]:
    return [s for section in schema(builtin_only).values() for s in section.values()]


def setting(path: str) -> Setting:
    section, _, name = path.rpartition(".")
    return schema()[section][name]


def _suggest(key: str, section: str) -> str:
    """The closest known key; at the top level, nested keys are candidates too (with their path)."""
    names = {k: k for k in schema()[section]}
    names.update({a: a for s in schema()[section].values() for a in s.aliases})
    if section == TOP:
        names.update({s.name: s.path for s in all_settings() if s.section})
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f" (did you mean '{names[close[0]]}'?)" if close else ""


def _merge(raw: Mapping[Any, Any], keys: Mapping[str, Setting], source: str, prefix: str,
           section: str) -> dict[str, Any]:
    """Check each given key; an alias (an older name) counts as its key, and is named in errors."""
    aliases = {a: s.name for s in keys.values() for a in s.aliases}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name = f"{prefix}{k}"
        key = aliases.get(k, k) if isinstance(k, str) else k
        if not isinstance(key, str) or key not in keys:
            raise BadConfig(source, name, f"unknown key{_suggest(str(k), section)}")
        if key in out:
            raise BadConfig(source, name, f"the same key as {prefix}{key}: give only one of them")
        out[key] = coerce(v, keys[key], source, name, from_text=False)
    return out


def _queue_overrides(raw: Mapping[Any, Any], source: str) -> dict[str, dict[str, Any]]:
    keys = {n: s for n, s in schema()[THRESHOLDS].items() if s.per_queue}
    out: dict[str, dict[str, Any]] = {}
    for q, over in raw.items():
        if not isinstance(over, dict):
            raise BadConfig(source, f"thresholds.queues.{q}", "must be a mapping")
        out[str(q)] = _merge(over, keys, source, f"thresholds.queues.{q}.", THRESHOLDS)
    return out


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


def _finish(values: dict[str, Any], keys: Mapping[str, Setting]) -> dict[str, Any]:
    """Defaults for what is unset, then each key's conversion (lists become tuples)."""
    out = {}
    for name, s in keys.items():
        v = values.get(name, s.default)
        if s.convert is not None and v is not None:
            v = s.convert(v)
        elif isinstance(v, list):
            v = tuple(v)
        out[name] = v
    return out


def load_config(
    path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flag_names: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective config. `overrides` are flags: {key: value}, None meaning unset.
    `data` stands in for a file's content (library use and tests)."""
    env = os.environ if env is None else env
    path = path or env.get("DOORMAN_CONFIG") or None
    file_data = dict(data) if data is not None else (_read_file(path) if path else {})
    src = path or "config"
    keys = schema()

    top = _merge(file_data, keys[TOP], src, "", TOP)
    given = {name: _merge(top.pop(name, None) or {}, keys[name], src, f"{name}.", name) for name in sections()}
    given[TOP] = top
    given[THRESHOLDS]["queues"] = _queue_overrides(given[THRESHOLDS].get("queues") or {}, src)

    origin = {k: (src, k) for k in top}
    for section, section_keys in keys.items():
        for k, spec in section_keys.items():
            for var in spec.env:
                empty = spec.check("") if env.get(var) == "" and spec.type == "str" and spec.check else None
                if empty:  # `VAR=` usually means "unset" (an env file's blank line) and is skipped, but
                    # a key that refuses an empty value (`cluster`) refuses an empty variable: no silent default
                    raise BadConfig("environment", var, empty)
                if env.get(var):
                    given[section][k] = coerce(env[var], spec, "environment", var, from_text=True)
                    origin[k] = ("environment", var)
                    break

    for k, v in (overrides or {}).items():
        if v is None:
            continue
        section = next(s for s in keys if k in keys[s])
        flag = (flag_names or {}).get(k) or "--" + k.replace("_", "-")
        given[section][k] = coerce(v, keys[section][k], "command line", flag, from_text=isinstance(v, str))
        origin[k] = ("command line", flag)

    values = _finish(top, keys[TOP])
    for name in sections():
        finished = _finish(given[name], keys[name])
        values[name] = Thresholds(finished) if name == THRESHOLDS else Section(finished)
    values["secret_values"] = tuple(_secrets(values))
    values["notes"] = ()
    cfg = Config(values)
    _check_plain_http(cfg, origin)
    for broker in plugins.brokers():
        problem = broker.config_problem(cfg)
        if problem:
            raise BadConfig(src, *problem)
    extra = config_warnings.notes(cfg, keys[TOP], path, origin)  # secrets as flags, writable file, weak TLS
    return cfg.replace(notes=tuple(_notes(cfg, path, file_data) + extra))


def _secrets(values: Mapping[str, Any]) -> list[str]:
    """Secret values that differ from their defaults (a URL's secret parts only)."""
    out: list[str] = []
    for s in schema()[TOP].values():
        v = values.get(s.name)
        if not s.secret or not v or v == s.default:
            continue
        if s.type == "broker_url":
            out += url_secrets(v)
        elif s.type == "webhook":
            out += webhook_secrets(v)
        else:
            out.append(str(v))
    return out


def _notes(cfg: Config, path: str | None, file_data: Mapping[str, Any]) -> list[str]:
    notes = []
    secret_keys = [k for n, s in schema()[TOP].items() if s.secret for k in (n, *s.aliases)]
    if path and cfg.secrets() and _readable_by_others(path) and any(k in file_data for k in secret_keys):
        notes.append(f"warning: {path} holds secrets and is readable by other users (chmod 600 {path})")
    if cfg.tls_insecure:  # URL options that weaken TLS: doorman.config_warnings
        notes.append("warning: TLS certificate verification of the broker is disabled (tls_insecure)")
    return notes


def _check_plain_http(cfg: Config, origin: Mapping[str, tuple[str, str]]) -> None:
    if cfg.allow_insecure_webhooks:
        return
    for s in schema()[TOP].values():
        problem = plain_http_problem(getattr(cfg, s.name)) if s.type == "webhook" else None
        if problem:
            raise BadConfig(*origin.get(s.name, ("config", s.name)), problem)


def _readable_by_others(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o044)
    except OSError:
        return False


def make_config(**values: Any) -> Config:
    """A config from keyword values, as if they were a file's (library use and tests)."""
    return load_config(None, env={}, data=values)
