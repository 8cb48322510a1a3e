"""The CLIENT LIST parser against hypothesis: on any table Redis could print (hostile client names,
non-UTF-8 hosts, every field value) it agrees with a plain split-every-field reading, and on any
bytes at all it never crashes and stays within its bounds. The parser reads only the lines that
matter, in place, for speed (bench/bench_liveness.py); this is what keeps that honest."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doorman.brokers.redis.clients import CONSUMER_COMMANDS, DOORMAN_NAME, MAX_HOSTS, parse_client_list

# CLIENT SETNAME takes '!'..'~' only; a name may hold '=' and look like any field.
NAMES = st.one_of(st.just(""), st.just(DOORMAN_NAME), st.sampled_from(["cmd=brpop", "x=sub=1", "id=7", "psub=2"]),
                  st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30))
HOSTS = st.one_of(st.sampled_from([b"127.0.0.1", b"10.0.0.2", b"[::1]", b"/tmp/redis.sock", b""]),
                  st.binary(max_size=80).map(lambda b: bytes(c for c in b if c not in b" \t\n\r\x0b\x0c")))
CMDS = st.one_of(st.sampled_from(sorted(c.decode() for c in CONSUMER_COMMANDS)),
                 st.sampled_from(["psubscribe", "subscribe", "evalsha", "client|list", "NULL", "b", "brpopx"]))


@st.composite
def connection(draw: Any, cid: int) -> tuple[bytes, dict[str, Any]]:
    host, name, cmd = draw(HOSTS), draw(NAMES), draw(CMDS)
    sub, psub = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    addr = host + (b":%d" % draw(st.integers(0, 65535)) if draw(st.booleans()) else b"")
    tail = b" lib-name=redis-py lib-ver=8.1.0" if draw(st.booleans()) else b""
    line = (b"id=%d addr=%s laddr=127.0.0.1:6379 fd=8 name=%s age=3 idle=0 flags=N db=0 sub=%d psub=%d ssub=0 "
            b"multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 "
            b"tot-mem=1800 events=r cmd=%s user=default redir=-1 resp=2%s"
            % (cid, addr, name.encode(), sub, psub, cmd.encode(), tail))
    return line, {"id": cid, "addr": addr}


def reference(raw: bytes) -> tuple[set[int], set[int], dict[str, dict[str, int]]]:
    """Every field of every line split out: the slow, obvious reading."""
    consumers: set[int] = set()
    subscribers: set[int] = set()
    order: list[tuple[bytes, str]] = []
    for line in raw.split(b"\n"):
        if not line.startswith(b"id="):
            continue
        fields: dict[bytes, bytes] = {}
        for f in line.split(b" "):
            k, _, v = f.partition(b"=")
            fields.setdefault(k, v)
        if fields.get(b"name") == DOORMAN_NAME.encode():
            continue
        addr = fields[b"addr"]
        host = addr.rpartition(b":")[0] if b":" in addr else addr
        if fields[b"cmd"] in CONSUMER_COMMANDS:
            consumers.add(int(fields[b"id"]))
            order.append((host, "consumers"))
        elif (fields[b"sub"], fields[b"psub"]) != (b"0", b"0"):
            subscribers.add(int(fields[b"id"]))
            order.append((host, "subscribers"))
    by_host: dict[str, dict[str, int]] = {}
    kept = list(dict.fromkeys(h for h, _ in order))[:MAX_HOSTS]
    for host, kind in order:
        if host in kept:
            key = host.decode("ascii", "backslashreplace")[:64] or "?"
            by_host.setdefault(key, {"consumers": 0, "subscribers": 0})[kind] += 1
    return consumers, subscribers, by_host


@st.composite
def tables(draw: Any) -> bytes:
    n = draw(st.integers(0, 25))
    ids = draw(st.lists(st.integers(1, 10**18), min_size=n, max_size=n, unique=True))
    lines = [draw(connection(cid))[0] for cid in ids]
    # junk between the lines: anything that does not start like a connection, even " cmd=brpop "
    junk = st.one_of(st.binary(max_size=60), st.just(b" cmd=brpop sub=1 psub=1 "), st.just(b"x id=3 addr=h:1 cmd=brpop "))
    for _ in range(draw(st.integers(0, 4))):
        bad = draw(junk).replace(b"\n", b"")
        if not bad.startswith(b"id="):
            lines.insert(draw(st.integers(0, len(lines))), bad)
    return b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b"")


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_any_table_redis_prints_is_read_as_a_full_split_reads_it(raw: bytes):
    t = parse_client_list(raw)
    consumers, subscribers, by_host = reference(raw)
    assert (set(t.consumers), set(t.subscribers), t.by_host) == (consumers, subscribers, by_host)
    assert t.clients == sum(1 for line in raw.split(b"\n") if line.startswith(b"id="))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600) | st.lists(st.sampled_from(
    [b"id=", b"1", b"99999999999999999999999", b" addr=", b":", b" name=", DOORMAN_NAME.encode(), b" sub=",
     b"0", b" psub=", b" cmd=", b"brpop", b" ", b"\n", b"\xff\xfe"]), max_size=60).map(b"".join))
def test_any_bytes_never_crash_and_stay_bounded(raw: bytes):
    t = parse_client_list(raw)
    assert len(t.consumers) + len(t.subscribers) <= t.clients
    assert not t.consumers & t.subscribers
    assert len(t.by_host) <= MAX_HOSTS
    assert all(len(h) <= 64 and h.isascii() and h.isprintable() for h in t.by_host)
    assert all(i < 10**19 for i in t.consumers | t.subscribers)
