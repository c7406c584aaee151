"""The contract every step of the pipeline keeps, after arroyo's ``ProcessingStrategy``.

A step receives work with ``submit`` and hands what it produced to the next step it was built with; its
``poll`` does its own work, then polls that next step, so the processor turns the whole chain by polling its
head. ``close`` says no more work will come (a drain: what is started is finished, nothing new begins) and
``join`` finishes what was taken until a deadline; both pass on down the chain. ``terminate`` gives up at once.
None of these may block the poll loop, except ``join``, which waits at most until its deadline.
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
        """Moves finished work on, then polls the next step. Never blocks."""

    def close(self) -> None:
        """No more ``submit`` will come: what was taken is finished as it is (passed on down the chain)."""

    def join(self, deadline: float) -> None:
        """Finishes what was taken, giving up at ``deadline`` (``time.monotonic()``); then joins the next step."""

    def terminate(self) -> None:
        """Gives up what was taken, at once (passed on down the chain)."""
