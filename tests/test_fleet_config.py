"""`clusters:`: each entry's effective config is the top level with its overrides, checked by the
same settings; a bad entry is one line naming `clusters[i].key` and the file, exit 2; secrets never
printed; a per-cluster threshold changes that cluster's alerts only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from doorman.analyze.engine import Engine
from doorman.config.load import load_config, make_config
from doorman.errors import BadConfig
from tests.support.process import cli
from tests.support.scenario import brief, feed, queue, snap

SECRET = "s3cr3t-pw"
A = f"redis://:{SECRET}@127.0.0.1:6390/0"
B = "amqp://doorman:other-pw@rabbit.example:5672/prod"


def test_each_cluster_is_the_top_level_with_its_overrides():
    cfg = make_config(check_interval=5, monitored_queues=["celery", "mail"],
                      thresholds={"max_queue_size": 100, "queues": {"mail": {"max_queue_size": 7}}},
                      clusters=[{"name": "eu-1", "broker_url": A, "thresholds": {"max_queue_size": 3}},
                                {"name": "us.1", "broker_url": B, "check_interval": 2,
                                 "thresholds": {"queues": {"mail": {"max_wait_time_seconds": 9}}}}])
    eu, us = cfg.clusters
    assert (eu.cluster, eu.broker_url, eu.check_interval, eu.thresholds.max_queue_size) == ("eu-1", A, 5.0, 3)
    assert (us.cluster, us.broker_url, us.check_interval, us.thresholds.max_queue_size) == ("us.1", B, 2.0, 100)
    assert us.thresholds.queues["mail"] == {"max_queue_size": 7, "max_wait_time_seconds": 9}
    assert eu.monitored_queues == us.monitored_queues == ("celery", "mail")
    assert SECRET in cfg.secrets() and "other-pw" in cfg.secrets() and "other-pw" in eu.secrets()
    assert make_config().clusters == ()


@pytest.mark.parametrize(("entry", "key", "problem"), [
    ({"name": "a", "broker_url": A, "thresholds": {"max_queue_size": -1}}, "clusters[1].thresholds.max_queue_size",
     "must be a finite number >= 0"),
    ({"name": "a", "broker_url": A, "check_interval": 0}, "clusters[1].check_interval", "greater than 0"),
    ({"name": "a", "broker_url": A, "slack_webhook_url": "https://hooks.slack.com/x"},
     "clusters[1].slack_webhook_url", "one per process"),
    ({"name": "a", "broker_url": A, "thresholds": {"max_queue_siz": 3}}, "clusters[1].thresholds.max_queue_siz",
     "unknown key"),
    ({"name": "a"}, "clusters[1].broker_url", "required"),
    ({"broker_url": A}, "clusters[1].name", "required"),
    ({"name": "prod", "broker_url": A}, "clusters[1].name", "names two clusters"),
    ({"name": "bad name\x1b[31m", "broker_url": A}, "clusters[1].name", "letters, digits"),
    ({"name": "x" * 65, "broker_url": A}, "clusters[1].name", "1 to 64"),
    ({"name": "a", "broker_url": A, "cluster": "b"}, "clusters[1].cluster", "not allowed"),
    ({"name": "a", "broker_url": f"redis://:{SECRET}@127.0.0.1:99999/0"}, "clusters[1].broker_url", "port"),
    ({"name": "a", "broker_url": f"mongodb://u:{SECRET}@h/"}, "clusters[1].broker_url", "unsupported scheme"),
    ({"name": "a", "broker_url": f"sentinel://:{SECRET}@h:26379"},
     "clusters[1].broker_transport_options.master_name", "required"),
])
def test_a_bad_entry_names_its_key(entry, key, problem):
    with pytest.raises(BadConfig) as e:
        make_config(clusters=[{"name": "prod", "broker_url": B}, entry])
    assert e.value.key == key and problem in e.value.problem, str(e.value)
    assert SECRET not in str(e.value)


def test_broker_url_and_cluster_come_from_the_entries_only():
    data = {"clusters": [{"name": "a", "broker_url": A}]}
    for env, where in (({"REDIS_URL": "redis://h:6379/0"}, "REDIS_URL"), ({"DOORMAN_CLUSTER": "x"}, "DOORMAN_CLUSTER")):
        with pytest.raises(BadConfig) as e:
            load_config(None, env=env, data=data)
        assert (e.value.source, e.value.key) == ("environment", where) and "clusters" in e.value.problem
    with pytest.raises(BadConfig) as e:
        load_config(None, env={}, data={**data, "broker_url": "redis://h:6379/0"})
    assert e.value.key == "broker_url"
    with pytest.raises(BadConfig) as e:
        load_config(None, env={}, data=data, overrides={"cluster": "x"})
    assert (e.value.source, e.value.key) == ("command line", "--cluster")
    with pytest.raises(BadConfig):
        make_config(clusters=[])


def test_one_discovery_cache_for_every_cluster_is_refused_one_per_entry_is_not():
    with pytest.raises(BadConfig) as e:
        load_config(None, env={}, data={"discovery_cache": "/tmp/x.json",
                                        "clusters": [{"name": "a", "broker_url": A}, {"name": "b", "broker_url": A}]})
    assert e.value.key == "discovery_cache" and "one file per broker" in e.value.problem
    cfg = load_config(None, env={}, data={"clusters": [{"name": "a", "broker_url": A, "discovery_cache": "/tmp/a.json"},
                                                       {"name": "b", "broker_url": A}]})
    assert [c.discovery_cache for c in cfg.clusters] == ["/tmp/a.json", None]


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "doorman.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("command", ["doorman-collect", "doorman-analyze"])
def test_a_bad_override_is_one_line_and_exit_2(tmp_path, command):
    path = write(tmp_path, {"clusters": [{"name": "a", "broker_url": A},
                                         {"name": "b", "broker_url": A, "thresholds": {"max_queue_size": "lots"}}]})
    p = cli(command, "--config", str(path), input=b"")
    err = p.stderr.decode()
    assert p.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{path}: clusters[1].thresholds.max_queue_size: must be a number" in err
    assert SECRET not in err and p.stdout == b""


def test_redis_url_flag_with_clusters_is_refused(tmp_path):
    path = write(tmp_path, {"clusters": [{"name": "a", "broker_url": A}]})
    p = cli("doorman-collect", "--once", "--config", str(path), "--redis-url", "redis://127.0.0.1:6390/0")
    err = p.stderr.decode()
    assert p.returncode == 2 and err.count("\n") == 1 and "--broker-url: not used with clusters:" in err, err


def test_a_cluster_threshold_changes_that_clusters_alerts_only():
    cfg = make_config(thresholds={"max_queue_size": 100},
                      clusters=[{"name": "small", "broker_url": A, "thresholds": {"max_queue_size": 10}},
                                {"name": "big", "broker_url": B}])
    e = Engine(cfg)
    busy = {"celery": queue(50)}
    out = feed(e, [snap(0, busy, cluster="small"), snap(0, busy, cluster="big"), snap(0, busy, cluster="other")])
    assert [(a["cluster"], *brief([a])[0]) for a in out] == [
        ("small", "backlog_explosion", "critical", "firing", "cluster")]
    assert out[0]["details"]["threshold"] == 10
