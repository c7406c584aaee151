"""The contract every step of the pipeline keeps, after arroyo's ``ProcessingStrategy``.

A step receives work with ``submit`` and hands what it produced to the next step it was built with. None of
its methods may block the poll loop, except ``join``, which waits at most until its deadline.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

__all__ = ["MessageRejected", "Step"]

T_contra = TypeVar("T_contra", contravariant=True)


class MessageRejected(Exception):
    """Backpressure: the step cannot take this now. The caller keeps it, pauses its input and tries again."""


class Step(Protocol[T_contra]):
    def submit(self, item: T_contra) -> None:
        """Takes one item, or raises ``MessageRejected`` without having taken it. Never blocks."""

    def poll(self) -> None:
        """Moves finished work to the next step. Never blocks."""

    def join(self, deadline: float) -> None:
        """Finishes what was taken, giving up at ``deadline`` (``time.monotonic()``); may block until then."""
