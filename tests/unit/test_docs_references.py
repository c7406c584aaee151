"""What README.md and docs/runbooks.md tell an operator to type still exists.

Every ``IMGSWEEP_...`` variable they name must be a settings field (derived from the models at run time: the
env prefix, the nested delimiter, each section's ``model_fields`` and aliases), and every `` `imgsweep <command>
--option` `` they show must be a subcommand, with its options, of the CLI's own parser.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from service.cli import _parser
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/runbooks.md")
PREFIX: str = Settings.model_config.get("env_prefix") or ""
DELIMITER: str = Settings.model_config.get("env_nested_delimiter") or ""
VARIABLE = re.compile(re.escape(PREFIX) + r"(?:[A-Z0-9_]|<[A-Z]+>)*")
COMMAND = re.compile(r"`imgsweep ([a-z][a-z-]*)((?: [^`]*)?)`")


def mentioned(pattern: re.Pattern[str]) -> dict[str, list[re.Match[str]]]:
    return {name: list(pattern.finditer((ROOT / name).read_text(encoding="utf-8"))) for name in DOCS}


def models_in(annotation: object) -> list[tuple[type[BaseModel], bool]]:
    """The settings models an annotation holds, and whether under a mapping (a name the operator picks comes
    first: ``IMGSWEEP_ACCOUNTS__<NAME>__...``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, False)]
    origin = typing.get_origin(annotation)
    found: list[tuple[type[BaseModel], bool]] = []
    for argument in typing.get_args(annotation):
        for model, keyed in models_in(argument):
            found.append((model, keyed or origin in (dict, typing.Mapping)))
    return found


def field_names(model: type[BaseModel]) -> dict[str, object]:
    """Each field by every name an environment variable may use for it (its name and its aliases)."""
    names: dict[str, object] = {}
    for name, field in model.model_fields.items():
        aliases = [name, field.alias, field.validation_alias]
        for alias in aliases:
            for choice in getattr(alias, "choices", [alias]):
                if isinstance(choice, str):
                    names[choice.upper()] = field.annotation
    return names


def spelled_out(variable: str) -> bool:
    """The whole name (after the prefix) appears as a name in the settings' own code (any module of it)."""
    rest = re.escape(variable.removeprefix(PREFIX))
    pattern = re.compile(r"(?:" + re.escape(PREFIX) + r"|\}|[\"'])" + rest + r"(?![A-Za-z0-9_])")
    package = Settings.__module__.split(".")[0] + "." + Settings.__module__.split(".")[1]
    return any(
        pattern.search(inspect.getsource(module))
        for name, module in list(sys.modules.items())
        if (name == package or name.startswith(package + ".")) and getattr(module, "__file__", None)
    )


def resolves(variable: str) -> bool:
    """Walks the name down the models. A name a model does not declare may still be read by the code that
    defines it (an old name kept, the secrets directory): then it is spelled out in that model's module."""
    parts = variable.removeprefix(PREFIX).split(DELIMITER)
    model: type[BaseModel] = Settings
    while parts:
        part = parts.pop(0)
        if part in ("", "*") or part.startswith("<"):
            return True  # a prefix (`IMGSWEEP_API__*`) or a placeholder the docs explain
        if part.endswith("_") and not parts:  # `IMGSWEEP_KAFKA__SASL_*`: some fields' common start
            return any(name.startswith(part) for name in field_names(model))
        annotation = field_names(model).get(part)
        if annotation is None:
            return spelled_out(variable)
        inner = models_in(annotation)
        if not inner:  # a value; a mapping's entries may also be set one per variable (`...__<property>`)
            return not parts or (typing.get_origin(annotation) is dict and len(parts) == 1)
        model, keyed = inner[0]
        if keyed and parts:
            parts.pop(0)  # the operator's name for the entry
    return True


def test_the_docs_name_settings_at_all() -> None:
    """The check below is worth something only if it finds what the docs name."""
    found = {match.group(0) for matches in mentioned(VARIABLE).values() for match in matches}
    assert {f"{PREFIX}KAFKA__GROUP_ID", f"{PREFIX}API__QPS", f"{PREFIX}DRY_RUN"} <= found
    assert not resolves(f"{PREFIX}KAFKA__GROUP_IDENTITY")
    assert not resolves(f"{PREFIX}NO_SUCH_SECTION__QPS")
    assert not resolves(f"{PREFIX}API__QPS__EXTRA")
    assert not resolves(f"{PREFIX}KAFKA__GROUP")
    assert not resolves(f"{PREFIX}KAFKA__NOPE_")
    assert resolves(f"{PREFIX}ACCOUNTS__<NAME>__ACCESS_KEY")
    assert not resolves(f"{PREFIX}ACCOUNTS__SHOES__ACCESS")


BUILD_VARIABLES = {f"{PREFIX}IMAGE_EXTRAS": Path("deploy/image/build.sh")}
"""Variables of the build, not settings of the service: each must still be read by the script that names it."""


def test_build_variables_are_read_by_their_scripts() -> None:
    root = Path(__file__).resolve().parents[2]
    for name, script in BUILD_VARIABLES.items():
        assert f"${{{name}" in (root / script).read_text(), f"{script} no longer reads {name}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_documented_variable_is_a_setting(doc: str) -> None:
    unknown = sorted(
        {
            match.group(0)
            for match in mentioned(VARIABLE)[doc]
            if not resolves(match.group(0)) and match.group(0) not in BUILD_VARIABLES
        }
    )
    assert unknown == [], f"{doc} names settings that do not exist"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    for action in _parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the CLI has no subcommands")


def _action_of(parser: argparse.ArgumentParser, rest: str) -> argparse.ArgumentParser:
    """The parser of a command's action when it has actions (``imgsweep brake resume``) and ``rest`` names one."""
    words = rest.split()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and words and words[0] in action.choices:
            chosen: argparse.ArgumentParser = action.choices[words[0]]
            return chosen
    return parser


@pytest.mark.parametrize("doc", DOCS)
def test_every_documented_command_and_option_exists(doc: str) -> None:
    commands = subcommands()
    matches = mentioned(COMMAND)[doc]
    wrong = []
    checked = 0
    for match in matches:
        command, rest = match.group(1), match.group(2)
        if command not in commands:
            wrong.append(f"imgsweep {command}")
            continue
        parser = _action_of(commands[command], rest)
        options = parser._option_string_actions
        shown = re.findall(r"--[a-z-]+", rest)
        checked += len(shown)
        wrong += [f"imgsweep {command} {option}" for option in shown if option not in options]
    assert wrong == [], f"{doc} shows commands or options the CLI does not have"
    assert checked > 0, f"{doc}: no option found to check"
    if doc == "README.md":
        assert {match.group(1) for match in matches} >= {"run", "check-config", "replay-dlq", "sandbox"}
