"""beat_down / beat_missed: celery beat is not running, or a schedule entry is overdue.

Celery has no health check for beat (celery 5014, 7251), and a stuck beat looks alive to a
process check (celery 3694, django-celery-beat 824). Two sources, read by the broker into the
snapshot's `beat` (see the `beat:` section of the configuration):

- a canary: any scheduler runs a periodic task that writes the Unix time into `beat.canary_key`;
  beat_down when the key is missing, unreadable or older than `beat.canary_max_age_seconds`;
- RedBeat (`celery-redbeat`): beat_down when the lock beat holds and extends on every tick is gone
  while a schedule exists (a clean stop deletes it; after a crash it lapses after RedBeat's
  `redbeat_lock_timeout`), beat_missed when an entry is due more than `beat.grace_seconds` ago.
"""

from __future__ import annotations

from typing import Any

from doorman.brokers import scheme_of
from doorman.config.settings import Config, Setting
from doorman.rules.base import AlertType, BaseRule, Condition, Rule, Snapshot, State, condition, duration
from doorman.rules.broker_memory import count, num

BEAT = "beat"
MAX_LATE = 10
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket")


def _redis_only(url: str) -> str | None:
    return None if scheme_of(url) in REDIS_SCHEMES else f"must be a Redis URL ({', '.join(REDIS_SCHEMES)})"


def entries_text(n: int) -> str:
    return f"{n} schedule entr{'y' if n == 1 else 'ies'}"


def _beat(snapshot: Snapshot, source: str) -> dict[str, Any] | None:
    b = snapshot.get("beat")
    part = b.get(source) if isinstance(b, dict) else None
    return part if isinstance(part, dict) else None


class Beat(BaseRule):
    name = "beat"
    alert_types = (
        AlertType("beat_down", ("critical",), "cluster",
                  "celery beat is not running: its canary is missing or stale, or RedBeat's lock is gone.",
                  inhibited_by=frozenset({"redis_down"})),
        AlertType("beat_missed", ("warning",), "cluster",
                  "A RedBeat schedule entry is overdue by more than beat.grace_seconds.",
                  inhibited_by=frozenset({"redis_down", "beat_down"})),
    )
    settings = (
        Setting(BEAT, "map", None, (), "celery beat monitoring: a canary key any scheduler refreshes, and RedBeat's keys."),
        Setting("canary_key", "str", None, ("DOORMAN_BEAT_CANARY_KEY",),
                "Redis key a periodic task sets to the current Unix time (one GET per check); unset: no canary.",
                section=BEAT),
        Setting("canary_max_age_seconds", "float", 300.0, ("DOORMAN_BEAT_CANARY_MAX_AGE",),
                "beat_down fires when the canary is older than this (at least twice the task's period).",
                section=BEAT, positive=True),
        Setting("redbeat", "bool", True, ("DOORMAN_BEAT_REDBEAT",),
                "Read RedBeat's lock and schedule keys (nothing fires while no RedBeat schedule exists).",
                section=BEAT),
        Setting("redbeat_key_prefix", "str", "redbeat:", ("DOORMAN_BEAT_REDBEAT_PREFIX",),
                "RedBeat's redbeat_key_prefix: its keys are <prefix>:lock and <prefix>:schedule.",
                section=BEAT, check=lambda v: None if v else "must not be empty"),
        Setting("grace_seconds", "float", 60.0, ("DOORMAN_BEAT_GRACE",),
                "beat_missed fires when a RedBeat entry is overdue by more than this.", section=BEAT),
        Setting("redis_url", "broker_url", None, ("DOORMAN_BEAT_REDIS_URL",),
                "The Redis holding the canary and RedBeat's keys (RedBeat's redbeat_redis_url, or the result "
                "backend), when it is not the broker: any broker, RabbitMQ included. Read-only, with its own "
                "connection; unreadable: the snapshot's beat is null (the broker is not marked down). "
                "Unset: the broker itself (Redis brokers only).",
                section=BEAT, secret=True, check=_redis_only),
        Setting("redis_timeout_seconds", "float", 1.0, ("DOORMAN_BEAT_REDIS_TIMEOUT",),
                "Seconds beat.redis_url's connect and read may take; after a failure it is tried again "
                "30 s later, so a down beat Redis never slows the checks.", section=BEAT, positive=True),
    )

    def evaluate(self, snapshot: Snapshot, state: State, config: Config, now: float) -> list[Condition]:
        out = []
        reasons: list[str] = []
        details: dict[str, Any] = {}
        canary = _beat(snapshot, "canary")
        if canary is not None:
            max_age = config.beat.canary_max_age_seconds
            age = num(canary.get("age_seconds"))
            key = str(canary.get("key"))[:200]
            details["canary"] = {"key": key, "present": canary.get("present") is True,
                                 "age_seconds": age, "max_age_seconds": max_age}
            if canary.get("present") is not True:
                reasons.append(f"its canary key {key!r} is missing")
            elif age is None:
                reasons.append(f"its canary key {key!r} does not hold a Unix time")
            elif age > max_age:
                reasons.append(f"its canary is {duration(age)} old (max {duration(max_age)})")
        redbeat = _beat(snapshot, "redbeat")
        if redbeat is not None:
            entries = count(redbeat.get("entries")) or 0
            if entries and redbeat.get("lock_present") is False:
                reasons.append(f"RedBeat's lock is gone while {entries_text(entries)} exist")
                details["redbeat"] = {"prefix": str(redbeat.get("prefix"))[:64], "entries": entries,
                                      "lock_present": False}
        if reasons:
            out.append(condition("beat_down", "critical", "cluster", "celery beat down",
                                 f"celery beat is not running: {'; '.join(reasons)}. Periodic tasks are not sent.",
                                 details))
        late = redbeat.get("late") if redbeat is not None else None
        n_late = count(redbeat.get("late_count")) if redbeat is not None else None
        if isinstance(late, list) and n_late:
            grace = config.beat.grace_seconds
            named = [(str(e.get("name"))[:200], num(e.get("late_seconds")))
                     for e in late[:MAX_LATE] if isinstance(e, dict)]
            worst = max((s for _, s in named if s is not None), default=None)
            names = ", ".join(n for n, _ in named[:3])
            out.append(condition(
                "beat_missed", "warning", "cluster", "Periodic task missed",
                f"{entries_text(n_late)} of RedBeat overdue by more than {duration(grace)}"
                + (f", up to {duration(worst)}" if worst is not None else "") + f": {names}.",
                {"late_count": n_late, "entries": [{"name": n, "late_seconds": s} for n, s in named],
                 "grace_seconds": grace}))
        return out


RULE: Rule = Beat()
