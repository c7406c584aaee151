"""Named JD accounts (``IMGSWEEP_ACCOUNTS__<NAME>__*``): which collections each holds and its API settings whole.

An account's settings are not declared here: they are the ``ApiSettings`` fields marked ``PerAccount``, each
optional in ``AccountSettings`` (generated from those marks) and typed only. The account's whole settings are
``IMGSWEEP_API__*`` with what the account sets over it, checked by ``ApiSettings``' own rules in ``resolve_accounts``,
so a per-account setting is declared once and checked once, and its errors name the account's variable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    WrapValidator,
    create_model,
    field_validator,
)
from pydantic.fields import FieldInfo

from service.settings.api import ApiSettings, PerAccount
from service.settings.fields import Section, json_setting
from service.settings.sources import ENV_PREFIX

__all__ = [
    "DEFAULT_ACCOUNT",
    "EVERY_OTHER_COLLECTION",
    "Account",
    "AccountSettings",
    "account_fields",
    "missing_keys",
    "resolve_accounts",
]

DEFAULT_ACCOUNT = "default"
"""The one account imgsweep has when no ``IMGSWEEP_ACCOUNTS__*`` is set: the ``IMGSWEEP_API__*`` settings."""
EVERY_OTHER_COLLECTION = "*"
"""In an account's collections: every collection no other account names."""
_ACCOUNT_NAME = re.compile(r"(?=.{1,32}\Z)[a-z0-9]+(?:[-_][a-z0-9]+)*\Z")
"""Words of a-z 0-9 joined by single ``-`` or ``_``: ``__`` ends the name in a variable, so it cannot be in one."""


def account_fields(*scopes: PerAccount) -> tuple[str, ...]:
    """The ``ApiSettings`` fields an account sets, in the order of ``scopes`` (default: its own keys, then the
    inherited settings), each scope in ``ApiSettings``' order."""
    return tuple(
        name
        for scope in scopes or (PerAccount.OWN, PerAccount.INHERITED)
        for name, field in ApiSettings.model_fields.items()
        if scope in field.metadata
    )


_JSON_ARRAY_OF_COLLECTIONS = 'a JSON array of collection names, e.g. ["shoes", "bags"]'


