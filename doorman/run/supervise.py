"""doorman-run's supervisor: `doorman-collect | doorman-analyze | doorman-notify` as one process
that systemd, Docker or Kubernetes can watch (docs/run.md).

The stages are joined by OS pipes as `|` joins them (`doorman.run.chain`); signals reach this
process through `doorman.process`'s wakeup pipe, never as work done inside a handler, and a stage
is only ever signalled after its `exec` (no TERM lost between fork and exec, no reused pid: a
child is never reaped behind our back). It restarts nothing itself, except on SIGHUP (reload).
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from doorman.errors import BadConfig, DoormanError
from doorman.process import SignalPipe, command, exit_status, signals_to_pipe
from doorman.run.chain import Chain, Stage
from doorman.run.streams import CAP_EVERY, DEFAULT_MAX_BYTES, StreamFile, open_streams

HELP = """\
doorman-run: the Doorman daemon as one command (for systemd, Docker, Kubernetes):

    doorman-collect [--interval S] | doorman-analyze --state FILE | doorman-notify

- pipefail behaviour: the exit status is the last failing stage's (0 if all three exit 0);
- when any stage ends, the others are wound down (collect gets SIGTERM, the rest drain and
  exit), so the supervisor sees the failure at once and restarts the whole chain;
- SIGTERM/SIGINT are passed to doorman-collect, which finishes the check in hand; analyze and
  notify then deliver what they hold and exit (it works as PID 1 in a container);
- SIGHUP reloads: the configuration is checked first (a bad one is refused with one line and
  the pipeline goes on), then the stages are stopped in pipeline order, draining, and started
  again (the state and the spool carry every alert across);
- it restarts nothing else itself: that is systemd's (Restart=always) or Kubernetes' job.

