"""celery beat's traces from `beat.redis_url`: a Redis of their own, whatever the broker.

With a RabbitMQ broker (or a Redis broker whose RedBeat writes elsewhere) the canary and RedBeat's
keys live in another Redis: RedBeat's `redbeat_redis_url`, or the result backend. This reads them
there with the same one pipelined, read-only round trip as on a Redis broker
(`doorman.brokers.redis.beat`), over a connection of its own with its own timeout. A failure is
never the broker's: the snapshot's `beat` is null (as when a broker refuses the read), it is said
once on stderr, and the next try waits RETRY_AFTER, so a down beat Redis never slows the checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from doorman.config.settings import Config
from doorman.contract.snapshot import BeatState
from doorman.redact import Scrubber, redact_url

SOURCE = "beat.redis_url"
RETRY_AFTER = 30.0  # seconds between tries while the beat Redis fails


class BeatRedis:
    def __init__(self, cfg: Config, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        from doorman.brokers.redis import client  # redis-py only when a beat Redis is configured

        b = cfg.beat
        self.redacted = redact_url(b.redis_url)
        self.client, _ = client.connect(cfg.replace(broker_url=b.redis_url, redis_timeout=b.redis_timeout_seconds))
        self.canary_key: str | None = b.canary_key
        self.prefix: str | None = b.redbeat_key_prefix if b.redbeat else None
        self.grace: float = b.grace_seconds
        self.say, self.clock = say, clock
        self.scrub = Scrubber(cfg.secrets())
        self.failing_since: float | None = None
        self.retry_at = 0.0

    def read(self, now: float) -> BeatState | None:
        """The beat section, or None when nothing is configured to read or the beat Redis fails."""
        from doorman.brokers.redis import beat

        if not (self.canary_key or self.prefix):
            return None
        if self.failing_since is not None and self.clock() < self.retry_at:
            return None
        try:
            state = beat.read(self.client, now, self.canary_key, self.prefix, self.grace)
        except Exception as e:  # noqa: BLE001 - beat's own Redis must never cost the broker's snapshot
            if self.failing_since is None:
                self.failing_since = self.clock()
                self.say(self.scrub(f"beat.redis_url {self.redacted}: unreadable ({type(e).__name__}: {e}); "
                                    f"beat is null, tried again every {RETRY_AFTER:g} s")[:500])
            self.retry_at = self.clock() + RETRY_AFTER
            self.client.connection_pool.disconnect()
            return None
        if self.failing_since is not None:
            self.failing_since = None
            self.say(f"beat.redis_url {self.redacted}: readable again")
        state["source"], state["redis"] = SOURCE, self.redacted
        return state

    def close(self) -> None:
        self.client.close()
