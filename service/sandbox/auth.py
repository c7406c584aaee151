"""The gateway's authentication of a call: which code a badly signed request gets.

Pure: the verification itself is :func:`service.api.signing.verify_request`; this module only orders the
checks and maps each failure to the gateway's code. Order: headers that cannot be parsed (10046), an access
key the account does not have (10001), a date more than five minutes from the sandbox's clock (10045),
then the signature itself (10047). The region and service are the ones the request's scope declares.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from service.api.signing import (
    DATE_HEADER,
    Credentials,
    InvalidSignature,
    MalformedAuthorization,
    parse_authorization,
    parse_jdcloud_date,
    verify_request,
)
from service.sandbox.protocol import SystemCode

__all__ = ["MAX_CLOCK_SKEW_SECONDS", "AuthRefused", "authenticate"]

MAX_CLOCK_SKEW_SECONDS: Final = 300.0


class AuthRefused(Exception):
    """The gateway refuses the call; ``code`` is its system code, ``reason`` safe to return and log."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def authenticate(
    *,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    credentials: Credentials,
    now: float,
) -> None:
    """Return if the request is signed by ``credentials`` within the allowed skew of ``now`` (epoch seconds).

    ``target`` is the raw request target (path and query, still percent-encoded); ``headers`` every header
    line as received, so a repeated header is seen and refused rather than silently collapsed.
    Raises :class:`AuthRefused`.
    """
    received = _one_value_per_name(headers)
    authorization_value = received.get("authorization")
    date_value = received.get(DATE_HEADER)
    if authorization_value is None or date_value is None:
        raise AuthRefused(SystemCode.TIMESTAMP_MALFORMED, f"Authorization and {DATE_HEADER} headers are required")
    try:
        authorization = parse_authorization(authorization_value)
        signed_at = parse_jdcloud_date(date_value).timestamp()
    except MalformedAuthorization as malformed:
        raise AuthRefused(SystemCode.TIMESTAMP_MALFORMED, str(malformed)) from None
    if authorization.access_key != credentials.access_key:
        raise AuthRefused(SystemCode.WRONG_APPKEY, "unknown access key")
    if abs(now - signed_at) > MAX_CLOCK_SKEW_SECONDS:
        raise AuthRefused(
            SystemCode.TIMESTAMP_INVALID, f"{DATE_HEADER} is {signed_at - now:+.0f}s away from the gateway's clock"
        )
    path, _, query = target.partition("?")
    try:
        verify_request(method=method, path=path, query=query, headers=received, body=body, credentials=credentials)
    except MalformedAuthorization as malformed:
        raise AuthRefused(SystemCode.TIMESTAMP_MALFORMED, str(malformed)) from None
    except InvalidSignature as invalid:
        raise AuthRefused(SystemCode.SIGNATURE_INVALID, str(invalid)) from None


def _one_value_per_name(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    received: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in received:
            raise AuthRefused(SystemCode.SIGNATURE_INVALID, f"header {lower!r} received twice")
        received[lower] = value
    return received
