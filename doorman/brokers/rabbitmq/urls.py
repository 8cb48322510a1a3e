"""What a RabbitMQ broker URL says: host, port, credentials, vhost, TLS; and the management API's
address derived from it. Pure functions, no I/O."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from doorman.config.urls import split_broker_url

SCHEMES: tuple[str, ...] = ("amqp", "pyamqp", "amqps")
AMQP_PORT, AMQPS_PORT = 5672, 5671
MANAGEMENT_PORT, MANAGEMENT_TLS_PORT = 15672, 15671


@dataclass(frozen=True)
class Target:
    """Where and as whom to connect (the password stays in here, never in a message)."""

    host: str
    port: int
    user: str
    password: str
    vhost: str
    tls: bool

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def url_problem(url: str) -> str | None:
    """What is wrong with an amqp(s) URL, or None; never quotes the URL (it may hold a password)."""
    try:
        p = split_broker_url(url, SCHEMES)
    except ValueError as e:
        return str(e)
    if not p.hostname:
        return "malformed URL: no host"
    if ";" in url:
        return "several RabbitMQ hosts in one URL are not supported: name one node"
    return None


def vhost_of(path: str) -> str:
    """kombu's reading of the URL path: `amqp://h` and `amqp://h/` are vhost "/", `amqp://h//` too,
    `amqp://h/app` is "app", `amqp://h/%2F` is "/"."""
    if path in ("", "/"):
        return "/"
    return unquote(path[1:]) if path.startswith("/") else unquote(path)


def target(url: str) -> Target:
    p = urlsplit(url)
    tls = p.scheme == "amqps"
    return Target(
        host=p.hostname or "localhost",
        port=p.port or (AMQPS_PORT if tls else AMQP_PORT),
        user=unquote(p.username) if p.username is not None else "guest",
        password=unquote(p.password) if p.password is not None else "guest",
        vhost=vhost_of(p.path),
        tls=tls,
    )


def management_base(url: str | None, broker: Target) -> tuple[str, tuple[str, str]]:
    """(base URL without credentials, (user, password)) of the management API: `url` when set
    (its own credentials win), else the broker's host on 15672 (https on 15671 for amqps), with the
    broker's credentials."""
    if not url:
        scheme, port = ("https", MANAGEMENT_TLS_PORT) if broker.tls else ("http", MANAGEMENT_PORT)
        host = f"[{broker.host}]" if ":" in broker.host else broker.host
        return f"{scheme}://{host}:{port}", (broker.user, broker.password)
    p = urlsplit(url)
    auth = (unquote(p.username or ""), unquote(p.password or "")) if p.username is not None else \
        (broker.user, broker.password)
    host = p.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{p.port}" if p.port else host
    return urlunsplit((p.scheme, netloc, p.path.rstrip("/"), "", "")), auth


def management_url_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be an http(s) URL"
    try:
        p = urlsplit(value)
        p.port  # noqa: B018
    except ValueError:
        return "malformed URL (check the host and port)"
    if p.scheme not in ("http", "https") or not p.hostname:
        return "must be an http(s) URL such as http://rabbit:15672"
    return None


def vhost_path(vhost: str) -> str:
    """A vhost as one path segment of the management API (`/` is `%2F`)."""
    return quote(vhost, safe="")


def ssl_options(t: Target, ca_file: str | None, insecure: bool) -> dict[str, object] | bool:
    """py-amqp's `ssl` argument: verified against the system's CAs (or `tls_ca_file`) with the host
    name checked, unless `tls_insecure`; False for plain amqp."""
    if not t.tls:
        return False
    if insecure:
        return {"cert_reqs": ssl.CERT_NONE}
    return {"server_hostname": t.host, "cert_reqs": ssl.CERT_REQUIRED, "ca_certs": ca_file}
