"""Issue 19, secrets and URLs: the review's low findings, each replayed against the real commands."""

from __future__ import annotations

import pytest

from doorman.redact import Scrubber
from tests.support.notify import alert, ndjson, notify_env, read_ndjson
from tests.support.process import cli, collect_with_config, free_port, records


def one_line_exit_2(p) -> str:
    err = p.stderr.decode()
    assert p.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_password_given_as_a_flag_is_warned_about_and_never_printed():
    """PoC: `--redis-url` puts the password in /proc/PID/cmdline, with no warning."""
    port = free_port()
    loud = cli("doorman-collect", "--once", "--redis-url", f"redis://:pw-FLAG-1@127.0.0.1:{port}/0")
    err = loud.stderr.decode()
    assert "puts a secret on the command line" in err and "REDIS_URL" in err
    assert "pw-FLAG-1" not in err + loud.stdout.decode()
    quiet = cli("doorman-collect", "--once", env={"REDIS_URL": f"redis://:pw-FLAG-1@127.0.0.1:{port}/0"})
    assert "command line" not in quiet.stderr.decode()
    no_secret = cli("doorman-collect", "--once", "--redis-url", f"redis://127.0.0.1:{port}/0")
    assert "command line" not in no_secret.stderr.decode()


@pytest.mark.slow
def test_percent_encoded_secrets_are_scrubbed(tmp_path):
    """PoC: a webhook path `SLACK SECRET|TOKEN` came out as `SLACK%20SECRET%7CTOKEN` in an error."""
    url = f"http://127.0.0.1:{free_port()}/services/SLACK SECRET|TOKEN"
    p = cli("doorman-notify", input=ndjson(alert(1)), env=notify_env(tmp_path, slack=url))
    spool = (tmp_path / "spool.ndjson").read_bytes().decode()
    assert read_ndjson(tmp_path / "spool.ndjson")  # it was kept, with its error
    everything = p.stdout.decode() + p.stderr.decode() + spool
    for form in ("SLACK SECRET|TOKEN", "SLACK%20SECRET%7CTOKEN", "SLACK%20SECRET%7ctoken", "SECRET%7C",
                 "SLACK+SECRET"):
        assert form.lower() not in everything.lower(), form


def test_scrubber_knows_every_encoding_of_a_secret():
    s = Scrubber(["SLACK SECRET|TOKEN", "p%40ss"])  # the second as a URL holds it: encoded
    text = "a SLACK%20SECRET%7CTOKEN b SLACK%20SECRET%7cTOKEN c SLACK+SECRET%7CTOKEN d p@ss e p%2540ss"
    assert s(text) == "a *** b *** c *** d *** e ***"


def test_webhook_host_is_the_one_urllib3_sends_to():
    """PoC: `http://192.0.2.2:8471\\@127.0.0.1/` passed the loopback check, but urllib3 posted in
    clear to 192.0.2.2."""
    p = cli("doorman-notify", "--dry-run", input=b"",
            env={"SLACK_WEBHOOK_URL": "http://192.0.2.2:8471\\@127.0.0.1/services/T/B/x", "DOORMAN_CONFIG": ""})
    err = one_line_exit_2(p)
    assert "SLACK_WEBHOOK_URL" in err and "192.0.2.2" not in err


@pytest.mark.slow
@pytest.mark.parametrize("option", ["ssl_cert_reqs=n%6Fne", "ssl_check_hostname=false", "ssl_cert_reqs=CERT_NONE",
                                    "ssl%5Fcert%5Freqs=optional", "ssl_check_hostname=No"])
def test_every_tls_weakening_option_is_warned_about(option):
    """PoC: `ssl_cert_reqs=n%6Fne` and `ssl_check_hostname=false` weakened TLS silently."""
    url = f"rediss://127.0.0.1:{free_port()}/0?{option}"
    p = cli("doorman-collect", "--once", env={"REDIS_URL": url})
    assert "warning: TLS certificate verification of the broker is weakened" in p.stderr.decode(), p.stderr


def test_an_option_name_redis_py_does_not_know_is_refused_not_ignored():
    """`SSL_CERT_REQS=none` is not an option redis-py knows (it would fail at connect): exit 2, and
    the one line names the option."""
    p = cli("doorman-collect", "--once", env={"REDIS_URL": f"rediss://127.0.0.1:{free_port()}/0?SSL_CERT_REQS=none"})
    assert p.returncode == 2 and "unknown URL option ?SSL_CERT_REQS=" in p.stderr.decode()


@pytest.mark.slow
@pytest.mark.parametrize("option", ["db=abc", "max_connections=-1", "socket_timeout=x", "nonsense=1"])
def test_bad_url_options_are_one_line_and_exit_2(option):
    """PoC: `?db=abc` and `?max_connections=-1` produced a traceback."""
    p = cli("doorman-collect", "--once", env={"REDIS_URL": f"redis://:pw-Q@127.0.0.1:{free_port()}/0?{option}"})
    err = one_line_exit_2(p)
    assert "REDIS_URL" in err and option.split("=")[0] in err and "pw-Q" not in err
    assert records(p.stdout) == []


@pytest.mark.slow
def test_world_writable_config_is_warned_about(tmp_path):
    """PoC: a world-writable config that holds secrets raised no warning."""
    cfg = tmp_path / "doorman.yaml"
    cfg.write_text(f"redis_url: redis://:pw-W@127.0.0.1:{free_port()}/0\n")
    loud = collect_with_config(cfg, 0o602)
    assert f"{cfg} is writable by every user".encode() in loud.stderr
    assert b"writable" not in collect_with_config(cfg, 0o600).stderr
