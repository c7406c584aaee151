"""Configuration errors as a person reads them: which variable, what is wrong, what is allowed."""

from __future__ import annotations

from pydantic import ValidationError

from service.settings.fields import JSON_ARRAY_OF_STRINGS, JSON_OBJECT_OF_STRINGS
from service.settings.secret_names import NEVER_SHOWN, is_secret_name
from service.settings.sources import ENV_PREFIX

__all__ = ["ConfigError", "describe"]


class ConfigError(Exception):
    """The configuration is invalid; the message says which setting, what is wrong and what is allowed."""


def _env_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc if not isinstance(part, int)]
    # Validators of a whole section report the section; keys of a dict are not settings of their own, except
    # an account's name (IMGSWEEP_ACCOUNTS__<NAME>__<SETTING>).
    return ENV_PREFIX + "__".join(part.upper() for part in parts[: 3 if parts[0] == "accounts" else 2])


def describe(error: ValidationError) -> str:
    """The errors of reading the settings, one line each, naming the variable; a secret's value is never shown."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a rule across sections: the message names its settings
            lines.append(f"  {message}")
            continue
        name = _env_name(item["loc"])
        if item["type"] == "extra_forbidden":
            message = "is not a known setting (check the spelling against the README's configuration table)"
        elif item["type"] == "model_type":  # e.g. IMGSWEEP_KAFKA='{...}': a section is set one setting at a time
            message = f"is a section, not a setting: set its settings one by one as {name}__<NAME> (README)"
        elif item["loc"] == ("accounts",):  # IMGSWEEP_ACCOUNTS='{...}': accounts are set one setting at a time
            message = f"is not a setting: set each account's settings one by one as {name}__<NAME>__<SETTING> (README)"
        elif len(item["loc"]) > 2 and item["loc"][0] != "accounts" and isinstance(item["loc"][2], str):  # JSON key
            message = f"key {item['loc'][2]!r}: {message}"
        elif item["type"] in {"dict_type", "frozen_set_type"}:  # JSON, but not the shape the setting takes
            expected = JSON_OBJECT_OF_STRINGS if item["type"] == "dict_type" else JSON_ARRAY_OF_STRINGS
            message = f"{message}; expected {expected}"
        hidden = is_secret_name(name) or name in NEVER_SHOWN or item["type"] in {"extra_forbidden", "model_type"}
        shown = "" if hidden else _short(item.get("input"))
        lines.append(f"  {name}: {message}{shown}")
    return "invalid configuration:\n" + "\n".join(lines)


def _short(value: object) -> str:
    if isinstance(value, dict | list) or value is None:
        return ""
    text = repr(value)
    return f" (got {text[:80]})"
