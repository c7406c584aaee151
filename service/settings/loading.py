"""Reading the settings once, at start-up: the environment, the secrets directory, every error in one message."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from service.settings.errors import ConfigError, describe
from service.settings.root import Settings
from service.settings.sources import DEFAULT_SECRETS_DIR, ENV_PREFIX, SECRETS_DIR_ENV

__all__ = ["load_settings", "secrets_dir_from_env"]


def secrets_dir_from_env() -> Path | None:
    """The secrets directory: ``$IMGSWEEP_SECRETS_DIR``, which must be one, else the default one if it exists."""
    configured = os.environ.get(SECRETS_DIR_ENV)
    path = Path(configured) if configured else DEFAULT_SECRETS_DIR
    if not path.is_dir():
        if configured:
            raise ConfigError(f"{SECRETS_DIR_ENV}={configured} is not a directory")
        return None
    try:
        next(path.iterdir(), None)
    except OSError as error:  # e.g. a Secret mounted with a mode or fsGroup this user cannot read
        raise ConfigError(f"{SECRETS_DIR_ENV}={path} cannot be read: {error.strerror}") from None
    return path


def _unknown_variables() -> list[str]:
    # pydantic-settings silently ignores an unknown top-level variable; a typo must not pass unnoticed.
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {SECRETS_DIR_ENV}
    return sorted(
        name for name in os.environ if name.upper().startswith(ENV_PREFIX) and name.upper().split("__")[0] not in known
    )


def load_settings(**overrides: Any) -> Settings:
    """Reads the environment and the secrets directory; raises ConfigError with a readable message."""
    unknown = _unknown_variables()
    if unknown:
        raise ConfigError(
            "invalid configuration:\n"
            + "\n".join(
                f"  {name}: is not a known setting (check the spelling against the README's configuration table)"
                for name in unknown
            )
        )
    secrets_dir = secrets_dir_from_env()
    try:
        return Settings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]  # pydantic-settings init kwarg
    except ValidationError as error:
        raise ConfigError(describe(error)) from None
    except SettingsError as error:  # e.g. an unreadable or oversized secrets directory
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        where = f"{SECRETS_DIR_ENV}={secrets_dir}" if secrets_dir is not None else "the environment"
        raise ConfigError(f"{where}: {error}{cause}") from None
