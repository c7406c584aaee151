"""JDCLOUD2-HMAC-SHA256 request signing, for the client that signs and for a server that verifies.

Everything here is a pure function over plain data: the clock and the nonce are parameters, nothing is
sent or logged. The behaviour is pinned byte for byte to JD's own Python signer
(``jdcloud_apim_sdk.core.signer.Signer`` in ``jdcloud-apim-sdk-core==2.0.2``), because the gateway is
built to accept what that SDK sends. ``tests/unit/test_signing.py`` compares the two over generated requests.

What the reference signer does, and what this module does about it:

* The path is ``urllib.parse.quote``-d (safe ``/``) as it appears in the URL, so a URL that is already
  percent-encoded is encoded a second time (``%20`` is signed as ``%2520``). The gateway does the same
  with the path it receives, so this module mirrors it; it follows that the URL given to
  :func:`sign_request` must be the URL exactly as it goes on the wire (``str(httpx.URL(...))``), not a
  prettier form of it. A URL without a path signs ``/``.
* The query string is not decoded or encoded: it is split on ``&`` (empty pieces dropped), each piece on
  *every* ``=``, each part ``str.strip``-ped, the pieces sorted as lists, and ``k=v`` rebuilt from the
  first two parts only. So in ``a=b=c`` the ``=c`` is silently not covered by the signature. Mirrored,
  since the gateway must accept the SDK's signature; the service itself sends no query string.
* ``host`` is always signed, taken from the URL: ``host:port`` unless the port is literally ``80`` or
  ``443``, whatever the scheme (``http://h:443`` signs ``h`` while an HTTP client sends ``Host: h:443``).
  Mirrored; only odd scheme/port pairs are affected.
* Header names are lowercased and sorted; values are signed raw, neither trimmed nor whitespace-folded.
  ``authorization`` and ``user-agent`` are not signed; every other header is, including
  ``x-jdcloud-date`` and ``x-jdcloud-nonce``.
* The body hash is the SHA-256 of the body (the SDK hashes the UTF-8 encoding of a ``str`` body; this module
  hashes the exact bytes that are sent, which is the same thing for every body the SDK can sign).

Where the reference signer is plainly wrong, this module refuses the input (``ValueError``) rather than
reproduce a signature the gateway would reject or that would not cover what is sent:

* An ``@`` anywhere in the URL makes the SDK's URL regex read everything before it as userinfo: for
  ``https://h/a@b`` it signs host ``b`` and path ``/``. This module parses the URL properly (so such a
  path is signed correctly, and differs from the SDK) and refuses real userinfo, which is never needed.
* A caller-supplied ``Host`` header is signed twice (``SignedHeaders=host;host``, both lines carrying the
  URL's host); header names that differ only in case are listed twice with the last value. Refused.
* ``x-jdcloud-content-sha256`` (looked up case-sensitively) replaces the body hash without checking it.
  Refused, like the other headers this module sets itself (``x-jdcloud-date``, ``x-jdcloud-nonce``,
  ``authorization``).
* Header values with a leading or trailing space or tab are signed raw, but HTTP strips that whitespace
  in transit, so the gateway could never reproduce the signature. Control characters (CR, LF, ...) would
  corrupt the canonical request. Both refused; so are names that are not HTTP tokens, fragments (``#``,
  never sent) and control characters in the URL.
* After signing, the SDK also adds an unsigned header literally named ``JDCLOUD2-HMAC-SHA256``. It plays no
  part in the signature and JD's other signers only ask for ``Authorization``, ``x-jdcloud-date`` and
  ``x-jdcloud-nonce`` (jdcloud-api/jdcloud-sdk-cpp-signer README), so it is not sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

__all__ = [
    "ALGORITHM",
    "AUTHORIZATION_HEADER",
    "DATE_HEADER",
    "NONCE_HEADER",
    "AuthorizationHeader",
    "Credentials",
    "InvalidSignature",
    "MalformedAuthorization",
    "canonical_query",
    "canonical_request",
    "compute_signature",
    "format_jdcloud_date",
    "parse_authorization",
    "parse_jdcloud_date",
    "sign_request",
    "signing_key",
    "verify_request",
]

ALGORITHM = "JDCLOUD2-HMAC-SHA256"
DATE_HEADER = "x-jdcloud-date"
NONCE_HEADER = "x-jdcloud-nonce"
AUTHORIZATION_HEADER = "Authorization"

_KEY_PREFIX = "JDCLOUD2"
_SCOPE_TERMINATOR = "jdcloud2_request"
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_UNSIGNED_HEADERS = frozenset({"authorization", "user-agent"})
_SET_BY_SIGNER = frozenset({"host", "authorization", DATE_HEADER, NONCE_HEADER, "x-jdcloud-content-sha256"})
# Headers a verifier insists on: without them a signature does not pin the request's target or moment.
_REQUIRED_SIGNED = frozenset({"host", DATE_HEADER, NONCE_HEADER})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SCOPE_PART = re.compile(r"[^/,;=\s]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST_PORT = re.compile(r"(?P<host>.*?):(?P<port>\d+)")
_TIMESTAMP = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


class InvalidSignature(Exception):
    """A received request's signature is missing, inconsistent or wrong (the gateway's code 10047)."""


class MalformedAuthorization(InvalidSignature):
    """The ``Authorization`` or ``x-jdcloud-date`` header cannot be parsed at all."""


@dataclass(frozen=True)
class Credentials:
    """An access key pair. The secret is left out of ``repr`` so it cannot reach a log by accident."""

    access_key: str
    secret_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not _SCOPE_PART.fullmatch(self.access_key):
            raise ValueError("access_key must be non-empty, without '/', ',', ';', '=' or whitespace")
        if not self.secret_key:
            raise ValueError("secret_key must not be empty")


@dataclass(frozen=True)
class AuthorizationHeader:
    """The parts of ``Authorization: JDCLOUD2-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{_SCOPE_TERMINATOR}"

    def render(self) -> str:
        return (
            f"{ALGORITHM} Credential={self.access_key}/{self.scope}, "
            f"SignedHeaders={';'.join(self.signed_headers)}, Signature={self.signature}"
        )


