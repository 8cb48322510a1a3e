"""What a destination (sink) is to doorman-notify: a name, a minimum severity, a pace and `send`.

A sink makes ONE attempt to deliver one alert and says how it went (`Result`); retries, pacing,
bursts, the spool and the delivery records belong to `doorman.notify`, so a sink stays a renderer
plus a send. Two capabilities are optional, detected with `isinstance` on these protocols:
`Previewing` (what `--dry-run` prints, secrets redacted by the sink, which alone knows them) and
`Summarizing` (a burst becomes a few summary messages instead of a flood).

The class itself is the plugin (`SinkClass`): it declares its config keys in `settings` and
builds itself from the loaded config with `from_config(cfg, ctx)`, or returns None when its keys
leave it off. Nothing here imports `requests`: every config load imports every sink module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from doorman.contract.alert import Alert
from doorman.contract.severity import rank as severity_rank

if TYPE_CHECKING:
    from doorman.config.settings import Config, Setting

Outcome = Literal["delivered", "retry", "permanent"]


@dataclass(frozen=True)
class Result:
    """One attempt's outcome: `delivered`, `retry` (transient) or `permanent` (do not retry).

    `retry_after` (seconds) is the receiver's own wish; longer than the retry budget, the alert
    waits in the spool until then."""

    outcome: Outcome
    http_status: int | None = None
    error: str | None = None  # already scrubbed of secrets: it is printed and spooled
    retry_after: float | None = None


@dataclass(frozen=True)
class SinkContext:
    """What doorman-notify hands every sink it builds, besides the config."""

    session: Any  # a `requests.Session` shared by all HTTP sinks (typed Any: requests is imported late)
    timeout: tuple[float, float]  # (connect, read) seconds for every HTTP call
    scrub: Callable[[str], str]  # removes every configured secret from a text
    placeholder: bool = False  # `--dry-run` with nothing configured: build with a made-up address


@runtime_checkable
class Sink(Protocol):
    """One configured destination."""

    name: str  # the `destination` of delivery records and spool entries
    min_severity: str  # alerts below it are `skipped` (resolutions are routed like their alert)
    min_interval: float  # seconds between two sends (Slack: 1); 0 = unpaced

    def send(self, alert: Alert) -> Result: ...


@runtime_checkable
class Previewing(Protocol):
    """`--dry-run`: the exact request `send` would make, secrets redacted; nothing is sent."""

    def preview(self, alert: Alert) -> dict[str, Any]: ...


@runtime_checkable
class Summarizing(Protocol):
    """A batch of more than `summary_over` alerts is sent as summaries of `summary_max` at most."""

    summary_over: int
    summary_max: int

    def summarize(self, alerts: Sequence[Alert]) -> Result: ...

    def preview_summary(self, alerts: Sequence[Alert]) -> dict[str, Any]: ...


class SinkClass(Protocol):
    """A sink plugin: the class (or any object) named by a `doorman.sinks` entry point.
    Read-only members, so plain class attributes (`settings = (Setting(...), ...)`) satisfy them."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> Sequence[Setting]:
        """Its config keys; `secret=True` keeps a value out of every output."""

    @property
    def enabled_by(self) -> str:
        """The key that turns it on (named in "no destination configured")."""

    def from_config(self, cfg: Config, ctx: SinkContext) -> Sink | None: ...


def wants(sink: Sink, alert: Alert) -> bool:
    """Routing: a destination takes alerts at or above its minimum severity (resolutions too)."""
    return severity_rank(alert.get("severity", "")) >= severity_rank(sink.min_severity)


NO_PREVIEW: dict[str, Any] = {"url": None, "headers": {}, "payload": None, "placeholder": False}


def preview(sink: Sink, group: Sequence[Alert]) -> dict[str, Any]:
    """What `--dry-run` shows for one message: one alert, or (`Summarizing`) a summary of several."""
    if len(group) > 1 and isinstance(sink, Summarizing):
        return sink.preview_summary(group)
    if isinstance(sink, Previewing):
        return sink.preview(group[0])
    return dict(NO_PREVIEW)


def switch_setting(plugin: SinkClass) -> Setting | None:
    """The setting that turns a sink on: `enabled_by`, else the first one it declares."""
    key = getattr(plugin, "enabled_by", None)
    for s in plugin.settings:
        if s.name == key:
            return s
    return plugin.settings[0] if plugin.settings else None
