"""Keep secrets out of every line Doorman prints.

Broker passwords, webhook URLs (whose path *is* the credential for Slack) and PagerDuty routing
keys are secrets. Each output path redacts structured values with the helpers below, and
`Scrubber` removes any known secret that slipped into free text (exception messages quote URLs).
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"


def redact_url(url: str | None) -> str | None:
    """Hide the password of a broker URL, keeping user, host, port and db for diagnosis."""
    if not url:
        return url
    # Sentinel lists are several URLs joined by ';'.
    if ";" in url:
        return ";".join(redact_url(part) or "" for part in url.split(";"))
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return MASK
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        if ":" not in userinfo:  # redis://password@host is a password, not a user
            user = ""
        netloc = f"{user}:{MASK}@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1" + MASK, parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]*@")


def mask_url_passwords(text: str) -> str:
    """Hide the password of every `scheme://user:password@` in free text (a message quoting a URL
    Doorman was never configured with, so `Scrubber` cannot know it)."""
    return _URL_PASSWORD.sub(r"\1" + MASK + "@", text)


def redact_webhook(url: str | None) -> str | None:
    """Keep scheme and host of a webhook, hide path, query and credentials (they carry the token)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    return f"{parts.scheme}://{host}{port}/{MASK}"


def redact_key(key: str | None) -> str | None:
    """Show only the last four characters of a routing key, enough to tell keys apart."""
    if not key:
        return key
    return MASK + key[-4:] if len(key) >= 12 else MASK


def basic_auth_forms(username: str | None, password: str | None) -> list[str]:
    """`user:pass` of a URL's userinfo as HTTP basic auth sends it: plain and base64 (the header
    `Authorization: Basic dXNlcjpwYXNz`), for the userinfo as written and percent-decoded, with and
    without base64 padding. A message quoting the header must not show the credentials either."""
    if not password:
        return []
    out: list[str] = []
    for u, p in {(username or "", password), (unquote(username or ""), unquote(password))}:
        pair = f"{u}:{p}"
        for charset in ("utf-8", "latin-1"):
            try:
                encoded = base64.b64encode(pair.encode(charset)).decode()
            except UnicodeEncodeError:
                continue
            out += [encoded, encoded.rstrip("="), base64.urlsafe_b64encode(pair.encode(charset)).decode().rstrip("=")]
        out.append(pair)
    return out


def url_secrets(url: str | None) -> list[str]:
    """The substrings of a URL that must never be printed."""
    if not url:
        return []
    out: list[str] = []
    for part in url.split(";"):
        try:
            p = urlsplit(part)
        except ValueError:
            out.append(part)
            continue
        if p.password:
            out.append(p.password)
            out += basic_auth_forms(p.username, p.password)  # the management API's basic auth
        elif p.username and "@" in p.netloc and ":" not in p.netloc.rsplit("@", 1)[0]:
            out.append(p.username)
        for m in re.finditer(r"(?i)password=([^&]+)", p.query):
            out.append(m.group(1))
    return out


def webhook_secrets(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        p = urlsplit(url)
    except ValueError:
        return [url]
    out = [url]
    if p.path not in ("", "/"):
        out.append(p.path)
        out.append(p.path.lstrip("/"))
    if p.query:
        out.append(p.query)
    if p.password:
        out.append(p.password)
        out += basic_auth_forms(p.username, p.password)  # Alertmanager's basic auth header
    return out


def encoded_forms(secret: str) -> set[str]:
    """A secret as it may appear in a message: as given, percent-decoded (a URL's password is
    stored encoded), and percent-encoded the ways URLs and forms do (an exception quoting a
    request URL shows `SLACK%20SECRET%7CTOKEN`)."""
    plain = {secret, unquote(secret), unquote_plus(secret)}
    out = set(plain)
    for p in plain:
        out |= {quote(p, safe=""), quote(p, safe="/:@"), quote(p), quote_plus(p), quote_plus(p, safe="/:@")}
    return {s for s in out if s}


def _pattern(form: str) -> str:
    """`form` as a regex where each %XX escape matches either case of its hex digits."""
    parts = re.split(r"(%[0-9A-Fa-f]{2})", form)
    return "".join(f"%[{p[1].upper()}{p[1].lower()}][{p[2].upper()}{p[2].lower()}]" if re.fullmatch(r"%[0-9A-Fa-f]{2}", p)
                   else re.escape(p) for p in parts)


class Scrubber:
    """Replace every known secret in a text, in any of its encoded forms; longest first so a URL is
    masked before its path."""

    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        forms = sorted({f for s in self.secrets for f in encoded_forms(s)}, key=len, reverse=True)
        self.regex = re.compile("|".join(_pattern(f) for f in forms)) if forms else None

    def __call__(self, text: str) -> str:
        return self.regex.sub(MASK, text) if self.regex is not None else text
