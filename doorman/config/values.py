"""Checking and converting one configuration value against its `Setting`.

Environment values arrive as text and are parsed; YAML values must already have the right type.
Every problem is a `BadConfig` naming the source and the key. Malformed URLs are never quoted:
the parser's message can hold a piece of the password.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from doorman import brokers, plugins
from doorman.config.settings import Setting
from doorman.config.urls import is_loopback, webhook_parts
from doorman.contract.severity import SEVERITIES
from doorman.errors import BadConfig, DoormanError

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def coerce(value: Any, spec: Setting, source: str, name: str, from_text: bool) -> Any:
    """The checked, converted value. `None` is allowed only for keys without a default."""
    if value is None:
        if spec.default is None or spec.type == "map":
            return None  # optional (a destination left unset) or an empty section
        raise BadConfig(source, name, f"must not be empty (default: {spec.default!r})")
    value = _CONVERT[spec.type](value, spec, source, name, from_text)
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise BadConfig(source, name, problem)
    return value


def _text(value: Any, spec: Setting, source: str, name: str, from_text: bool) -> str:
    if not isinstance(value, str):
        raise BadConfig(source, name, f"must be a string, got {type(value).__name__}")
    if spec.type == "broker_url":
        _check_broker_url(value, source, name)
    elif spec.type == "webhook":
        _check_webhook(value, source, name)
    elif spec.type == "severity" and value not in SEVERITIES:
        raise BadConfig(source, name, f"must be one of {', '.join(SEVERITIES)}, got {value!r}")
    return value


def _bool(value: Any, spec: Setting, source: str, name: str, from_text: bool) -> bool:
    if from_text:
        text = str(value).strip().lower()
        if text not in TRUE + FALSE:
            raise BadConfig(source, name, f"must be true or false, got {value!r}")
        return text in TRUE
    if not isinstance(value, bool):
        raise BadConfig(source, name, f"must be true or false, got {value!r}")
    return value


def _number(value: Any, spec: Setting, source: str, name: str, from_text: bool) -> int | float:
    whole = spec.type == "int"
    said = value  # echoed in errors as the user wrote it: "-1", not "-1.0"
    if from_text:
        try:
            value = int(value) if whole else float(value)
        except ValueError:
            raise BadConfig(source, name, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadConfig(source, name, f"must be a number, got {type(value).__name__} {value!r}")
    if whole and value != int(value):
        raise BadConfig(source, name, f"must be a whole number, got {said!r}")
    if value < 0 or value != value or value == float("inf"):
        raise BadConfig(source, name, f"must be a finite number >= 0, got {said!r}")
    if value == 0 and spec.positive:
        raise BadConfig(source, name, "must be greater than 0")
    return int(value) if whole else float(value)


def _list(value: Any, spec: Setting, source: str, name: str, from_text: bool) -> list[Any]:
    if from_text:
        value = [v.strip() for v in str(value).split(",") if v.strip()]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise BadConfig(source, name, f"must be a list, got {type(value).__name__}")
    return value


def _map(value: Any, spec: Setting, source: str, name: str, from_text: bool) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise BadConfig(source, name, f"must be a mapping, got {type(value).__name__}")
    return value


_CONVERT = {"str": _text, "broker_url": _text, "webhook": _text, "severity": _text, "bool": _bool,
            "int": _number, "float": _number, "list": _list, "map": _map}


def _check_broker_url(url: str, source: str, name: str) -> None:
    """The URL's scheme picks a broker plugin, which checks the rest."""
    try:
        broker = brokers.for_url(url)
    except DoormanError:
        schemes = [s for b in plugins.brokers() for s in b.schemes]
        raise BadConfig(source, name, f"unsupported scheme {brokers.scheme_of(url)!r}; use one of "
                                      f"{', '.join(schemes)}") from None
    problem = broker.url_problem(url)
    if problem:
        raise BadConfig(source, name, problem)


def _check_webhook(url: str, source: str, name: str) -> None:
    """Checked with urllib3's parser, the one `requests` sends with: one truth about the host."""
    try:
        scheme, host, _ = webhook_parts(url)
        urlsplit(url).port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise BadConfig(source, name, "malformed URL (check the host and port)") from None
    if scheme not in ("http", "https") or not host:
        raise BadConfig(source, name, "must be an http:// or https:// URL with a host")
    if urlsplit(url).hostname != host.lower():
        raise BadConfig(source, name, "ambiguous URL: parsers disagree about its host (a backslash or "
                                      "@ before the path?); write it plainly")


def plain_http_problem(url: str | None) -> str | None:
    """Webhook URLs carry credentials: plain http only to loopback, unless explicitly allowed.
    The host is the one urllib3 will connect to."""
    if not url:
        return None
    try:
        scheme, host, _ = webhook_parts(url)
    except ValueError:
        return "malformed URL (check the host and port)"
    if scheme == "http" and not is_loopback(host):
        return ("must be https:// (plain http sends the secret in clear; set "
                "allow_insecure_webhooks: true to override)")
    return None
