"""The Redis broker (kombu's Redis transport): its URL schemes, its configuration keys, `connect`.

Every command loads this module (its configuration keys are part of everyone's schema); redis-py is
imported only by `connect`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from doorman.brokers.redis.keys import PRIORITY_STEPS, SEP
from doorman.config.settings import TRANSPORT, Config, Setting
from doorman.config.urls import query_problem, split_broker_url

if TYPE_CHECKING:
    from doorman.brokers.base import BrokerPlugin
    from doorman.brokers.redis.broker import RedisConnection

SCHEMES: tuple[str, ...] = ("redis", "rediss", "unix", "redis+socket", "sentinel")


def _steps_problem(value: list[Any]) -> str | None:
    if not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        return "must be a list of integers"
    return None


def _steps(value: list[int]) -> tuple[int, ...]:
    return tuple(sorted(set(value)))


class RedisBroker:
    """`doorman.brokers.base.BrokerPlugin` for kombu's Redis transport."""

    name: str = "redis"
    schemes: tuple[str, ...] = SCHEMES
    settings: tuple[Setting, ...] = (
        Setting("redis_timeout", "float", 5.0, ("DOORMAN_REDIS_TIMEOUT",),
                "Connect and read timeout of every Redis command.", positive=True),
        Setting("exchanges", "list", ["celery"], ("DOORMAN_EXCHANGES",),
                "Exchanges whose kombu binding sets are read to discover queues.",
                convert=lambda v: tuple(str(x) for x in v)),
        Setting("discovery_interval", "float", 60.0, ("DOORMAN_DISCOVERY_INTERVAL",),
                "Seconds between the starts of two SCAN passes for binding sets (0: a new pass as soon "
                "as one ends); see docs/discovery.md."),
        Setting("discovery_budget_ms", "float", 5.0, ("DOORMAN_DISCOVERY_BUDGET_MS",),
                "Milliseconds of SCAN one snapshot may spend on discovery.", positive=True),
        Setting("discovery_max_ms_per_minute", "float", 10.0, ("DOORMAN_DISCOVERY_MAX_MS_PER_MINUTE",),
                "Milliseconds of SCAN per minute discovery may spend, whatever the check interval.",
                positive=True),
        Setting("discovery_cache", "str", None, ("DOORMAN_DISCOVERY_CACHE",),
                "Discovery cache file kept between runs (default $XDG_CACHE_HOME/celery-doorman/"
                "discovery-<hash of the broker>.json; empty: none)."),
        Setting("discovery_cache_ttl", "float", 86400.0, ("DOORMAN_DISCOVERY_CACHE_TTL",),
                "Seconds after which an unused discovery cache is ignored and started afresh.", positive=True),
        Setting("global_keyprefix", "str", "", (), "kombu's global_keyprefix.", section=TRANSPORT),
        Setting("priority_steps", "list", list(PRIORITY_STEPS), (), "kombu's priority_steps.", section=TRANSPORT,
                check=_steps_problem, convert=_steps),
        Setting("sep", "str", SEP, (), "kombu's priority separator.", section=TRANSPORT),
        Setting("visibility_timeout", "float", 3600.0, (),
                "kombu's visibility_timeout (read only, never applied).", section=TRANSPORT, positive=True),
        Setting("master_name", "str", None, (), "Sentinel master name (sentinel:// URLs).", section=TRANSPORT),
    )

    def url_problem(self, url: str) -> str | None:
        for part in url.split(";"):
            try:
                p = split_broker_url(part, SCHEMES)
            except ValueError as e:
                return str(e)
            if p.scheme in ("redis", "rediss", "sentinel") and not p.hostname:
                return "malformed URL: no host"
            if p.scheme in ("unix", "redis+socket") and not p.path:
                return "malformed URL: no socket path"
            db = p.path.strip("/")
            if p.scheme in ("redis", "rediss", "sentinel") and db and not db.isdigit():
                return f"the database must be a number (redis://host:6379/0), got /{db}"
            problem = query_problem(part)  # ?db=abc, ?max_connections=-1: one line, never a traceback
            if problem:
                return problem
        return None

    def config_problem(self, cfg: Config) -> tuple[str, str] | None:
        if cfg.broker_url.startswith("sentinel://") and not cfg.broker_transport_options.master_name:
            return "broker_transport_options.master_name", "required with sentinel:// URLs"
        return None

    def connect(self, cfg: Config) -> RedisConnection:
        from doorman.brokers.redis.broker import RedisConnection

        return RedisConnection(cfg)


BROKER: BrokerPlugin = RedisBroker()  # mypy checks it (and the `Broker` it connects) against the protocols
