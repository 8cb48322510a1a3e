"""Redis's connection table (`CLIENT LIST`, read-only) as Doorman needs it: which connections are
Celery consumers, which are subscribers, grouped by client host.

What a connection says of itself: `id` (never reused while the server runs), `addr` (ip:port),
`name` (kombu sets none, so a worker's name is *not* there), `flags` (`b` = blocked in a blocking
command now), `sub`/`psub` (channels/patterns subscribed), and `cmd` — the *last* command it ran.
A Celery worker on Redis holds exactly one connection whose last command is `brpop` (its task
consumer; it stays `brpop` while the worker is busy and not blocked), and two pattern subscribers
(the pidbox and gossip/events). So a consumer connection can be counted and followed by `id`, but
not matched to a worker by name: which worker went away is confirmed with a pidbox ping.

The table is hostile data of unbounded size (10,000 clients are 2.6 MB). Most lines do not matter
(a worker's producer and pool connections), so only the lines that do are read: one C-level
regular-expression pass finds the ` cmd=brpop ` and non-zero ` sub=… psub=…` fields, and only
those lines' `id`/`addr`/`name` are looked at, in place (no split, no per-line copy, no field
dict). A field is ` key=value` between spaces and no value holds a space or a newline (CLIENT
SETNAME refuses them), so a client name cannot forge a field. Ids are read only up to 19 digits,
hosts are escaped and capped at 64 characters, and at most `MAX_HOSTS` hosts are reported.
Figures: bench/bench_liveness.py.
"""

from __future__ import annotations

import re
from collections import Counter

from doorman.brokers.base import ConnectionTable

DOORMAN_NAME = "celery-doorman"  # our own connections' client name (client.connect): never counted
CONSUMER_COMMANDS = frozenset({b"brpop", b"blpop", b"bzpopmin", b"blmove", b"brpoplpush"})
MAX_HOSTS = 100

# A consumer's ` cmd=…` field (starts with "c"), or a ` sub=` field of a subscribed connection.
# (Redis 5 and older print `cmd` last, so it may end at the line's end rather than at a space.)
_WANTED = re.compile(rb" (?:cmd=(?:" + b"|".join(sorted(CONSUMER_COMMANDS)) + rb")(?=[ \r\n]|$)|sub=(?!0 psub=0 ))")
_C = ord("c")
# The head of a line: id, then addr split at its last colon (host, port); an addr with no colon is a host.
_HEAD = re.compile(rb"id=(\d{1,19}) addr=(?:(\S*):)?(\S*) ")
_OWN = b" name=" + DOORMAN_NAME.encode() + b" "


def _host(host: bytes) -> str:
    return host.decode("ascii", "backslashreplace")[:64] or "?"


def _by_host(seen: list[bytes], hosts: tuple[list[bytes], list[bytes]]) -> tuple[dict[str, dict[str, int]], bool]:
    """{host: {"consumers": n, "subscribers": n}} for the first MAX_HOSTS hosts of the table, and
    whether some were left out (`seen`: every counted line's host, in table order)."""
    distinct = list(dict.fromkeys(seen))
    consumers, subscribers = Counter(hosts[0]), Counter(hosts[1])
    out: dict[str, dict[str, int]] = {}
    for raw_host in distinct[:MAX_HOSTS]:
        counts = out.setdefault(_host(raw_host), {"consumers": 0, "subscribers": 0})
        counts["consumers"] += consumers[raw_host]
        counts["subscribers"] += subscribers[raw_host]
    return out, len(distinct) > MAX_HOSTS


def parse_client_list(raw: bytes) -> ConnectionTable:
    """The table from the raw `CLIENT LIST` reply; lines it cannot read are skipped."""
    clients = raw.count(b"\nid=") + raw.startswith(b"id=")
    ids: tuple[list[int], list[int]] = ([], [])  # consumers, subscribers
    hosts: tuple[list[bytes], list[bytes]] = ([], [])
    seen: list[bytes] = []
    rfind, find, head = raw.rfind, raw.find, _HEAD.match
    line, taken = -1, -1  # the line of the last hit, and what it was counted as (-1: nothing)
    for m in _WANTED.finditer(raw):
        at = m.start()
        start = rfind(b"\n", 0, at) + 1
        kind = 0 if raw[at + 1] == _C else 1
        if start == line:  # a second field of the same line: only a consumer beats a subscriber
            if kind == 1 or taken != 1:
                continue
            ids[1].pop()
            hosts[1].pop()
        line, taken = start, -1
        h = head(raw, start)
        if h is None:
            continue
        if find(_OWN, start, at + 1) >= 0:  # Redis prints `name` before `sub` and `cmd`
            continue
        host = h[3] if h[2] is None else h[2]
        ids[kind].append(int(h[1]))
        hosts[kind].append(host)
        seen.append(host)
        taken = kind
    by_host, truncated = _by_host(seen, hosts)
    return ConnectionTable(clients, frozenset(ids[0]), frozenset(ids[1]), by_host, truncated)
