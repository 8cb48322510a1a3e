"""One truth about a URL: webhook hosts as the sender parses them, broker URL options as redis-py does.

Two parsers that disagree are an attack: `http://192.0.2.2:8471\\@127.0.0.1/` is loopback to
`urllib.parse` but urllib3 (which `requests` uses to send) posts it to 192.0.2.2. So webhook
URLs are checked with urllib3's `parse_url`. Broker URL query options are read the way redis-py
reads them (`parse_qs`: percent-decoded names and values), so every spelling of a TLS-weakening
option is seen, and a value redis-py would choke on is one line of configuration error instead.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from urllib.parse import SplitResult, parse_qs, urlsplit

LOOPBACK_HOSTS = ("localhost", "::1")


def webhook_parts(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) as urllib3 (hence `requests`) sees them. ValueError when malformed."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        p = parse_url(url)
        port = p.port
    except (LocationParseError, ValueError):
        raise ValueError("malformed URL") from None
    host = (p.host or "").strip("[]")
    return (p.scheme or "").lower(), host, port


def split_broker_url(url: str, schemes: tuple[str, ...]) -> SplitResult:
    """`url` split, its port checked and its scheme one of `schemes`; else ValueError saying what
    is wrong, never quoting the URL or the parser's message (either can hold the password)."""
    try:
        p = urlsplit(url)
        p.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("malformed URL (check the host and port, and URL-encode special characters such "
                         "as # / ? @ in the password)") from None
    if p.scheme not in schemes:
        raise ValueError(f"unsupported scheme {p.scheme!r}; use one of {', '.join(schemes)}")
    return p


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]")
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name such as 127.attacker.example is not loopback


# ------------------------------------------------------------------ broker URL options (redis-py's)


def _int(low: int) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        try:
            n = int(v)
        except ValueError:
            return "must be a whole number"
        return None if n >= low else f"must be {low} or more"

    return check


def _float_positive(v: str) -> str | None:
    try:
        f = float(v)
    except ValueError:
        return "must be a number"
    return None if f > 0 and math.isfinite(f) else "must be a number greater than 0"


def _bool(v: str) -> str | None:
    return None if v.lower() in ("", "0", "1", "f", "t", "false", "true", "n", "y", "no", "yes") \
        else "must be true or false"


def _protocol(v: str) -> str | None:
    return None if v in ("2", "3") else "must be 2 or 3"


def _any(v: str) -> str | None:
    return None


# The options redis-py accepts in a URL, with the checks of its own parsers (and of the pool:
# max_connections must be positive). Anything else would reach redis-py as an unknown keyword.
REDIS_OPTIONS: dict[str, Callable[[str], str | None]] = {
    "db": _int(0), "socket_timeout": _float_positive, "socket_connect_timeout": _float_positive,
    "socket_read_size": _int(1), "socket_keepalive": _bool, "retry_on_timeout": _bool,
    "max_connections": _int(1), "health_check_interval": _int(0), "ssl_check_hostname": _bool,
    "ssl_min_version": _int(0), "timeout": _float_positive, "protocol": _protocol, "client_name": _any,
    "username": _any, "password": _any, "ssl_cert_reqs": _any, "ssl_ca_certs": _any, "ssl_ca_path": _any,
    "ssl_certfile": _any, "ssl_keyfile": _any, "ssl_password": _any, "ssl_ciphers": _any,
    "ssl_validate_ocsp": _bool, "ssl_validate_ocsp_stapled": _bool, "ssl_include_verify_flags": _any,
    "ssl_exclude_verify_flags": _any,
}


def query_problem(url: str) -> str | None:
    """Why redis-py would refuse this URL's query options (None: it takes them). Never quotes the
    value of `password` or any ssl_* option."""
    try:
        options = parse_qs(urlsplit(url).query, keep_blank_values=True)
    except ValueError:
        return "malformed query string"
    for name, values in options.items():
        check = REDIS_OPTIONS.get(name)
        if check is None:
            known = ", ".join(sorted(k for k in REDIS_OPTIONS if k not in ("password",)))
            return f"unknown URL option ?{_shown(name)}= (accepted: {known})"
        problem = check(values[-1])
        if problem:
            shown = "" if name == "password" or name.startswith("ssl_") else f", got {_shown(values[-1])!r}"
            return f"URL option ?{name}= {problem}{shown}"
    return None


def _shown(text: str) -> str:
    from doorman.textsafe import printable

    return printable(text)[:40]


def tls_weakening(url: str) -> list[str]:
    """The URL's options that weaken TLS, however they are spelled (case, percent-encoding,
    CERT_NONE or none): each is worth a warning."""
    out: list[str] = []
    for part in url.split(";"):
        try:
            options = parse_qs(urlsplit(part).query, keep_blank_values=True)
        except ValueError:
            continue
        for name, values in options.items():
            key, value = name.lower(), values[-1].strip().lower()
            if key == "ssl_cert_reqs" and value.removeprefix("cert_") in ("none", "optional", ""):
                out.append(f"{name}={values[-1]} (the server's certificate is not verified)")
            elif key == "ssl_check_hostname" and value in ("0", "f", "false", "n", "no", "off"):
                out.append(f"{name}={values[-1]} (any valid certificate is accepted, for any host)")
            elif key == "ssl_exclude_verify_flags":
                out.append(f"{name}={values[-1]} (turns certificate checks off)")
    return out
