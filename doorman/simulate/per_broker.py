"""Which `doorman-simulate --scenario` exists on which broker, and why not where it does not.

A scenario that stages a failure RabbitMQ cannot have is refused on `--broker rabbitmq` with one
line on stderr and exit 2 (NOT_ON_BROKER), before anything is started: a run that passed because
nothing could go wrong would say something false. docs/simulate.md has the table of every
scenario's exact alerts on each broker.
"""

from __future__ import annotations

from typing import IO

NOT_ON_BROKER = 2  # the exit code of a scenario refused on a broker (docs/simulate.md, "Exit codes")

# scenario -> why it cannot be staged on RabbitMQ (one line, shown as is)
NOT_ON_RABBITMQ: dict[str, str] = {
    "redelivery": "RabbitMQ has no visibility timeout: it redelivers a task only when the consumer's channel "
                  "closes (its analogue, a task held past consumer_timeout, is consumer_timeout_risk)",
    "stranded": "RabbitMQ has no kombu `unacked` hash: it requeues a dead worker's tasks the moment its "
                "connection closes, so nothing is stranded",
    "eviction": "RabbitMQ never evicts messages (maxmemory-policy is a Redis setting); its memory limit blocks "
                "publishers instead (broker_alarm), a node-wide setting the simulation must not change",
    "oom": "RabbitMQ has no OOM refusal per command; its memory alarm blocks every publisher of the node "
           "(broker_alarm), which the simulation must not trigger on a shared server",
    "beat-killed": ("the demo keeps RedBeat's canary and lock in the broker's Redis; with RabbitMQ, point "
                    "beat.redis_url at the Redis beat uses (docs/analyze.md; tested in tests/test_beat_redis_url.py)"),
    "results": "results_growing reads Redis INFO keyspace (celery-task-meta-* keys); RabbitMQ keeps no results",
}


def refused(scenario: str, broker: str, talk: IO[str]) -> bool:
    """Say in one line why `scenario` cannot run on `broker`; whether it was refused."""
    why = NOT_ON_RABBITMQ.get(scenario) if broker == "rabbitmq" else None
    if why is None:
        return False
    talk.write(f"doorman-simulate: --scenario {scenario} does not exist on --broker {broker}: {why}\n")
    talk.flush()
    return True
