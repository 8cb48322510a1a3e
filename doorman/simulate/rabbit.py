"""The simulation's RabbitMQ: a throw-away vhost on the RabbitMQ already running on the port, or,
when none answers there, a private rabbitmq-server node started for the run. Either way nothing
is left behind: the vhost (with every queue in it) is deleted, the private node stopped.

The vhost is made through the management API (guest on 127.0.0.1:15672) or, without it, with
`rabbitmqctl` (which needs the Erlang cookie, i.e. root or the rabbitmq user).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from doorman.errors import SetupError, StartupFailed
from doorman.simulate.partition import Partition
from doorman.simulate.procs import kill_group, log_tail, spawn, threads_ignore_stop_signals
from doorman.simulate.stopping import pause

INSTALL_HINT = ("rabbitmq-server is not installed: install it with `sudo apt-get install rabbitmq-server` "
                "(or `make install` in a checkout)")
ADMIN = ("guest", "guest")


def _answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RabbitVhost:
    """`url`, `env` (for every stage), `start()`, `listening(names)`, `stop()`: what the simulation needs."""

    def __init__(self, port: int, workdir: Path):
        self.port, self.workdir = port, workdir
        self.vhost = f"doorman-simulate-{uuid.uuid4().hex[:8]}"
        self.node: str | None = None  # the private node's name, when we started one
        self.mgmt_port = 15672
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "rabbitmq.log"
        self.created = False
        self.base: Path | None = None  # the private node's data, when we started one
        self.relay: Partition | None = None  # Doorman's way to the broker, cut first by `stop()`

    def _url(self, port: int) -> str:
        return f"amqp://guest:guest@127.0.0.1:{port}/{quote(self.vhost, safe='')}"

    @property
    def url(self) -> str:
        return self._url(self.port)

    @property
    def monitor_url(self) -> str:
        """Where the pipeline reaches AMQP: through a relay of ours, so that the broker can vanish for
        it at once (`stop()`); the workers and the management API are reached directly."""
        return self._url(self.relay.port if self.relay else self.port)

    @property
    def env(self) -> dict[str, str]:
        return {"DOORMAN_RABBITMQ_MANAGEMENT_URL": f"http://127.0.0.1:{self.mgmt_port}"}

    @property
    def where(self) -> str:
        own = f"a private rabbitmq-server (pid {self.proc.pid})" if self.proc else "the local RabbitMQ"
        return f"vhost {self.vhost} on {own} at 127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.created

    def start(self, timeout: float = 90) -> RabbitVhost:
        if not _answers(self.port):
            self._start_node(timeout)
        self._add_vhost()
        with threads_ignore_stop_signals():  # its threads leave SIGINT/SIGTERM to the main thread (scenarios
            # without stop_on_signals: KeyboardInterrupt there at once)
            self.relay = Partition("127.0.0.1", self.port)
        return self

    # ------------------------------------------------------------ vhost

    def _ctl(self, *args: str) -> subprocess.CompletedProcess:
        ctl = shutil.which("rabbitmqctl")
        if not ctl:
            raise SetupError(INSTALL_HINT)
        node = ["-n", self.node] if self.node else []
        return subprocess.run([ctl, "-q", *node, *args], capture_output=True, text=True, timeout=60)

    def _api(self, method: str, path: str, body: dict | None = None) -> bool:
        import requests

        try:
            r = requests.request(method, f"http://127.0.0.1:{self.mgmt_port}{path}", auth=ADMIN, json=body,
                                 timeout=10)
        except requests.RequestException:
            return False
        return r.status_code in (200, 201, 204)

    def _add_vhost(self) -> None:
        path = quote(self.vhost, safe="")
        perms = {"configure": ".*", "write": ".*", "read": ".*"}
        if self._api("PUT", f"/api/vhosts/{path}") and self._api("PUT", f"/api/permissions/{path}/guest", perms):
            self.created = True
            return
        made = self._ctl("add_vhost", self.vhost)
        if made.returncode != 0:
            raise SetupError(f"cannot create the vhost {self.vhost} on 127.0.0.1:{self.port}: neither the "
                             f"management API (guest) nor rabbitmqctl could ({made.stderr.strip()[:300]})")
        self.created = True
        self._ctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    def listening(self, names: list[str]) -> bool:
        """Whether every worker of `names` consumes its pidbox queue (so it answers broadcasts)."""
        import amqp

        conn = amqp.Connection(f"127.0.0.1:{self.port}", userid="guest", password="guest", virtual_host=self.vhost,
                               connect_timeout=5)
        try:
            conn.connect()
            for n in names:
                ch = conn.channel()
                try:
                    _q, _ready, consumers = ch.queue_declare(queue=f"{n}.celery.pidbox", passive=True)
                    ch.close()
                    if not consumers:  # not exclusive (an older Celery): declared, not consumed yet
                        return False
                except amqp.exceptions.ResourceLocked:
                    pass  # exclusive to the live worker (Celery 5.5+): it listens
                except amqp.exceptions.NotFound:
                    return False
            return True
        finally:
            conn.collect()

    def settle(self, published: int, timeout: float = 10) -> None:
        """Wait until the management API counts the messages just published: its figures trail the
        queues by RabbitMQ's statistics interval (5 s), and the first check should see them."""
        import requests

        if not published:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                rows = requests.get(f"http://127.0.0.1:{self.mgmt_port}/api/queues/{quote(self.vhost, safe='')}",
                                    params={"columns": "name,messages"}, auth=ADMIN, timeout=5).json()
                if sum(r.get("messages") or 0 for r in rows if isinstance(r, dict)) >= published:
                    return
            except (requests.RequestException, ValueError):
                return
            pause(0.25)

    def stop(self) -> None:
        """Delete the vhost (every queue, binding and connection in it), stop a private node. Doorman's
        relay is cut first: RabbitMQ deletes a vhost's queues, the workers' pidbox queues among them,
        before it closes the connections, and a check in between met a broker that answered with no
        worker in it (`celery_disconnected` before `redis_down`, for `--stop-redis-after`). Cut off
        first, Doorman sees what a broker's death looks like: its connections closed, new ones refused."""
        if self.relay:
            self.relay.close()
            self.relay = None
        if self.created:
            self.created = False
            path = quote(self.vhost, safe="")
            if not self._api("DELETE", f"/api/vhosts/{path}"):
                self._ctl("delete_vhost", self.vhost)
        if self.proc is not None:
            self._ctl("stop")
            kill_group(self.proc)
            self.proc = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    # ------------------------------------------------------------ a private node

    def _start_node(self, timeout: float) -> None:
        binary = shutil.which("rabbitmq-server")
        if not binary:
            raise SetupError(INSTALL_HINT)
        self.node = f"doorman-sim-{self.port}@localhost"
        self.mgmt_port = _free_port()
        # its own directory, outside the (0700) workdir: Debian's rabbitmq-server started as root
        # drops to the rabbitmq user, which must own it
        base = self.base = Path(tempfile.mkdtemp(prefix="doorman-simulate-rabbitmq-"))
        for sub in ("mnesia", "log"):
            (base / sub).mkdir(mode=0o700)
        (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nmanagement.tcp.ip = 127.0.0.1\n"
            f"management.tcp.port = {self.mgmt_port}\n")
        if os.geteuid() == 0:
            _give_to_rabbitmq(base)
        env = {**os.environ, "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_PORT": str(self.port),
               "RABBITMQ_DIST_PORT": str(_free_port()), "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
               "RABBITMQ_LOG_BASE": str(base / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
               "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"), "RABBITMQ_PID_FILE": str(base / "pid")}
        with open(self.log, "wb") as log:
            self.proc = spawn([binary], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              cwd=base)  # an Erlang crash dump lands there, removed with the workdir
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartupFailed(f"rabbitmq-server exited with {self.proc.returncode}: {log_tail(self.log, 400)}")
            if _answers(self.port) and self._api("GET", "/api/overview"):
                return
            pause(0.5)
        raise StartupFailed(f"rabbitmq-server on port {self.port} did not answer within {timeout:.0f}s: "
                            f"{log_tail(self.log, 400)}")


def _give_to_rabbitmq(base: Path) -> None:
    """chown -R rabbitmq: the user Debian's wrapper runs the node as (when it exists)."""
    import pwd

    try:
        who = pwd.getpwnam("rabbitmq")
    except KeyError:
        return
    for d, _dirs, files in os.walk(base):
        os.chown(d, who.pw_uid, who.pw_gid)
        for f in files:
            os.chown(os.path.join(d, f), who.pw_uid, who.pw_gid)
