"""The sandbox's admin endpoints (``/admin/*``): seed and list images, faults, quota, statistics.

No authentication: the sandbox is for loopback. Each function takes the state and the request's path and body
(or query) and returns the status and the JSON document to answer; the HTTP handler only reads and writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Final

from pydantic import BaseModel, ConfigDict, ValidationError

from service.sandbox.seed import parse_seed_record
from service.sandbox.state import QuotaStatus, SandboxState

__all__ = ["get", "post"]

_CHINA_STANDARD_TIME: Final = timezone(timedelta(hours=8))

Answer = tuple[HTTPStatus, dict[str, object]]


class _QuotaUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    limit: int | None = None
    remaining: int | None = None
    reset: bool = False


class _InvalidAdminRequest(Exception):
    """An admin call's body or query is unusable; answered 400 with the message."""


def post(state: SandboxState, path: str, body: bytes) -> Answer:
    routes: dict[str, Callable[[SandboxState, object], dict[str, object]]] = {
        "/admin/images": _seed_images,
        "/admin/faults": _update_faults,
        "/admin/quota": _configure_quota,
        "/admin/reset-stats": _reset_stats,
    }
    route = routes.get(path)
    if route is None:
        return HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {path}"}
    try:
        document = json.loads(body) if body.strip() else {}
        return HTTPStatus.OK, route(state, document)
    except (ValueError, _InvalidAdminRequest) as error:
        return HTTPStatus.BAD_REQUEST, {"error": _describe(error)}


def get(state: SandboxState, path: str, query: dict[str, list[str]]) -> Answer:
    if path == "/admin/stats":
        stats = asdict(state.stats())
        stats["quota"] = _quota_json(state.quota_status())
        return HTTPStatus.OK, stats
    if path == "/admin/images":
        return _list_images(state, query)
    if path == "/admin/faults":
        return HTTPStatus.OK, state.faults.model_dump()
    if path == "/admin/quota":
        return HTTPStatus.OK, _quota_json(state.quota_status())
    return HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {path}"}


def _seed_images(state: SandboxState, document: object) -> dict[str, object]:
    batch = parse_seed_record(document)
    added = state.seed_images(batch.collection, batch.items)
    return {"collection_name": batch.collection, "added": added, "count": state.collection_size(batch.collection)}


def _list_images(state: SandboxState, query: dict[str, list[str]]) -> Answer:
    """All collections' sizes; or one collection's count and images (sorted, the first ``limit`` of them)."""
    names = query.get("collection_name")
    if not names:
        return HTTPStatus.OK, {"collections": state.collection_sizes()}
    limit = query.get("limit", [""])[0]
    if limit and not limit.isdigit():
        return HTTPStatus.BAD_REQUEST, {"error": "limit must be a whole number"}
    images = state.collection_images(names[0]) or []
    return HTTPStatus.OK, {
        "collection_name": names[0],
        "exists": state.collection_size(names[0]) is not None,
        "count": len(images),
        "items": [{"product_id": p, "image_id": i} for p, i in images[: int(limit) if limit else None]],
    }


def _update_faults(state: SandboxState, document: object) -> dict[str, object]:
    if not isinstance(document, dict):
        raise _InvalidAdminRequest("the body must be a JSON object of fault settings")
    return state.update_faults(document).model_dump()


def _configure_quota(state: SandboxState, document: object) -> dict[str, object]:
    update = _QuotaUpdate.model_validate(document)
    return _quota_json(state.configure_quota(limit=update.limit, remaining=update.remaining, reset=update.reset))


def _reset_stats(state: SandboxState, _document: object) -> dict[str, object]:
    state.reset_stats()
    return {"status": "ok"}


def _quota_json(status: QuotaStatus) -> dict[str, object]:
    return {
        "limit": status.limit,
        "remaining": status.remaining,
        "resets_at": datetime.fromtimestamp(status.resets_at, _CHINA_STANDARD_TIME).isoformat(),
    }


def _describe(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}" for item in error.errors()
        )
    return str(error)
