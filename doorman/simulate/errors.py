"""Why a simulation could not start; the CLI prints the message on one line."""

from __future__ import annotations

from doorman.errors import DoormanError


class SetupError(DoormanError):
    """The machine is not ready (redis-server missing, port taken): the user must act. Exit 2."""

    exit_code = 2


class StartupFailed(DoormanError):
    """Something we started died on its way up (a worker, redis-server). Exit 1."""

    exit_code = 1
