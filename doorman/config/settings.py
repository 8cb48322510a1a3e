"""Configuration keys and the values they take, as plain data.

A `Setting` is declared once, by the module that reads it: the core keys in `doorman.config.schema`, a
rule's thresholds in the rule's module, a destination's URL and minimum severity in the sink's
module, kombu's transport options in the broker's module. The loader, `config.example.yaml`,
`docs/configuration.md` and the commands' `--help` are all made from these declarations.

`Config` and `Section` hold loaded values behind attribute access (`cfg.cluster`,
`cfg.thresholds.max_queue_size`), so the code that reads a key does not care who declared it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

TOP = ""
THRESHOLDS = "thresholds"
TRANSPORT = "broker_transport_options"
TYPES = ("str", "int", "float", "bool", "list", "map", "broker_url", "webhook", "severity")


@dataclass(frozen=True)
class Setting:
    """One key. `secret`: its value (or, for a URL, its credentials) is scrubbed from every output."""

    name: str
    type: str
    default: Any = None
    env: tuple[str, ...] = ()
    doc: str = ""
    section: str = TOP
    secret: bool = False
    positive: bool = False  # 0 is refused: a busy loop, no timeout at all
    per_queue: bool = False  # may be overridden under thresholds.queues.<queue>
    aliases: tuple[str, ...] = ()  # older names still accepted in a file or as keyword values
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)  # the problem, or None
    convert: Callable[[Any], Any] | None = field(default=None, compare=False)  # after checks (lists: tuple)

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"setting {self.name}: unknown type {self.type!r}")
        if self.section and not self.section.isidentifier():
            raise ValueError(f"setting {self.name}: bad section name {self.section!r}")

    @property
    def path(self) -> str:
        """The key as a user writes it in YAML: `thresholds.max_queue_size`."""
        return f"{self.section}.{self.name}" if self.section else self.name


def queue_names(value: list[Any]) -> tuple[str, ...]:
    """A list of queue names as YAML may spell them (`- 123`), as strings."""
    return tuple(str(q) for q in value)


class Section:
    """Loaded values of one section, read as attributes. Unknown names are an AttributeError.

    The values are instance attributes, so reading one is a plain attribute lookup: rules read
    thresholds on every snapshot."""

    def __init__(self, values: Mapping[str, Any]):
        clash = [k for k in values if hasattr(type(self), k) or k == "_values"]
        if clash:
            raise ValueError(f"configuration keys {clash} clash with {type(self).__name__}'s methods")
        self.__dict__.update(values)
        self.__dict__["_values"] = dict(values)

    def __getattr__(self, name: str) -> Any:  # only reached for names that are not keys
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("configuration is read-only")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values == other.__dict__["_values"]

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({sorted(self._values)})"

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


class Thresholds(Section):
    def for_queue(self, queue: str, name: str) -> Any:
        """A per-queue override if there is one, else the global threshold."""
        return self._values["queues"].get(queue, {}).get(name, self._values[name])


class Config(Section):
    """The effective configuration of one command. `notes` are warnings for stderr."""

    thresholds: Thresholds
    broker_transport_options: Section
    notes: tuple[str, ...]
    secret_values: tuple[str, ...]
    clusters: tuple[Config, ...]  # `clusters:`: each cluster's effective config (doorman.config.clusters)

    def secrets(self) -> list[str]:
        """Every secret string this config holds, for `redact.Scrubber`."""
        return list(self.secret_values)

    def replace(self, **values: Any) -> Config:
        """A copy with some top-level values changed (already valid values: no checks)."""
        return Config({**self._values, **values})
