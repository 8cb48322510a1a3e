"""Redis's connection table (`CLIENT LIST`, read-only) as Doorman needs it: which connections are
Celery consumers, which are subscribers, grouped by client host.

What a connection says of itself: `id` (never reused while the server runs), `addr` (ip:port),
`name` (kombu sets none, so a worker's name is *not* there), `flags` (`b` = blocked in a blocking
command now), `sub`/`psub` (channels/patterns subscribed), and `cmd` — the *last* command it ran.
A Celery worker on Redis holds exactly one connection whose last command is `brpop` (its task
consumer; it stays `brpop` while the worker is busy and not blocked), and two pattern subscribers
(the pidbox and gossip/events). So a consumer connection can be counted and followed by `id`, but
not matched to a worker by name: which worker went away is confirmed with a pidbox ping.

The table is hostile data of unbounded size: it is read with one regular-expression pass per field
over the whole reply (10,000 clients in milliseconds, see tests/bench/bench_liveness.py), line by
line when the passes do not line up, and at most `MAX_HOSTS` hosts are reported.
"""

from __future__ import annotations

import re

from doorman.brokers.base import ConnectionTable

DOORMAN_NAME = "celery-doorman"  # our own connections' client name (client.connect): never counted
CONSUMER_COMMANDS = frozenset({b"brpop", b"blpop", b"bzpopmin", b"blmove", b"brpoplpush"})
MAX_HOSTS = 100


def _host(host: bytes) -> str:
    return host.decode("ascii", "backslashreplace")[:64] or "?"


class _Tally:
    """Consumer and subscriber connections by id, and their counts per host (at most MAX_HOSTS)."""

    def __init__(self) -> None:
        self.ids: tuple[set[int], set[int]] = (set(), set())  # consumers, subscribers
        self.by_host: dict[bytes, list[int]] = {}  # host -> [consumers, subscribers]
        self.truncated = False

    def add(self, cid: int, addr: bytes, kind: int) -> None:
        """One connection of `kind` (0 consumer, 1 subscriber) from `addr` (host:port)."""
        self.ids[kind].add(cid)
        host = addr.rpartition(b":")[0] if b":" in addr else addr
        counts = self.by_host.get(host)
        if counts is None:
            if len(self.by_host) >= MAX_HOSTS:
                self.truncated = True
                return
            counts = self.by_host[host] = [0, 0]
        counts[kind] += 1

    def table(self, clients: int) -> ConnectionTable:
        hosts = {_host(h): {"consumers": c[0], "subscribers": c[1]} for h, c in self.by_host.items()}
        return ConnectionTable(clients, frozenset(self.ids[0]), frozenset(self.ids[1]), hosts, self.truncated)


_CONSUMING = tuple(b" cmd=" + c + b" " for c in sorted(CONSUMER_COMMANDS))
_NOT_SUBSCRIBED = b" sub=0 psub=0 "


def _parse_lines(raw: bytes) -> ConnectionTable:
    """The table, line by line; lines it cannot read are skipped.

    Only substring tests and two `find`s per line, no split: a field is ` key=value` between
    spaces, and no value holds a space (CLIENT SETNAME refuses one), so ` cmd=brpop ` cannot be
    forged by a client name."""
    own = b" name=" + DOORMAN_NAME.encode() + b" "
    tally = _Tally()
    clients = 0
    for line in raw.split(b"\n"):
        if not line.startswith(b"id="):
            continue
        clients += 1
        line += b" "
        if b" cmd=b" in line and any(c in line for c in _CONSUMING):
            kind = 0
        elif _NOT_SUBSCRIBED not in line and b" psub=" in line:
            kind = 1
        else:
            continue
        if own in line:
            continue
        cid = line[3:line.find(b" ")]
        start = line.find(b" addr=") + 6
        if not cid.isdigit() or start < 6:
            continue
        tally.add(int(cid), line[start:line.find(b" ", start)], kind)
    return tally.table(clients)


# One pass over the whole reply per field. Each pattern starts with a space (or the line's start),
# and no value holds a space or a newline, so a client name cannot forge a field: the passes line
# up one match per line, which is checked before they are zipped.
_ID_ADDR = re.compile(rb"\nid=(\d+) addr=(\S*)")  # on the reply after a newline
_NAME = re.compile(rb" name=(\S*)")
_SUBS = re.compile(rb" sub=(\d+) psub=(\d+)")
_CMD = re.compile(rb" cmd=(\S*)")


def parse_client_list(raw: bytes) -> ConnectionTable:
    """The table from the raw `CLIENT LIST` reply; an odd reply is read line by line instead."""
    ids = _ID_ADDR.findall(b"\n" + raw)
    names, subs, cmds = _NAME.findall(raw), _SUBS.findall(raw), _CMD.findall(raw)
    lines = raw.count(b"\nid=") + raw.startswith(b"id=")
    if not len(ids) == len(names) == len(subs) == len(cmds) == lines:
        return _parse_lines(raw)
    own = DOORMAN_NAME.encode()
    tally = _Tally()
    for (cid, addr), name, sp, cmd in zip(ids, names, subs, cmds, strict=True):
        if cmd in CONSUMER_COMMANDS:
            kind = 0
        elif sp != _NO_SUBS:
            kind = 1
        else:
            continue
        if name == own:
            continue
        tally.add(int(cid), addr, kind)
    return tally.table(lines)


_NO_SUBS = (b"0", b"0")
