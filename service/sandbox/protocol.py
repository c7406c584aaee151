"""The delete endpoint's wire format as the sandbox speaks it: request parsing and reply shapes.

Pure: no I/O, no clock, no randomness. The codes and messages are the contract's
(``shared/reference/jd-delete-api.md``); where the contract is silent, the choice made here is noted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from json.encoder import encode_basestring_ascii as _quote
from typing import Final

from service.settings import API_MAX_BODY_BYTES, API_MAX_ITEMS

__all__ = [
    "ABSENT_REASON",
    "DELETE_PATH",
    "ITEM_ERROR_REASON",
    "MAX_BODY_BYTES",
    "MAX_ITEMS",
    "BusinessCode",
    "BusinessResult",
    "DeleteRequest",
    "GatewayReply",
    "ImageKey",
    "RequestRejected",
    "SystemCode",
    "parse_delete_body",
]

DELETE_PATH: Final = "/jdai/product_image_del_image"
MAX_ITEMS: Final = API_MAX_ITEMS
MAX_BODY_BYTES: Final = API_MAX_BODY_BYTES

ABSENT_REASON: Final = "NO_AVAILABLE_FEATURE"
"""``failed_list`` reason of an image that is not (or no longer) in the collection."""
ITEM_ERROR_REASON: Final = "DELETE_IMAGE_ERROR"
"""``failed_list`` reason of an injected server-side failure; the image stays, a retry can delete it."""

ImageKey = tuple[str, str]
"""``(product_id, image_id)``: one image of a collection."""


class SystemCode:
    """The gateway's string codes (``code``) that the sandbox can answer."""

    SUCCESS: Final = "10000"
    WRONG_APPKEY: Final = "10001"
    SYSTEM_BUSY: Final = "10020"
    PAYMENT_REQUIRED: Final = "10010"
    DAILY_LIMIT: Final = "10040"
    QPS_LIMIT: Final = "10043"
    TIMESTAMP_INVALID: Final = "10045"
    TIMESTAMP_MALFORMED: Final = "10046"
    SIGNATURE_INVALID: Final = "10047"
    PUBLISHER_ERROR: Final = "11010"


SYSTEM_MESSAGES: Final = {
    SystemCode.SUCCESS: "查询成功",
    SystemCode.WRONG_APPKEY: "错误的请求appkey",
    SystemCode.SYSTEM_BUSY: "系统繁忙，请稍后再试",  # noqa: RUF001 - the gateway writes Chinese punctuation
    SystemCode.PAYMENT_REQUIRED: "需要付费",
    SystemCode.DAILY_LIMIT: "今日调用次数已用完，请明天再来",  # noqa: RUF001
    SystemCode.QPS_LIMIT: "QPS超过限制",
    SystemCode.TIMESTAMP_INVALID: "时间戳无效",
    SystemCode.TIMESTAMP_MALFORMED: "时间戳或签名格式错误",
    SystemCode.SIGNATURE_INVALID: "签名无效",
    SystemCode.PUBLISHER_ERROR: "服务商接口异常",
}


class BusinessCode:
    """The interface's int codes (``result.code``)."""

    SUCCESS: Final = 0
    NO_RELATIVE_COLLECTION: Final = 1030
    IMAGE_NUM_EXCEED_TOTAL_LIMIT: Final = 3016
    INVALID_IMAGE_ID_LIST: Final = 3050
    EMPTY_IMAGE_ID_LIST: Final = 3051
    DUPLICATE_IMAGE_ID: Final = 3052
    NO_VALID_IMAGE_ID: Final = 3053
    INVALID_PARAMETER_JSON: Final = 5001


BUSINESS_MESSAGES: Final = {
    BusinessCode.SUCCESS: "SUCCESS",
    BusinessCode.NO_RELATIVE_COLLECTION: "NO_RELATIVE_COLLECTION",
    BusinessCode.IMAGE_NUM_EXCEED_TOTAL_LIMIT: "IMAGE_NUM_EXCEED_TOTAL_LIMIT",
    BusinessCode.INVALID_IMAGE_ID_LIST: "INVALID_IMAGE_ID_LIST",
    BusinessCode.EMPTY_IMAGE_ID_LIST: "EMPTY_IMAGE_ID_LIST",
    BusinessCode.DUPLICATE_IMAGE_ID: "DUPLICATE_IMAGE_ID",
    BusinessCode.NO_VALID_IMAGE_ID: "NO_VALID_IMAGE_ID",
    BusinessCode.INVALID_PARAMETER_JSON: "INVALID_PARAMETER_JSON",
}


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """A well-formed call: a collection and distinct images (at most ``MAX_ITEMS``)."""

    collection: str
    items: tuple[ImageKey, ...]


class RequestRejected(Exception):
    """The body is not a call the interface accepts; ``code`` is the business code to answer."""

    def __init__(self, code: int) -> None:
        super().__init__(f"{code} {BUSINESS_MESSAGES[code]}")
        self.code = code


