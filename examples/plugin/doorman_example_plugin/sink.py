"""example_file: appends every alert it receives, as one JSON line, to a file.

Setting `example_file_path` (environment `EXAMPLE_FILE_PATH`) is what turns it on, as a URL turns
on a built-in destination. One `send` is one attempt; doorman-notify retries a `retry` result,
spools what it could not deliver and writes the delivery records.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import orjson

from doorman.settings import Config, Setting
from doorman.sinks.base import Alert, Result, SinkContext


class ExampleFileSink:
    name = "example_file"
    enabled_by = "example_file_path"
    settings = (
        Setting("example_file_path", "str", None, ("EXAMPLE_FILE_PATH",),
                "File the example_file destination appends alerts to, one JSON line each."),
        Setting("example_file_min_severity", "severity", "info", ("EXAMPLE_FILE_MIN_SEVERITY",),
                "Lowest severity written to the example file."),
    )
    min_interval = 0.0

    def __init__(self, path: str, min_severity: str, placeholder: bool = False):
        self.path, self.min_severity, self.placeholder = path, min_severity, placeholder

    @classmethod
    def from_config(cls, cfg: Config, ctx: SinkContext) -> ExampleFileSink | None:
        """None when `example_file_path` is unset: the destination is off (unless --dry-run shows all)."""
        path = cfg.example_file_path
        if path:
            return cls(path, cfg.example_file_min_severity)
        return cls("/dev/null", cfg.example_file_min_severity, placeholder=True) if ctx.placeholder else None

    def send(self, alert: Alert) -> Result:
        """One attempt. A full disk may clear (retry, then the spool); anything else will not."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, orjson.dumps(alert) + b"\n")
            finally:
                os.close(fd)
        except OSError as e:
            error = f"cannot append to the example file ({e.strerror})"
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                return Result("retry", error=error)
            return Result("permanent", error=error)
        return Result("delivered")

    def preview(self, alert: Alert) -> dict[str, Any]:
        return {"url": None, "headers": {}, "payload": alert, "placeholder": self.placeholder}


SINK = ExampleFileSink
