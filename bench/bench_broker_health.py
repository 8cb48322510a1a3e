"""`make bench` figures for the lost-task reads (issue 13): what `INFO`, the beat keys and the
oldest unacked messages add to one snapshot. Goal: the INFO read under 1 ms per snapshot.

Against a real redis-server on loopback, holding a realistic keyspace (two dbs, queues, results
with and without TTL, 50 unacked messages, a RedBeat schedule and a canary).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import orjson

from doorman.brokers.redis import beat, health, unacked
from doorman.brokers.redis.keys import Keys
from tests.support.redis import RedisServer

N = 2000


def _ms(fn: Callable[[], object], n: int = N) -> tuple[float, float]:
    """(median, p99) milliseconds of `fn`."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


def _populate(client) -> None:  # noqa: ANN001 - redis.Redis
    pipe = client.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"celery-task-meta-{i}", b'{"status": "SUCCESS", "result": 3}', ex=3600 if i % 2 else None)
    for q in ("celery", "emails", "payments"):
        for _ in range(200):
            pipe.lpush(q, b'{"headers": {"id": "x", "task": "app.t"}}')
    now = time.time()
    for i in range(50):
        tag = f"tag-{i}"
        pipe.zadd("unacked_index", {tag: now - 100 + i})
        pipe.hset("unacked", tag, orjson.dumps([{"headers": {"id": f"id-{i}", "task": "app.t"}}, "", "celery"]))
    for i in range(20):
        pipe.zadd("redbeat::schedule", {f"redbeat:job{i}": now + 60 + i})
    pipe.set("redbeat::lock", b"token", px=30000)
    pipe.set("doorman:beat:canary", int(now))
    pipe.execute()
    client.execute_command("SELECT", 1)
    for i in range(500):
        client.set(f"other-{i}", b"x")


def main() -> None:
    server = RedisServer(extra=["--maxmemory", "256mb", "--maxmemory-policy", "noeviction"]).start()
    try:
        client = server.client()
        _populate(server.client())
        reply = client.info(health.SECTION)
        print(f"INFO {health.SECTION}: {len(reply)} fields from redis-server {reply['redis_version']}")

        med, p99 = _ms(lambda: health.read(client))
        print(f"broker_health (INFO round trip + parse): median {med:.3f} ms, p99 {p99:.3f} ms  (goal < 1 ms)")
        info = client.info(health.SECTION)
        med, p99 = _ms(lambda: health.parse(info), n=20000)
        print(f"  of which Doorman's parse of redis-py's dict: median {med * 1000:.1f} us")
        med, p99 = _ms(lambda: client.ping())
        print(f"  a bare PING round trip, for scale: median {med:.3f} ms")

        now = time.time()
        med, p99 = _ms(lambda: beat.read(client, now, "doorman:beat:canary", "redbeat:", 60.0))
        print(f"beat (GET canary + RedBeat PTTL/ZCARD/ZCOUNT/ZRANGEBYSCORE, one round trip): "
              f"median {med:.3f} ms, p99 {p99:.3f} ms")

        keys = Keys()
        oldest = [(t, float(s)) for t, s in client.zrange(keys.unacked_index, 0, unacked.OLDEST - 1, withscores=True)]
        med, _ = _ms(lambda: unacked.messages(unacked.Names(), client, keys, oldest), n=500)
        print(f"naming the 5 oldest unacked messages, first sight (HSTRLEN + HMGET): median {med:.3f} ms")
        names = unacked.Names()
        med, _ = _ms(lambda: unacked.messages(names, client, keys, oldest))
        print(f"  the same, cached (every later snapshot while they stay): median {med * 1000:.1f} us")
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