class AccountSection(Section):
    """The part of an account that is not an API setting: the collections it holds."""

    collections: Annotated[tuple[str, ...], json_setting(_JSON_ARRAY_OF_COLLECTIONS)] = Field(
        description='The collections whose images this account deletes; "*": every collection no other account names.'
    )

    @field_validator("collections")
    @classmethod
    def _collections(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('is empty: name the collections this account deletes from (or ["*"] for the rest)')
        for name in value:
            if not name.strip():
                raise ValueError("holds an empty collection name")
            if name != name.strip():
                raise ValueError(f"collection {name!r} has spaces around its name")
        if len(set(value)) != len(value):
            raise ValueError("names a collection twice")
        if EVERY_OTHER_COLLECTION in value and len(value) > 1:
            raise ValueError(f'"{EVERY_OTHER_COLLECTION}" (every other collection) stands alone in an account')
        return value


# What turns a variable's text into the field's type (a JSON setting, a reset zone) goes with the field; what
# checks the value (bounds, patterns, validators) does not: the merged settings are checked by ApiSettings itself.
_PARSING = (BeforeValidator, PlainValidator, WrapValidator, PlainSerializer, WithJsonSchema)


def _unset_takes_the_api_setting(field: FieldInfo) -> tuple[Any, Any]:
    parsing = [item for item in field.metadata if isinstance(item, _PARSING)]
    annotation: Any = Annotated[(field.annotation, *parsing)] if parsing else field.annotation
    return annotation | None, Field(default=None, description=field.description)


def _account_settings() -> type[AccountSection]:
    fields: dict[str, Any] = {
        name: _unset_takes_the_api_setting(ApiSettings.model_fields[name]) for name in account_fields()
    }
    return create_model(
        "AccountSettings",
        __base__=AccountSection,
        __module__=__name__,
        __doc__=(
            "One JD account (``IMGSWEEP_ACCOUNTS__<NAME>__*``): the collections it holds, its keys, and what differs "
            "from ``IMGSWEEP_API__*``; a setting left unset takes the ``IMGSWEEP_API__`` setting of the same name."
        ),
        **fields,
    )


if TYPE_CHECKING:
    # mypy sees the declared part; the generated fields are read by name (account_fields()), never as attributes.
    AccountSettings = AccountSection
else:
    AccountSettings = _account_settings()


class Account(BaseModel):
    """An account as imgsweep uses it: its name (the metrics' ``account`` label), its collections, and its API
    settings whole (its own keys and what it sets; the rest from ``IMGSWEEP_API__*``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    collections: tuple[str, ...]
    api: ApiSettings


def resolve_accounts(accounts: Mapping[str, AccountSection], api: ApiSettings) -> tuple[Account, ...]:
    """The accounts imgsweep calls the API with: each named one whole and valid, every collection named by one
    account at most; without named accounts, the one ``default`` account of every collection, ``IMGSWEEP_API__*``.

    Raises ValueError naming the variables at fault (the settings' validator reports it).
    """
    if not accounts:
        return (Account(name=DEFAULT_ACCOUNT, collections=(EVERY_OTHER_COLLECTION,), api=api),)
    owner: dict[str, str] = {}
    for name, account in sorted(accounts.items()):
        _check_account_name(name)
        for collection in account.collections:
            if collection in owner:
                what = "every other collection" if collection == EVERY_OTHER_COLLECTION else collection
                raise ValueError(
                    f"{what!r} is in the collections of both account {owner[collection]!r} and account {name!r}: "
                    "a collection belongs to one account"
                )
            owner[collection] = name
    unused = [
        f"{ENV_PREFIX}API__{key.upper()}" for key in account_fields(PerAccount.OWN) if getattr(api, key) is not None
    ]
    if unused:
        raise ValueError(
            f"{' and '.join(unused)} would be used by no account: with {ENV_PREFIX}ACCOUNTS__<NAME>__* each "
            f"account has its own keys ({ENV_PREFIX}ACCOUNTS__<NAME>__ACCESS_KEY, __SECRET_KEY); remove them"
        )
    return tuple(_account(name, account, api) for name, account in sorted(accounts.items()))


def missing_keys(accounts: Iterable[Account], *, named: bool) -> list[str]:
    """The variables of the keys that are unset or empty: ``IMGSWEEP_ACCOUNTS__<NAME>__*`` of named accounts,
    ``IMGSWEEP_API__*`` of the one default account."""
    return [
        f"{ENV_PREFIX}ACCOUNTS__{account.name.upper()}__{key.upper()}" if named else f"{ENV_PREFIX}API__{key.upper()}"
        for account in accounts
        for key in account_fields(PerAccount.OWN)
        if (value := getattr(account.api, key)) is None or not value.get_secret_value()
    ]


def _check_account_name(name: str) -> None:
    if not _ACCOUNT_NAME.fullmatch(name):
        raise ValueError(
            f"account name {name!r} (in {ENV_PREFIX}ACCOUNTS__{name.upper()}__*) is not 1-32 characters of words of "
            "a-z 0-9 joined by single - or _ (it becomes the metrics' account label; __ would end it)"
        )


def _account(name: str, account: AccountSection, api: ApiSettings) -> Account:
    """A named account's whole API settings: its own keys, what it sets, the rest from ``IMGSWEEP_API__*``."""
    prefix = f"{ENV_PREFIX}ACCOUNTS__{name.upper()}__"
    never_inherited = dict.fromkeys(account_fields(PerAccount.OWN))
    chosen = {field: value for field in account_fields() if (value := getattr(account, field)) is not None}
    try:
        merged = ApiSettings.model_validate({**dict(api), **never_inherited, **chosen})
    except ValidationError as error:
        problems = [
            (f"{prefix}{str(problem['loc'][0]).upper()}: " if problem["loc"] else "")
            + problem["msg"].removeprefix("Value error, ").replace(f"{ENV_PREFIX}API__", prefix)
            for problem in error.errors()
        ]
        raise ValueError(f"account {name!r}: {'; '.join(problems)}") from None
    return Account(name=name, collections=account.collections, api=merged)
