"""One config schema: the loader, config.example.yaml, docs/configuration.md and --help agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from doorman import plugins
from doorman.config import docgen
from doorman.config.load import load_config, make_config
from doorman.config.schema import all_settings, owners, schema, setting
from doorman.config.settings import TOP
from doorman.errors import BadConfig

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_generated_files_are_up_to_date():
    """Edit a Setting, then run `python -m doorman.config.docgen`: this fails until you do."""
    assert (ROOT / "config.example.yaml").read_text() == docgen.example_yaml()
    assert (ROOT / "docs" / "configuration.md").read_text() == docgen.table_md()


def test_the_example_config_is_the_defaults_and_names_every_key():
    assert load_config(str(ROOT / "config.example.yaml"), env={}) == make_config()
    text = (ROOT / "config.example.yaml").read_text()
    table = (ROOT / "docs" / "configuration.md").read_text()
    for s in all_settings(builtin_only=True):
        assert f"{s.name}:" in text, s.path
        assert f"| `{s.path}` |" in table, s.path
        for var in s.env:
            assert var in text and var in table


def test_every_key_is_declared_once_by_its_owner():
    who = owners(builtin_only=True)
    assert who["broker_url"] == "doorman"
    assert who["slack_webhook_url"] == "sink slack"
    assert who["thresholds.max_wait_time_seconds"] == "rule latency"
    assert who["broker_transport_options.sep"] == "broker redis"
    env = [var for s in all_settings(builtin_only=True) for var in s.env]
    assert len(env) == len(set(env)), "an environment variable names two keys"


def test_every_loaded_value_comes_from_a_declared_key():
    cfg = make_config()
    assert sorted(k for k in cfg if k not in ("notes", "secret_values")) == sorted(schema()[TOP])
    assert sorted(cfg.thresholds) == sorted(schema()["thresholds"])


@pytest.mark.parametrize("values, key, problem", [
    ({"thresholds": {"max_queue_sise": 5}}, "thresholds.max_queue_sise", "did you mean 'max_queue_size'"),
    ({"max_queue_size": 5}, "max_queue_size", "did you mean 'thresholds.max_queue_size'"),
    ({"slack_min_severity": "loud"}, "slack_min_severity", "must be one of info, warning"),
    ({"broker_transport_options": {"priority_steps": ["a"]}}, "broker_transport_options.priority_steps",
     "must be a list of integers"),
    ({"thresholds": {"queues": {"q": {"max_task_runtime_seconds": 3}}}},
     "thresholds.queues.q.max_task_runtime_seconds", "unknown key"),
    ({"redis_url": "kafka://h/"}, "redis_url", "unsupported scheme 'kafka'"),
    ({"redis_url": "redis://a/0", "broker_url": "redis://b/0"}, "broker_url", "give only one of them"),
    ({"beat": {"redis_url": "amqp://h/"}}, "beat.redis_url", "must be a Redis URL"),
])
def test_a_bad_value_names_its_key(values, key, problem):
    with pytest.raises(BadConfig) as e:
        make_config(**values)
    assert e.value.key == key and problem in e.value.problem


def test_secrets_come_from_the_keys_declared_secret():
    cfg = make_config(redis_url="redis://:hunter2@h:6379/0", pagerduty_routing_key="R0UTINGKEY0123456789",
                      slack_webhook_url="https://hooks.slack.com/services/T1/B2/SEKRIT",
                      beat={"redis_url": "redis://:beatpass@b:6379/1"})  # a section's secret too
    assert {"hunter2", "R0UTINGKEY0123456789", "/services/T1/B2/SEKRIT", "beatpass"} <= set(cfg.secrets())
    assert all(s.secret for s in (setting("broker_url"), setting("slack_webhook_url"),
                                  setting("pagerduty_routing_key")))


def test_help_is_made_from_the_schema():
    out = subprocess.run([str(BIN / "doorman-collect"), "--help"], capture_output=True, text=True,
                         check=True).stdout
    words = " ".join(out.split())
    for key in ("broker_url", "check_interval", "cluster"):
        s = setting(key)
        assert " ".join(s.doc.split()[:5]) in words, key
        assert s.env[0] in words, key


def test_plugins_are_listed_once_each():
    for group in plugins.GROUPS:
        names = [p.name for p in plugins.load(group)]
        assert len(names) == len(set(names)) and names


def test_the_readme_alert_table_lists_every_alert_type_with_its_severities():
    import re

    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| `(\w+)` \| ([^|]+) \|", line)
        if m:
            rows[m.group(1)] = set(re.findall(r"info|warning|critical|emergency", m.group(2)))
    declared = {t.name: set(t.severities) for r in plugins.builtins("doorman.rules") for t in r.alert_types}
    assert rows == declared
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
