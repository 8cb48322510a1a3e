"""Reading liveness on a real broker: the workers' consumer connections, and one short
collect | analyze run."""

from __future__ import annotations

from tests.support.process import cli, records


def consumer_ids(client) -> set[str]:
    return {c["id"] for c in client.client_list() if c["cmd"] == "brpop" and c["name"] != "celery-doorman"}


def collect_analyze(url: str, *, count: int = 4, interval: float = 1.0, **env: str) -> tuple[list, list, bytes]:
    """`doorman-collect --interval I --count N | doorman-analyze`: (snapshots, alerts, collect's stderr)."""
    collected = cli("doorman-collect", "--redis-url", url, "--interval", str(interval), "--count", str(count),
                    env=env)
    assert collected.returncode == 0, collected.stderr
    analyzed = cli("doorman-analyze", input=collected.stdout, env={"DOORMAN_CONFIG": "", **env})
    assert analyzed.returncode == 0, analyzed.stderr
    return records(collected.stdout), records(analyzed.stdout), collected.stderr
