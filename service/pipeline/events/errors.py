"""Why a record is not an event, in one bounded sentence: ``InvalidEvent`` and the reasons it carries.

A reason is a log line and a dead letter's ``imgsweep_error_reason`` header, and the input is untrusted: so it
names the field, is at most ``MAX_REASON_CHARS`` long, and quotes at most a short, escaped excerpt. The error
class is a metric label and a dead-letter header value: a fixed set, ``ERROR_CLASSES``.
"""

from __future__ import annotations

from typing import Final, Literal, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

__all__ = [
    "ERROR_CLASSES",
    "MAX_REASON_CHARS",
    "ErrorClass",
    "InvalidEvent",
    "excerpt",
    "json_type",
    "label",
    "validate",
]

MAX_REASON_CHARS: Final = 300

ErrorClass = Literal[
    "empty_value",  # null (a tombstone) or zero bytes
    "too_large",  # over MAX_VALUE_BYTES
    "invalid_utf8",  # the value (or data_base64) is not UTF-8
    "invalid_json",  # not (strict) JSON
    "invalid_schema",  # JSON, but not the delist fields: types, missing fields, caps, timestamps
    "invalid_cloudevent",  # a CloudEvents envelope or header that breaks the spec or this consumer's support
    "invalid_registry_record",  # Schema Registry wire format that cannot be read with its schema
    "schema_unavailable",  # its schema could not be fetched from the registry (after retries)
]
ERROR_CLASSES: Final[tuple[ErrorClass, ...]] = get_args(ErrorClass)

_EXCERPT_CHARS: Final = 40


class InvalidEvent(Exception):
    """The message can never become a ``DelistEvent``; retrying cannot help, it goes to the dead-letter topic."""

    def __init__(self, error_class: ErrorClass, reason: str) -> None:
        if error_class not in ERROR_CLASSES:  # a metric label: the set must stay fixed
            raise ValueError(f"unknown error class {error_class!r}")
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "…"
        super().__init__(error_class, reason)
        self.error_class: ErrorClass = error_class
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.error_class}: {self.reason}"


_ModelT = TypeVar("_ModelT", bound=BaseModel)


def validate(
    model: type[_ModelT],
    document: object,
    error_class: ErrorClass,
    *,
    document_name: str = "value",
    path_prefix: str = "",
) -> _ModelT:
    """``model`` validated from ``document``; its first problem (top-level ones first) as the reason otherwise.

    A problem's field is written ``path_prefix`` + its path (``data.image_ids[3]``, ``ce_id``), or
    ``document_name`` when the document as a whole is wrong.
    """
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = sorted(error.errors(include_url=False), key=lambda problem: len(problem["loc"]))
        reason = _describe(problems[0], document_name=document_name, path_prefix=path_prefix)
        if len(problems) > 1:
            reason += f" (and {len(problems) - 1} more)"
        raise InvalidEvent(error_class, reason) from None


def _describe(problem: ErrorDetails, *, document_name: str, path_prefix: str) -> str:
    kind, given, context = problem["type"], problem["input"], problem.get("ctx", {})
    if kind == "missing":
        detail = "missing"
    elif kind == "string_type":
        detail = f"expected a string, got {json_type(given)}"
    elif kind == "list_type":
        detail = f"expected an array of strings, got {json_type(given)}"
    elif kind in {"model_type", "dict_type", "model_attributes_type"}:
        detail = f"expected a JSON object, got {json_type(given)}"
    elif kind == "string_too_short":
        detail = "empty"
    elif kind == "string_too_long":
        detail = f"{_length(given)} characters, at most {context['max_length']} allowed"
    elif kind == "too_short":
        detail = f"{_length(given)} ids, at least {context['min_length']} required"
    elif kind == "too_long":
        detail = f"{_length(given)} ids, at most {context['max_length']} allowed"
    elif kind == "string_unicode":
        detail = "contains a lone surrogate, which is not Unicode text"
    elif kind == "literal_error" and isinstance(given, str):
        detail = f"{excerpt(given)} is not supported, expected {context['expected']}"
    elif kind == "literal_error":
        detail = f"expected the string {context['expected']}, got {json_type(given)}"
    else:
        detail = problem["msg"]  # our own messages, and pydantic's, which never quote the input
    return f"{_location(problem['loc'], document_name=document_name, path_prefix=path_prefix)}: {detail}"


def _location(loc: tuple[int | str, ...], *, document_name: str, path_prefix: str) -> str:
    if not loc:
        return document_name
    path = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in loc)
    return path_prefix + path.removeprefix(".")


def _length(given: object) -> int | str:
    return len(given) if isinstance(given, str | list | tuple) else "too many"


_JSON_TYPE_NAMES: Final = (
    (bool, "a boolean"),  # before int: a bool is an int
    (int | float, "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def json_type(value: object) -> str:
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def excerpt(text: str) -> str:
    """A short, escaped quotation of untrusted text: never the whole payload, never a raw control character."""
    return repr(text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…")


def label(name: str) -> str:
    """A header name as written when it is short and printable, else as an excerpt."""
    return name if len(name) <= _EXCERPT_CHARS and name.isprintable() else excerpt(name)
