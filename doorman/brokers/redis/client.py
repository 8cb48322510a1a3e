"""A redis-py client for a Celery broker URL, with timeouts on every command."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis

from doorman.brokers import scheme_of
from doorman.config.settings import Config


def _db_of(url: str) -> int:
    p = urlsplit(url)
    q = parse_qs(p.query)
    if "db" in q:
        return int(q["db"][0])
    path = p.path.strip("/")
    if p.scheme in ("redis", "rediss", "sentinel") and path.isdigit():
        return int(path)
    return 0


def connect(cfg: Config) -> tuple[redis.Redis, int]:
    """Return (client, db). Nothing is sent until the first command, so this never fails on a down broker."""
    url: str = cfg.broker_url
    kw: dict[str, Any] = {
        "socket_timeout": cfg.redis_timeout,
        "socket_connect_timeout": cfg.redis_timeout,
        "retry_on_timeout": False,
        "client_name": "celery-doorman",
        # names read from the broker are str decoded with surrogateescape (doorman.brokers.base):
        # sending one back (LLEN of a non-UTF-8 queue name) must give back the same bytes, not fail
        "encoding_errors": "surrogateescape",
    }
    scheme = scheme_of(url)
    if scheme == "sentinel":
        return _sentinel(cfg, kw), _db_of(url.split(";")[0])
    if scheme == "redis+socket":
        url = "unix" + url[len("redis+socket"):]
    if scheme == "rediss":
        # Verification is on unless explicitly disabled; the URL's own ssl_* options still apply.
        if cfg.tls_insecure:
            kw.update(ssl_cert_reqs="none", ssl_check_hostname=False)
        elif cfg.tls_ca_file:
            kw["ssl_ca_certs"] = cfg.tls_ca_file
    client = redis.Redis.from_url(url, **kw)
    return client, int(client.connection_pool.connection_kwargs.get("db", 0) or 0)


def _sentinel(cfg: Config, kw: dict[str, Any]) -> redis.Redis:
    from redis.sentinel import Sentinel

    hosts, password, db = [], None, 0
    for part in cfg.broker_url.split(";"):
        p = urlsplit(part)
        hosts.append((p.hostname, p.port or 26379))
        password = password or p.password
        db = _db_of(part)
    master = cfg.broker_transport_options.master_name or "mymaster"
    sentinel = Sentinel(hosts, socket_timeout=cfg.redis_timeout,
                        socket_connect_timeout=cfg.redis_timeout)
    return sentinel.master_for(master, password=password, db=db, **kw)
