from __future__ import annotations

import pytest

from tests.support.receiver import Receiver
from tests.support.redis import RedisServer
from tests.support.tls import tls_files  # noqa: F401 - a fixture (module-scoped) for the TLS tests
from tests.support.workers import Worker

SOAKS = ("test_chaos.py", "test_chaos_rabbitmq.py")  # the five-minute chaos soaks: Redis, RabbitMQ


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: a deselected soak is never started
def pytest_collection_modifyitems(session, config, items):  # noqa: ARG001
    """The five-minute chaos soaks mostly wait: they run beside the rest of the suite and beside each
    other (started here, each on its own thread and processes) and their tests, placed last, collect
    the outcomes."""
    chaos = [i for i in items if i.path.name in SOAKS]
    if not chaos or config.option.collectonly:
        return
    items[:] = [i for i in items if i.path.name not in SOAKS] + chaos
    for module in {id(i.module): i.module for i in chaos}.values():
        module.BACKGROUND.start()  # the module object pytest imported, not another copy


def _starts_servers(request, what: str) -> None:
    """Unmarked tests are `make test-fast`, which starts no server beyond the session's one
    redis-server: a test that starts more says so with the `e2e` marker (pyproject.toml)."""
    if not any(request.node.get_closest_marker(m) for m in ("e2e", "soak")):
        pytest.fail(f"{request.node.nodeid} starts {what}: mark it `@pytest.mark.e2e` "
                    "(or `pytestmark = pytest.mark.e2e` for the module)", pytrace=False)


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001
    """A session that ends without a soak's test (`-x`, Ctrl-C) tears that soak down."""
    modules = {id(i.module): i.module for i in getattr(session, "items", ()) if i.path.name in SOAKS}
    for module in modules.values():
        module.BACKGROUND.call_off()


@pytest.fixture(autouse=True)
def _own_cache_dir(tmp_path, monkeypatch):
    """doorman-collect keeps a discovery cache (docs/discovery.md): each test gets its own, so one
    test's scan never leaks into another's, and nothing lands in the real ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="session")
def shared_redis():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def receiver():
    """A real HTTP receiver on 127.0.0.1, closed after the test."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def session():
    """A requests session for the sinks under test, closed after the test."""
    import requests

    with requests.Session() as s:
        yield s


@pytest.fixture
def redis_server(shared_redis):
    """A clean database on the session's redis-server."""
    shared_redis.client().flushall()
    return shared_redis


@pytest.fixture
def make_redis(request):
    """Start redis-servers only this test uses: `make_redis(password=..., extra=[...])`; all are
    removed after the test. Only e2e tests may."""
    started: list[RedisServer] = []

    def start(**kw) -> RedisServer:
        _starts_servers(request, "a redis-server of its own")
        server = RedisServer(**kw)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.cleanup()


@pytest.fixture
def own_redis(make_redis):
    """A redis-server only this test uses, so it may kill and restart it."""
    return make_redis()


@pytest.fixture
def workers(request):
    """Start real Celery workers: `workers(url, "w1@test")`; all are stopped after the test. Only
    e2e tests may."""
    started: list[Worker] = []

    def start(url: str, name: str, client=None, prefix: str = "", **kw) -> Worker:
        _starts_servers(request, "Celery workers")
        w = Worker(url, name, **kw)
        started.append(w)
        if client is not None:
            w.wait_ready(client, prefix=prefix)
        return w

    yield start
    for w in started:
        w.kill9()
