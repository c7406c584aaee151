"""Where settings come from: environment variables with one prefix and ``__`` between nested names, and files
named the same way in a secrets directory (how a Kubernetes Secret is mounted); the environment wins.

Only names and pydantic-settings' wiring live here; reading the directory is ``loading``'s job.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import NestedSecretsSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["DEFAULT_SECRETS_DIR", "ENV_PREFIX", "SECRETS_DIR_ENV", "SETTINGS_CONFIG", "settings_sources"]

ENV_PREFIX = "IMGSWEEP_"
"""Of every variable: ``IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS`` is ``Settings.kafka.bootstrap_servers``."""
SECRETS_DIR_ENV = "IMGSWEEP_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/var/run/secrets/imgsweep")

SETTINGS_CONFIG = SettingsConfigDict(
    env_prefix=ENV_PREFIX,
    env_nested_delimiter="__",
    secrets_nested_delimiter="__",
    case_sensitive=False,
    extra="forbid",
    frozen=True,
    enable_decoding=False,  # JSON settings are parsed by their fields (fields.json_setting), so errors name them
)


def settings_sources(
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    file_secret_settings: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """Arguments, then the environment, then secret files (no ``.env`` file: a pod has none)."""
    # Files named like the variables (IMGSWEEP_API__SECRET_KEY) fill nested sections, as a mounted
    # Kubernetes Secret with those keys would; the environment wins over files.
    return (init_settings, env_settings, NestedSecretsSettingsSource(file_secret_settings))
