"""What of the configuration may be shown: secrets never are, in check-config, in logs or in error messages.

pydantic already renders every ``SecretStr`` as a mask in JSON mode; librdkafka properties are plain strings,
so any whose name looks secret (password, secret, token, key) is masked here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.settings.accounts import account_fields
from service.settings.secret_names import MASK, NEVER_SHOWN, is_secret_name

if TYPE_CHECKING:
    from service.settings.root import Settings

__all__ = ["MASK", "NEVER_SHOWN", "is_secret_name", "masked_config"]


def masked_config(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets masked, safe to print or log (``check-config``)."""
    data = settings.model_dump(mode="json")
    if settings.accounts:  # what each named account ends up with, its own settings and IMGSWEEP_API__*'s
        data["accounts_in_effect"] = {
            account.name: {
                "collections": list(account.collections),
                **account.api.model_dump(mode="json", include=set(account_fields())),
            }
            for account in settings.api_accounts()
        }
    properties: dict[str, str] = data["kafka"]["properties"]
    for name in properties:
        if is_secret_name(name):
            properties[name] = MASK
    return data
