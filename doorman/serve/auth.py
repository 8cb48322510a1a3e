"""Who may read serve's pages: loopback by default, a token for anything else.

A bind address other than loopback needs DOORMAN_SERVE_TOKEN (the client sends it as a bearer
token or as the basic-auth password) or an explicit --no-auth; otherwise serve refuses to start.
/livez and /healthz answer without the token (probes rarely carry one; they reveal only status).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from doorman.errors import DoormanError

OPEN_PATHS = frozenset({"/livez", "/healthz"})


class BadListen(DoormanError):
    exit_code = 2


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise BadListen(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9808")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise BadListen(f"--listen {text!r}: give a host (0.0.0.0 for every address)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, no_auth: bool) -> str | None:
    """The warning to print (None: none); raises BadListen when serve must not start."""
    if is_loopback(host) or token:
        return None
    if no_auth:
        return (f"warning: listening on {host} with --no-auth: anyone who can reach it reads the "
                "dashboard and metrics")
    raise BadListen(f"--listen {host}: not loopback; set DOORMAN_SERVE_TOKEN (or pass --no-auth explicitly)")


def authorized(header: str | None, token: str | None) -> bool:
    if not token:
        return True
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(decoded.partition(":")[2].encode(), token.encode())
    return False
