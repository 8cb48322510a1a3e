"""Options and error handling shared by all four commands, spelled once."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from doorman.config.load import load_config
from doorman.config.settings import Config
from doorman.errors import DoormanError
from doorman.ndjson import quiet_pipe, warn

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def package_version() -> str:
    """The installed distribution's version (what a bug report should quote); a checkout that was
    never installed says so rather than guess."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("celery-doorman")
    except PackageNotFoundError:
        from doorman import __version__

        return f"{__version__} (not installed)"


def version_option(prog: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--version`: `PROG X.Y.Z` on stdout, exit 0. The metadata is read only when asked (it scans
    sys.path: no cost to a normal start)."""

    def show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if not value or ctx.resilient_parsing:
            return
        click.echo(f"{prog} {package_version()}")
        ctx.exit()

    return click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=show,
                        help="Print the version and exit.")


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config", "config_path", metavar="FILE", envvar="DOORMAN_CONFIG",
        help="YAML config file (default: $DOORMAN_CONFIG). Flags beat environment beats file.",
    )(fn)


def setting_help(key: str) -> str:
    """An option's help, from the key's declaration: its doc, default and environment variables."""
    from doorman.config.schema import setting

    s = setting(key)
    env = ", ".join(f"${v}" for v in s.env)
    default = f"default {s.default}" if s.default not in (None, "", [], ()) else ""
    extra = "; ".join(x for x in (default, env) if x)
    return f"{s.doc} ({extra})" if extra else s.doc


def redis_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    # --broker-url, and --redis-url as before: both set `broker_url` (the function's `redis_url`)
    return click.option("--broker-url", "--redis-url", "redis_url", metavar="URL", help=setting_help("broker_url"))(fn)


def state_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--state", "state_path", metavar="FILE", help="State file (cooldowns, first-seen times).")(fn)


FLAG_NAMES = {"check_interval": "--interval", "broker_url": "--broker-url"}  # config keys whose flag is spelled differently


def load(prog: str, path: str | None, **overrides: Any) -> Config:
    """Load the config or end the program with one line naming file and key, exit 2."""
    try:
        cfg = load_config(path, overrides=overrides, flag_names=FLAG_NAMES)
    except DoormanError as e:
        warn(prog, f"error: {e}")
        sys.exit(e.exit_code)
    for note in cfg.notes:
        warn(prog, note)
    return cfg


def command_body(prog: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run a command's body: quiet on a closed pipe, one line (never a traceback) on our errors."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        @quiet_pipe
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except DoormanError as e:
                warn(prog, f"error: {e}")
                sys.exit(e.exit_code)

        return wrapper

    return deco
