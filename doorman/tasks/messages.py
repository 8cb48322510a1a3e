"""Exception messages of failed tasks, kept only when the user opts in (`task_exception_messages`).

A message can hold users' data, so by default only the exception's class is counted. When asked
for, each task's last failure is kept as Celery reported it (task-failed's `exception`, the
exception's repr), made safe to show: URL passwords and Doorman's own secrets masked, control
bytes escaped, `MAX_MESSAGE` characters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from doorman.config.settings import Setting
from doorman.redact import Scrubber, mask_url_passwords
from doorman.textsafe import printable

MAX_MESSAGE = 200  # characters of an exception message kept

SETTINGS: tuple[Setting, ...] = (
    Setting("task_exception_messages", "bool", False, ("DOORMAN_TASK_EXCEPTION_MESSAGES",),
            "Keep each task's last failure as Celery reported it (`tasks.by_name.<task>.last_exception`: "
            f"class and message, at most {MAX_MESSAGE} characters, control bytes escaped, URL passwords and "
            "Doorman's own secrets masked). Off by default: a message can hold users' data."),
)

Masker = Callable[[Any], str]


def masker(cfg: Any) -> Masker | None:
    """What turns a task-failed `exception` into a message fit to keep, or None when not asked for."""
    if not cfg.task_exception_messages:
        return None
    scrub = Scrubber(cfg.secrets())

    def message(exception: Any) -> str:
        text = exception if type(exception) is str else ""
        return printable(scrub(mask_url_passwords(text[: MAX_MESSAGE * 4])))[:MAX_MESSAGE]

    return message