Settings (environment; everything else is read by the commands themselves: REDIS_URL,
DOORMAN_CONFIG, SLACK_WEBHOOK_URL, CHECK_INTERVAL, ... see docs/run.md):
  DOORMAN_STATE_DIR where state.json (analyze's cooldowns) and spool.ndjson (notify's undelivered
                    alerts) live: default $STATE_DIRECTORY (systemd's StateDirectory=), else
                    ${XDG_STATE_HOME:-$HOME/.local/state}/celery-doorman
  DOORMAN_STATE     the state file itself (default $DOORMAN_STATE_DIR/state.json)
  DOORMAN_SPOOL     the spool file (default $DOORMAN_STATE_DIR/spool.ndjson; beats a config file's
                    spool_path, as any environment setting does)
  DOORMAN_INTERVAL  seconds between checks (default: the config's check_interval, 30)
  DOORMAN_COUNT     stop after this many checks (smoke tests)
  DOORMAN_DRY_RUN   1 = doorman-notify --dry-run (print what would be sent, send nothing)
  DOORMAN_DRAIN_SECONDS  after collect ends, analyze and notify get this long (default 60) to
                    finish what they hold before they are stopped
  DOORMAN_STREAMS_DIR   when set, the snapshots and alerts passing between the stages are also
                    appended to snapshots.ndjson and alerts.ndjson there (a 0700 directory of
                    ours, 0600 files, never through a link), for doorman-serve to follow beside
                    the pipeline (never in it: see docs/serve.md)
  DOORMAN_STREAMS_MAX_BYTES  such a file is truncated when it grows past this (default 64 MiB)
Exit status: 0 after SIGTERM/SIGINT (an alert still in the spool waits for the next start), else
the failing stage's status; 2 on bad configuration, an unsafe streams directory, or arguments.
"""

COLLECT, ANALYZE, NOTIFY = "doorman-collect", "doorman-analyze", "doorman-notify"
ORDER = (COLLECT, ANALYZE, NOTIFY)
STOP = (signal.SIGTERM, signal.SIGINT)
WATCHED = (*STOP, signal.SIGHUP, signal.SIGCHLD)


@dataclass(frozen=True)
class RunSettings:
    state_dir: str
    state: str
    spool: str
    interval: str | None
    count: str | None
    dry_run: bool
    drain_seconds: float
    streams_dir: str | None
    streams_max_bytes: int


def _number(env: Mapping[str, str], key: str, default: float, kind: type = float) -> float:
    text = env.get(key) or ""
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise BadConfig("environment", key, f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if value < 0:
        raise BadConfig("environment", key, "must not be negative")
    return value


def settings_from(env: Mapping[str, str]) -> RunSettings:
    """The settings of docs/run.md; an empty variable counts as unset, as in a shell's `${X:-…}`."""
    directory = env.get("DOORMAN_STATE_DIR") or ""
    if not directory:
        if env.get("STATE_DIRECTORY"):
            directory = env["STATE_DIRECTORY"].split(":")[0]
        else:
            base = env.get("XDG_STATE_HOME") or os.path.join(env.get("HOME") or ".", ".local", "state")
            directory = os.path.join(base, "celery-doorman")
    return RunSettings(
        state_dir=directory,
        state=env.get("DOORMAN_STATE") or os.path.join(directory, "state.json"),
        spool=env.get("DOORMAN_SPOOL") or os.path.join(directory, "spool.ndjson"),
        interval=env.get("DOORMAN_INTERVAL") or None,
        count=env.get("DOORMAN_COUNT") or None,
        dry_run=(env.get("DOORMAN_DRY_RUN") or "0") == "1",
        drain_seconds=_number(env, "DOORMAN_DRAIN_SECONDS", 60),
        streams_dir=env.get("DOORMAN_STREAMS_DIR") or None,
        streams_max_bytes=int(_number(env, "DOORMAN_STREAMS_MAX_BYTES", DEFAULT_MAX_BYTES, int)),
    )


def stages(s: RunSettings) -> list[Stage]:
    collect = [*command(COLLECT)]
    if s.interval:
        collect += ["--interval", s.interval]
    if s.count:
        collect += ["--count", s.count]
    return [Stage(COLLECT, collect),
            Stage(ANALYZE, [*command(ANALYZE), "--state", s.state]),
            Stage(NOTIFY, [*command(NOTIFY), *(["--dry-run"] if s.dry_run else [])])]


def make_state_dirs(s: RunSettings) -> None:
    """0700, as docs/run.md promises: the state and the spool hold alerts (and so the broker's data)."""
    old = os.umask(0o077)
    try:
        for d in (s.state_dir, os.path.dirname(s.state), os.path.dirname(s.spool)):
            if d:
                os.makedirs(d, mode=0o700, exist_ok=True)
    finally:
        os.umask(old)


MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a configuration file larger than this is not one


def check_config(env: Mapping[str, str]) -> None:
    """The configuration as the stages will load it (the same loader); `DoormanError` when bad."""
    from doorman.config.load import load_config

    load_config(None, env=env)


class Supervisor:
    def __init__(self, settings: RunSettings, env: Mapping[str, str], say: Callable[[str], None],
                 streams: tuple[StreamFile, StreamFile] | None = None,
                 check: Callable[[Mapping[str, str]], None] = check_config):
        self.settings, self.say, self.streams, self.check = settings, say, streams, check
        self.env = {**env, "DOORMAN_SPOOL": settings.spool}
        self.source_config = env.get("DOORMAN_CONFIG") or None  # the user's file (reloads copy it)
        self.stopping = False  # a stop signal came: a stage's "stopped" status is no failure
        self.reload = False
        self.next_cap = time.monotonic() + CAP_EVERY
        self.signals: SignalPipe | None = None

    def run(self) -> int:
        with signals_to_pipe(WATCHED) as self.signals:
            chain = self.start()
            while True:
                self.watch(chain)
                if self.reload and not self.stopping:
                    self.reload = False
                    if not self.config_ok():
                        continue
                    self.say("SIGHUP: configuration checked; restarting the stages (collect first, the others drain)")
                    status = self.wind_down(chain, reloading=True)
                    if status or self.stopping:
                        return status
                    chain = self.start()
                    continue
                return self.wind_down(chain)

    def start(self) -> Chain:
        taps = (self.streams[0], self.streams[1]) if self.streams else ()
        return Chain(stages(self.settings), self.env, taps=taps).start()

    def config_ok(self) -> bool:
        """Check the configuration file as it is now, then hand the stages that very content: a
        copy (0600, in the state directory) that an edit made while they start cannot change."""
        user = {**self.env, "DOORMAN_CONFIG": self.source_config} if self.source_config else self.env
        try:
            self.check(user)
            self.freeze()
        except DoormanError as e:
            self.say(f"SIGHUP: reload refused, the running pipeline goes on: {e}")
            return False
        return True

    def freeze(self) -> None:
        source = self.source_config
        if not source:
            return
        from doorman.atomicfile import write_atomic
        from doorman.errors import BadConfig

        try:
            with open(source, "rb") as f:
                data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as e:
            raise BadConfig(source, "", f"cannot read config file ({e.strerror})") from None
        if len(data) > MAX_CONFIG_BYTES:
            raise BadConfig(source, "", f"larger than {MAX_CONFIG_BYTES} bytes")
        frozen = os.path.join(self.settings.state_dir, "reloaded-config.yaml")
        try:
            write_atomic(frozen, data)
        except OSError as e:
            raise BadConfig(source, "", f"cannot keep the checked copy {frozen} ({e.strerror})") from None
        try:
            self.check({**self.env, "DOORMAN_CONFIG": frozen})  # the bytes the stages will read
        except DoormanError as e:
            raise BadConfig(source, "", f"changed while it was checked ({str(e).replace(frozen, source)})") from None
        self.env["DOORMAN_CONFIG"] = frozen

    def _pause(self, seconds: float) -> None:
        """Wait up to `seconds` for a signal; note what came; keep the streams under their cap."""
        assert self.signals is not None
        now = time.monotonic()
        timeout = max(0.0, min(seconds, self.next_cap - now))
        try:
            select.select([self.signals.fileno()], [], [], timeout)
        except InterruptedError:
            pass
        for signum in self.signals.take():
            if signum in STOP:
                self.stopping = True
            elif signum == signal.SIGHUP:
                self.reload = True
        if time.monotonic() >= self.next_cap:
            self.next_cap = time.monotonic() + CAP_EVERY
            for f in self.streams or ():
                f.cap()

    def watch(self, chain: Chain) -> None:
        """Until a stage ends or a signal asks us to stop or reload."""
        while not (self.stopping or self.reload) and all(c is None for c in chain.codes().values()):
            self._pause(1.0)

    def _term(self, chain: Chain, name: str) -> None:
        p = chain.procs[name]
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wind_down(self, chain: Chain, reloading: bool = False) -> int:
        """collect gets SIGTERM; analyze and notify drain (at most DOORMAN_DRAIN_SECONDS, then
        SIGTERM); the exit status by docs/run.md's rules."""
        collect = chain.procs[COLLECT]
        self._term(chain, COLLECT)
        # TERM again every second until collect is gone (as the shell supervisor did: a TERM can be
        # lost to a race in the child), and KILL it past DOORMAN_DRAIN_SECONDS: collect holds no
        # state, and a reload or a stop must never wait forever on it
        again = time.monotonic() + 1.0
        kill_at = time.monotonic() + self.settings.drain_seconds
        while collect.poll() is None:
            self._pause(0.25)
            now = time.monotonic()
            if now >= kill_at:
                self.say("doorman-collect did not stop within DOORMAN_DRAIN_SECONDS: killed")
                collect.kill()
                collect.wait()
            elif now >= again:
                again = now + 1.0
                self._term(chain, COLLECT)
        deadline = time.monotonic() + self.settings.drain_seconds
        termed = False
        while any(chain.procs[n].poll() is None for n in (ANALYZE, NOTIFY)):
            left = deadline - time.monotonic()
            if left <= 0 and not termed:
                termed = True
                self._term(chain, ANALYZE)
                self._term(chain, NOTIFY)
            self._pause(min(0.5, left) if left > 0 else 0.5)
        chain.join(5)
        stopped = self.stopping or reloading
        status = 0
        for name in ORDER:
            rc = exit_status(chain.procs[name].returncode)
            if stopped and name == COLLECT and rc == 128 + signal.SIGTERM:
                rc = 0  # ended by our TERM before it could catch it: that is a stop
            if stopped and name == NOTIFY and rc == 1:
                rc = 0  # an alert waits in the spool (notify named it): kept for the next start
            if rc:
                self.say(f"{name} exited with status {rc}")
                status = rc
        return status


def supervise(env: Mapping[str, str], say: Callable[[str], None]) -> int:
    """Prepare the directories, run the pipeline until it ends; the exit status."""
    from doorman.errors import UnsafePath

    settings = settings_from(env)
    try:
        make_state_dirs(settings)
    except OSError as e:
        say(f"error: cannot create the state directory {settings.state_dir}: {e.strerror}")
        return 1
    streams = None
    if settings.streams_dir:
        try:
            streams = open_streams(settings.streams_dir, settings.streams_max_bytes, say)
        except UnsafePath as e:
            say(f"error: DOORMAN_STREAMS_DIR: {e}")
            return 2
        except OSError as e:
            say(f"error: DOORMAN_STREAMS_DIR: {settings.streams_dir}: {e.strerror}")
            return 1
    try:
        return Supervisor(settings, env, say, streams).run()
    finally:
        for f in streams or ():
            f.close()
