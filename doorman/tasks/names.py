"""What the reader remembers of each task between its events, within a bound.

Only `task-sent` and `task-received` carry the task's name (and only `task-sent` its queue), so the
name of a `task-succeeded` is looked up by uuid here. The memory holds at most `task_name_memory`
tasks (100,000 by default: about 20 MiB); the oldest is forgotten first. A task is forgotten at its
outcome (succeeded, rejected, revoked; a failed one stays, since a `task-rejected` may follow it). An event whose task is not remembered is counted
under the name `(unknown)` (doorman.contract.tasks.UNKNOWN), never dropped.
"""

from __future__ import annotations

from collections import OrderedDict

from doorman.config.settings import Setting

DEFAULT_MEMORY = 100_000

SETTINGS: tuple[Setting, ...] = (
    Setting("task_name_memory", "int", DEFAULT_MEMORY, ("DOORMAN_TASK_NAME_MEMORY",),
            "Daemon mode: tasks whose name, queue and times the task-event reader remembers between a "
            "task's events (oldest forgotten first; an event of a forgotten task counts under "
            "`(unknown)`).", positive=True),
)

# the fields of one remembered task (a list: the hot path indexes it)
NAME, QUEUE, SENT, RECEIVED, RETRIED, ETA, STARTED = range(7)
Entry = list  # [name: str, queue: str | None, sent: float | None, received: float | None, retried: bool, eta: float | None,
#               started: (ts, row key) of a start seen before its task-sent, or None]


class TaskMemory:
    """uuid -> [name, queue, sent_ts, received_ts, retried, eta_ts], oldest forgotten first."""

    __slots__ = ("cap", "_tasks", "forgotten")

    def __init__(self, cap: int = DEFAULT_MEMORY):
        self.cap = max(1, cap)
        self._tasks: OrderedDict[str, Entry] = OrderedDict()
        self.forgotten = 0  # tasks dropped for room before their outcome

    def __len__(self) -> int:
        return len(self._tasks)

    def get(self, uuid: str) -> Entry | None:
        return self._tasks.get(uuid)

    def remember(self, uuid: str, name: str) -> Entry:
        """The entry of `uuid`, made (or renamed) with `name`."""
        entry = self._tasks.get(uuid)
        if entry is not None:
            entry[NAME] = name
            return entry
        entry = [name, None, None, None, False, None, None]
        self._tasks[uuid] = entry
        if len(self._tasks) > self.cap:
            self._tasks.popitem(last=False)
            self.forgotten += 1
        return entry

    def forget(self, uuid: str) -> Entry | None:
        return self._tasks.pop(uuid, None)
