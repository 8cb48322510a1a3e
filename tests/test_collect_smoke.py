import pytest

from tests.support.process import collect_once
from tests.support.workers import enqueue

pytestmark = pytest.mark.e2e


def test_once_counts_priority_lists_and_sees_the_worker(redis_server, workers):
    url = redis_server.url
    client = redis_server.client()
    w = workers(url, "w1@test", client=client, queues="busy")
    for pri in (0, 3, 6, 9):
        enqueue(url, 2, queue="celery", priority=pri)
    snap = collect_once(url)
    assert snap["queues"]["celery"]["pending"] == 8
    assert snap["queues"]["celery"]["by_priority"] == {"0": 2, "3": 2, "6": 2, "9": 2}
    assert snap["alive_workers"] == 1
    assert [x["name"] for x in snap["workers"]] == [w.name]