def parse_delete_body(body: bytes) -> DeleteRequest:
    """Validate a request body in the order the checks are documented below; raise :class:`RequestRejected`.

    Not JSON, not an object, or ``collection_name`` missing, empty or not a string: 5001.
    ``image_id_list`` missing or not a list: 3050; empty: 3051; over 200 entries: 3016 (the count is
    checked before the entries, so an oversized list is 3016 whatever it holds); an entry that is not an
    object with string ``product_id`` and ``image_id`` (numbers are refused, the contract says string): 3050;
    the same ``(product_id, image_id)`` twice: 3052; every ``image_id`` empty: 3053. An entry with an empty
    ``image_id`` among valid ones is simply absent from the collection.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise RequestRejected(BusinessCode.INVALID_PARAMETER_JSON) from None
    if not isinstance(document, dict):
        raise RequestRejected(BusinessCode.INVALID_PARAMETER_JSON)
    collection = document.get("collection_name")
    if not isinstance(collection, str) or not collection:
        raise RequestRejected(BusinessCode.INVALID_PARAMETER_JSON)
    entries = document.get("image_id_list")
    if not isinstance(entries, list):
        raise RequestRejected(BusinessCode.INVALID_IMAGE_ID_LIST)
    if not entries:
        raise RequestRejected(BusinessCode.EMPTY_IMAGE_ID_LIST)
    if len(entries) > MAX_ITEMS:
        raise RequestRejected(BusinessCode.IMAGE_NUM_EXCEED_TOTAL_LIMIT)
    try:
        items: list[ImageKey] = [(entry["product_id"], entry["image_id"]) for entry in entries]
    except (KeyError, TypeError):  # an entry that is not an object, or lacks a field
        raise RequestRejected(BusinessCode.INVALID_IMAGE_ID_LIST) from None
    if set(map(type, chain.from_iterable(items))) != {str}:
        raise RequestRejected(BusinessCode.INVALID_IMAGE_ID_LIST)
    if len(set(items)) != len(items):
        raise RequestRejected(BusinessCode.DUPLICATE_IMAGE_ID)
    if not any(image_id for _, image_id in items):
        raise RequestRejected(BusinessCode.NO_VALID_IMAGE_ID)
    return DeleteRequest(collection, tuple(items))


@dataclass(frozen=True, slots=True)
class BusinessResult:
    """``result`` of a call the interface answered: a business code and, for code 0, the two item lists."""

    code: int
    successful: Sequence[ImageKey] = ()
    failed: Sequence[tuple[ImageKey, str]] = ()

    @property
    def message(self) -> str:
        return BUSINESS_MESSAGES[self.code]

    def as_dict(self) -> dict[str, object]:
        """The JSON object as plain data (what :meth:`render_json` writes)."""
        result: dict[str, object] = {"code": self.code, "message": self.message}
        if self.code == BusinessCode.SUCCESS:
            result["successful_list"] = [{"product_id": p, "image_id": i} for p, i in self.successful]
            result["failed_list"] = [
                {"product_id": p, "image_id": i, "message": reason} for (p, i), reason in self.failed
            ]
        return result

    def render_json(self) -> str:
        """Written by hand rather than by ``json.dumps`` over 200 dicts: about 3x faster, the bulk of a reply.

        Ids are escaped to ASCII (``\\uXXXX``), which any JSON reader decodes to the same string and which
        stays valid even for a lone surrogate a client sent as ``\\ud800``.
        """
        head = f'{{"code":{self.code},"message":{_quote(self.message)}'
        if self.code != BusinessCode.SUCCESS:
            return head + "}"
        successful = ",".join([f'{{"product_id":{_quote(p)},"image_id":{_quote(i)}}}' for p, i in self.successful])
        failed = ",".join(
            [
                f'{{"product_id":{_quote(p)},"image_id":{_quote(i)},"message":{_quote(reason)}}}'
                for (p, i), reason in self.failed
            ]
        )
        return f'{head},"successful_list":[{successful}],"failed_list":[{failed}]}}'


@dataclass(frozen=True, slots=True)
class GatewayReply:
    """One JSON answer of the endpoint, always sent with HTTP 200 as the real gateway does.

    ``result`` is None for the gateway's own refusals and faults, rendered as ``{}``.
    """

    code: str
    charge: bool
    remain_times: int
    result: BusinessResult | None = None
    detail: str = ""
    """Appended to the message (why a signature was refused); never holds a secret."""

    @property
    def msg(self) -> str:
        message = SYSTEM_MESSAGES[self.code]
        return f"{message}: {self.detail}" if self.detail else message

    @property
    def business_code(self) -> int | None:
        return None if self.result is None else self.result.code

    def render(self) -> bytes:
        result = "{}" if self.result is None else self.result.render_json()
        msg = json.dumps(self.msg, ensure_ascii=False)  # the gateway sends its Chinese messages unescaped
        return (
            f'{{"code":{_quote(self.code)},"charge":{"true" if self.charge else "false"},'
            f'"remainTimes":{int(self.remain_times)},"remainSeconds":-1,"msg":{msg},"result":{result}}}'
        ).encode()
