"""The sandbox command's arguments and key resolution (no server started)."""

from __future__ import annotations

import argparse

import pytest
from pydantic import SecretStr

from service.sandbox.cli import add_sandbox_command, resolve_credentials, run_sandbox
from service.settings import ApiSettings, ConfigError, Settings


def settings_with(access_key: str | None, secret_key: str | None) -> Settings:
    return Settings(
        api=ApiSettings(
            access_key=SecretStr(access_key) if access_key is not None else None,
            secret_key=SecretStr(secret_key) if secret_key is not None else None,
        )
    )


def test_flags_override_settings_and_fill_what_they_lack() -> None:
    assert resolve_credentials("AK-flag", "SK-flag", lambda: settings_with(None, None)).access_key == "AK-flag"
    mixed = resolve_credentials("AK-flag", None, lambda: settings_with("AK-env", "SK-env"))
    assert (mixed.access_key, mixed.secret_key) == ("AK-flag", "SK-env")
    from_env = resolve_credentials(None, None, lambda: settings_with("AK-env", "SK-env"))
    assert (from_env.access_key, from_env.secret_key) == ("AK-env", "SK-env")


def test_missing_keys_name_the_variables_and_flags() -> None:
    with pytest.raises(ConfigError) as missing:
        resolve_credentials(None, None, lambda: settings_with(None, ""))
    message = str(missing.value)
    for name in ("IMGSWEEP_API__ACCESS_KEY", "IMGSWEEP_API__SECRET_KEY", "--access-key", "--secret-key"):
        assert name in message


def test_an_invalid_environment_still_points_at_the_flags() -> None:
    def broken() -> Settings:
        raise ConfigError("invalid configuration:\n  IMGSWEEP_API__QPS: must be positive")

    with pytest.raises(ConfigError, match="--access-key"):
        resolve_credentials(None, None, broken)


def test_the_subcommand_registers_with_defaults() -> None:
    parser = argparse.ArgumentParser(prog="imgsweep")
    add_sandbox_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sandbox", "--port", "0", "--qps", "0", "--hang-then", "answer"])
    assert args.handler is run_sandbox
    assert (args.host, args.port, args.qps, args.quota, args.hang_seconds, args.hang_then) == (
        "127.0.0.1",
        0,
        0,
        100_000,
        60.0,
        "answer",
    )
