"""An executor for tests of the call step and the loop: calls wait until the test resolves them, no threads."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from service.api.models import BatchResult, DeleteBatch, ItemResult, ItemStatus
from service.api.rate_limit import SendSlot

__all__ = ["HeldExecutor"]


class HeldExecutor(Executor):
    """Holds every submitted call until the test resolves it; the request 'leaves' at once."""

    def __init__(self) -> None:
        self.calls: list[tuple[DeleteBatch, Future[BatchResult]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        batch, slot = args
        assert isinstance(slot, SendSlot)
        slot.sent()
        future: Future[BatchResult] = Future()
        self.calls.append((batch, future))
        return future

    def resolve(self, collection: str, status: ItemStatus = ItemStatus.DELETED) -> None:
        for batch, future in list(self.calls):
            if batch.collection == collection:
                self.calls.remove((batch, future))
                future.set_result(BatchResult(items=tuple(ItemResult(i, status) for i in batch.items)))
                return
        raise AssertionError(f"no call for {collection}")

    def fail(self, error: Exception, collection: str | None = None) -> None:
        """The oldest call (or the oldest for ``collection``) fails with ``error``."""
        index = next(i for i, (batch, _) in enumerate(self.calls) if collection in (None, batch.collection))
        _batch, future = self.calls.pop(index)
        future.set_exception(error)
