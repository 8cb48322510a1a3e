"""Destinations for alerts: one small class per module, behind the protocols of `doorman.sinks.base`.

A sink turns an alert into one request and makes one attempt to send it; retries, pacing, bursts
and the spool belong to `doorman.notify`. Adding a destination = a class with `name`, `settings`,
`enabled_by`, `from_config` and `send`, listed in `doorman.plugins.BUILTIN` or published under
the `doorman.sinks` entry-point group by another package. Delivery order is registry order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from doorman import plugins
from doorman.sinks.base import (
    Alert,
    Previewing,
    Result,
    Sink,
    SinkClass,
    SinkContext,
    Summarizing,
    preview,
    switch_setting,
    wants,
)
from doorman.sinks.http import HttpSink, Request, UrlSink, retry_after_seconds

if TYPE_CHECKING:
    from doorman.config.settings import Config

__all__ = ["Alert", "HttpSink", "Previewing", "Request", "Result", "Sink", "SinkClass", "SinkContext",
           "Summarizing", "UrlSink", "build_sinks", "no_destination", "preview", "retry_after_seconds",
           "wants"]


def build_sinks(cfg: Config, ctx: SinkContext) -> list[Sink]:
    """The configured destinations, in delivery order. `ctx.placeholder`: every sink, for `--dry-run`."""
    out = []
    for plugin in plugins.sinks():
        make = getattr(plugin, "from_config", None)
        if not callable(make):  # an incomplete plugin: left out before any alert, never mid-run
            plugins._warn(f"destination {getattr(plugin, 'name', plugin)!r} left out: it has no from_config")
            continue
        sink = make(cfg, ctx)
        if sink is None:
            continue
        missing = [a for a in ("name", "send") if not getattr(sink, a, None)]
        if missing or not callable(sink.send):
            plugins._warn(f"destination {getattr(plugin, 'name', plugin)!r} left out: its sink has no "
                          f"{' or '.join(missing) or 'callable send'}")
            continue
        for attr, default in (("min_severity", "info"), ("min_interval", 0.0)):
            if not hasattr(sink, attr):
                setattr(sink, attr, default)
        out.append(sink)
    return out


def no_destination() -> str:
    """Why nothing is delivered, naming what turns each destination on (env var, else config key)."""
    names = []
    for plugin in plugins.sinks():
        s = switch_setting(plugin)
        if s is not None:
            names.append(s.env[0] if s.env else s.path)
    if not names:
        return "no destination configured"
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"no destination configured (set {listed}, or the matching keys in the config file)"