def format_jdcloud_date(now: datetime) -> str:
    """``now`` as ``YYYYMMDDTHHMMSSZ`` in UTC; a naive datetime is refused, its zone being a guess."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC).strftime(_DATE_FORMAT)


def parse_jdcloud_date(value: str) -> datetime:
    """The instant an ``x-jdcloud-date`` value names, for a server's clock-skew check."""
    if not _TIMESTAMP.fullmatch(value):
        raise MalformedAuthorization(f"{DATE_HEADER} must look like 20240131T235959Z")
    try:
        return datetime.strptime(value, _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise MalformedAuthorization(f"{DATE_HEADER} is not a real date and time") from exc


def parse_authorization(value: str) -> AuthorizationHeader:
    """Split an ``Authorization`` header into credential scope, signed header names and signature."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise MalformedAuthorization(f"algorithm must be {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if not sep or name in fields:
            raise MalformedAuthorization(f"malformed or repeated field {name!r}")
        fields[name] = field_value
    if fields.keys() != {"Credential", "SignedHeaders", "Signature"}:
        raise MalformedAuthorization("expected exactly Credential, SignedHeaders and Signature")
    credential = fields["Credential"].split("/")
    if len(credential) != 5 or credential[4] != _SCOPE_TERMINATOR:
        raise MalformedAuthorization(f"Credential must be <ak>/<date>/<region>/<service>/{_SCOPE_TERMINATOR}")
    access_key, date, region, service, _ = credential
    if not all(_SCOPE_PART.fullmatch(p) for p in (access_key, region, service)) or not re.fullmatch(r"\d{8}", date):
        raise MalformedAuthorization("Credential has an empty or malformed part")
    signed_headers = tuple(fields["SignedHeaders"].split(";"))
    if not all(_TOKEN.fullmatch(name) and name == name.lower() for name in signed_headers):
        raise MalformedAuthorization("SignedHeaders must be lowercase header names joined by ';'")
    if not _SIGNATURE.fullmatch(fields["Signature"]):
        raise MalformedAuthorization("Signature must be 64 lowercase hex digits")
    return AuthorizationHeader(access_key, date, region, service, signed_headers, fields["Signature"])


def canonical_query(query: str) -> str:
    """The SDK's query canonicalisation, quirks included (see the module docstring)."""
    params = sorted([part.strip() for part in piece.split("=")] for piece in query.split("&") if piece)
    return "&".join(f"{p[0]}={p[1] if len(p) > 1 else ''}" for p in params)


def canonical_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """The canonical request over ``signed_headers``, in the order given.

    ``path`` and ``query`` are the raw target as sent (still percent-encoded, ``?`` excluded); ``headers``
    is keyed by lowercase name and must hold every signed header, ``host`` included.
    """
    canonical_headers = "".join(f"{name}:{headers[name]}\n" for name in signed_headers)
    return "\n".join(
        (
            method,
            quote(path or "/"),
            canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            hashlib.sha256(body).hexdigest(),
        )
    )


def signing_key(secret_key: str, *, date: str, region: str, service: str) -> bytes:
    """The key for one day, region and service: an HMAC chain from ``"JDCLOUD2" + secret_key``."""
    key = (_KEY_PREFIX + secret_key).encode("utf-8")
    for message in (date, region, service, _SCOPE_TERMINATOR):
        key = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return key


def compute_signature(*, secret_key: str, timestamp: str, region: str, service: str, canonical_request: str) -> str:
    """The hex signature of a canonical request made at ``timestamp`` (an ``x-jdcloud-date`` value)."""
    date = timestamp[:8]
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            timestamp,
            f"{date}/{region}/{service}/{_SCOPE_TERMINATOR}",
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        )
    )
    key = signing_key(secret_key, date=date, region=region, service=service)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_request(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
    nonce: str,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus ``x-jdcloud-date``, ``x-jdcloud-nonce`` and ``Authorization``.

    ``url`` is the full URL exactly as it will be sent (scheme, host, optional port, percent-encoded path
    and query); ``body`` the exact bytes that will be sent. ``Host`` is signed from the URL and left to the
    HTTP client to send. Raises ``ValueError`` for input the gateway could not verify (module docstring).
    """
    if not _TOKEN.fullmatch(method):
        raise ValueError("method must be an HTTP token such as POST")
    for name, part in (("region", region), ("service", service)):
        if not _SCOPE_PART.fullmatch(part):
            raise ValueError(f"{name} must be non-empty, without '/', ',', ';', '=' or whitespace")
    host, path, query = _split_url(url)
    timestamp = format_jdcloud_date(now)
    _check_header_value(NONCE_HEADER, nonce)
    lowered = _lowercase_headers(headers)
    lowered.update({"host": host, DATE_HEADER: timestamp, NONCE_HEADER: nonce})
    signed_headers = tuple(sorted(name for name in lowered if name not in _UNSIGNED_HEADERS))
    signature = compute_signature(
        secret_key=credentials.secret_key,
        timestamp=timestamp,
        region=region,
        service=service,
        canonical_request=canonical_request(
            method=method, path=path, query=query, headers=lowered, signed_headers=signed_headers, body=body
        ),
    )
    authorization = AuthorizationHeader(
        credentials.access_key, timestamp[:8], region, service, signed_headers, signature
    )
    return {**headers, DATE_HEADER: timestamp, NONCE_HEADER: nonce, AUTHORIZATION_HEADER: authorization.render()}


def verify_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
) -> AuthorizationHeader:
    """Recompute a received request's signature; return its parsed ``Authorization`` if it matches.

    ``path`` and ``query`` are the raw request target as received, before any percent-decoding (for ASGI:
    ``scope["raw_path"]`` and ``scope["query_string"]``); ``headers`` holds one value per name, any case,
    ``Host`` included. The region and service are the ones the request declares, as the gateway does.
    The clock-skew check is the caller's: ``parse_jdcloud_date(headers["x-jdcloud-date"])``.
    Raises :class:`InvalidSignature` (or its subclass :class:`MalformedAuthorization`) with the reason.
    """
    received: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in received:
            raise InvalidSignature(f"header {name.lower()!r} received twice")
        received[name.lower()] = value
    if "authorization" not in received or DATE_HEADER not in received:
        raise MalformedAuthorization(f"Authorization and {DATE_HEADER} headers are required")
    authorization = parse_authorization(received["authorization"])
    timestamp = received[DATE_HEADER]
    parse_jdcloud_date(timestamp)
    if authorization.access_key != credentials.access_key:
        raise InvalidSignature("unknown access key")
    if timestamp[:8] != authorization.date:
        raise InvalidSignature(f"{DATE_HEADER} is not on the day the credential scope names")
    unsigned = sorted(_REQUIRED_SIGNED.difference(authorization.signed_headers))
    if unsigned:
        raise InvalidSignature(f"headers must be signed: {', '.join(unsigned)}")
    missing = [name for name in authorization.signed_headers if name not in received]
    if missing:
        raise InvalidSignature(f"signed headers not received: {', '.join(missing)}")
    expected = compute_signature(
        secret_key=credentials.secret_key,
        timestamp=timestamp,
        region=authorization.region,
        service=authorization.service,
        canonical_request=canonical_request(
            method=method,
            path=path,
            query=query,
            headers=received,
            signed_headers=authorization.signed_headers,
            body=body,
        ),
    )
    if not hmac.compare_digest(expected, authorization.signature):
        raise InvalidSignature("signature does not match the request")
    return authorization


def _split_url(url: str) -> tuple[str, str, str]:
    """``(signed host, path, query)`` of a URL, host and port handled as the SDK does."""
    if _URL_CONTROL.search(url) or "#" in url:
        raise ValueError("url must not contain control characters or a fragment")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in {"http", "https"}:
        raise ValueError("url must start with http:// or https://")
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, target = rest[:end], rest[end:]
    if "@" in authority:
        raise ValueError("url must not carry userinfo")
    path, _, query = target.partition("?")
    host_port = _HOST_PORT.fullmatch(authority)
    if host_port is None:
        host, port = authority, ""
    else:
        host, port = host_port["host"], host_port["port"]
    if not host:
        raise ValueError("url must name a host")
    signed_host = host if port in {"", "80", "443"} else f"{host}:{port}"
    return signed_host, path or "/", query


def _lowercase_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if lower in _SET_BY_SIGNER:
            raise ValueError(f"header {name!r} is set by the signer or the HTTP client, not the caller")
        if lower in lowered:
            raise ValueError(f"header {lower!r} given twice (names are case-insensitive)")
        _check_header_value(name, value)
        lowered[lower] = value
    return lowered


def _check_header_value(name: str, value: str) -> None:
    if _CONTROL.search(value):
        raise ValueError(f"header {name!r} contains a control character")
    if value != value.strip(" \t"):
        raise ValueError(f"header {name!r} has leading or trailing whitespace, which HTTP strips in transit")
