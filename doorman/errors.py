"""Errors the CLIs turn into one line on stderr and a meaningful exit code."""


class DoormanError(Exception):
    """Base of every error Doorman reports to a user."""

    exit_code = 1


class BadConfig(DoormanError):
    """A configuration value is missing, unknown, malformed or of the wrong type."""

    exit_code = 2

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


class UnsafePath(DoormanError, OSError):
    """A state, spool or lock path another user could redirect or forge: refused, never written.

    Also an `OSError`, so code that survives an unwritable file treats it the same way."""

    def __init__(self, path: str, problem: str):
        import errno

        OSError.__init__(self, errno.EPERM, f"{path}: {problem}")

    def __str__(self) -> str:
        return str(self.strerror)


class StateLocked(DoormanError):
    """Another process holds the state file."""


class StateUnavailable(DoormanError):
    """The state file's directory is missing and cannot be created: without a state every cron run
    would alert again, so the run stops instead of going on without one."""


class SetupError(DoormanError):
    """doorman-simulate: the machine is not ready (redis-server missing, port taken); the user must act."""

    exit_code = 2


class StartupFailed(DoormanError):
    """doorman-simulate: something it started died on its way up (a worker, redis-server)."""

    exit_code = 1
