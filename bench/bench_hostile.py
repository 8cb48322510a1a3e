"""Collect against a hostile broker: wall time, peak RSS and snapshot size of `doorman-collect --once`
when any client of the broker has filled it with junk (issue 19). Goal: peak RSS < 100 MiB,
whatever the broker holds; the snapshot line well under analyze's 16 MiB limit.

Each case starts from an empty redis-server started here and adds one kind of junk; nothing is
asserted. Also measured: what one LINDEX of a large queue head costs (time, client RSS).
"""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

from tests.support.process import BIN, LAUNCHER_RSS, ROOT
from tests.support.redis import RedisServer

GOAL_MIB = 100
SEP = b"\x06\x16"


def measured_collect(url: str) -> tuple[float, float, int, int]:
    """(wall s, peak RSS MiB, snapshot bytes, exit code) of one `doorman-collect --once`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_BROKER"))}
    env.update({"REDIS_URL": url, "DOORMAN_CONFIG": ""})
    p = subprocess.run([sys.executable, "-S", "-c", LAUNCHER_RSS, str(BIN / "doorman-collect"), "--once"],
                       env=env, capture_output=True, cwd=ROOT, check=True)
    lines = p.stdout.splitlines()
    wall, rss, code = lines[-1].split()
    snap = lines[0] if len(lines) > 1 else b""
    return float(wall), float(rss), len(snap), int(code)


def fake_workers(client, n: int) -> None:
    """`n` pidbox bindings of workers that do not exist (what a kill -9'd fleet, or anyone, leaves)."""
    for start in range(0, n, 50_000):
        client.sadd(b"_kombu.binding.celery.pidbox", *[
            SEP + SEP + f"fake{i}@evil.celery.pidbox".encode() for i in range(start, min(n, start + 50_000))])


def fake_queues(client, n: int) -> None:
    """`n` bound queues, each with one message."""
    for start in range(0, n, 20_000):
        names = [f"junk{i:07d}".encode() for i in range(start, min(n, start + 20_000))]
        client.sadd(b"_kombu.binding.celery", *[q + SEP + SEP + q for q in names])
        pipe = client.pipeline(transaction=False)
        for q in names:
            pipe.lpush(q, b'{"headers": {"id": "x", "task": "y"}}')
        pipe.execute()


def fake_exchanges(client, n: int) -> None:
    """`n` binding sets (Celery gives each queue its own exchange), each binding one queue."""
    for start in range(0, n, 20_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(n, start + 20_000)):
            q = f"junk{i:07d}".encode()
            pipe.sadd(b"_kombu.binding." + q, q + SEP + SEP + q)
        pipe.execute()


def huge_head(client, mib: int) -> None:
    """One message of `mib` MiB at the head of the `celery` queue (a 17 MiB `task` header)."""
    client.lpush(b"celery", orjson.dumps({"headers": {"id": "big", "task": "x" * (mib * 1024 * 1024)}}))


def deep_reply_task_id(client) -> None:
    """A message whose task id nests 250 levels (what crashed the serializer)."""
    client.lpush(b"celery", b'{"headers": {"id": ' + b"[" * 250 + b"1" + b"]" * 250 + b', "task": "x"}}')


def lindex_cost(url: str) -> tuple[float, float]:
    """(seconds, client peak RSS growth MiB) of one LINDEX of the `celery` head, in a fresh process."""
    code = (
        "import resource, sys, time, redis\n"
        "c = redis.Redis.from_url(sys.argv[1])\n"
        "c.ping()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.perf_counter()\n"
        "v = c.lindex('celery', -1)\n"
        "dt = time.perf_counter() - t\n"
        "print(dt, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    cases = [
        ("empty broker", lambda c: None),
        ("1M fake worker bindings", lambda c: fake_workers(c, 1_000_000)),
        ("200k fake queues, one message each", lambda c: fake_queues(c, 200_000)),
        ("200k fake exchanges (binding sets)", lambda c: fake_exchanges(c, 200_000)),
        ("one 300 MiB message at a queue head", lambda c: huge_head(c, 300)),
        ("one 17 MiB task header at a queue head", lambda c: huge_head(c, 17)),
        ("a task id nested 250 deep at a queue head", deep_reply_task_id),
    ]
    print(f"doorman-collect --once against hostile broker content (goal: peak RSS < {GOAL_MIB} MiB):")
    print("| broker content | wall | peak RSS | snapshot line | exit |")
    print("|---|---|---|---|---|")
    for title, fill in cases:
        server = RedisServer().start()
        try:
            client = server.client()
            fill(client)
            wall, rss, size, code = measured_collect(server.url)
            mark = "" if rss < GOAL_MIB else " (over the goal)"
            print(f"| {title} | {wall:.2f} s | {rss:.0f} MiB{mark} | {size / 1024:.0f} KiB | {code} |", flush=True)
            if title.startswith("one 300"):
                secs, grew = lindex_cost(server.url)
                print(f"|   LINDEX of that head alone (redis-py) | {secs:.2f} s | +{grew:.0f} MiB | | |")
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
