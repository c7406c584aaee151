"""Gate: ready batches -> the call step, unless their collection or account is stopped (a pause, a tripped brake).

Sits between an account's batch step and its call step. A paused account, a paused collection and a collection
whose brake tripped (``service.control``) start no call: their batches stay in the batcher, their events wait in
the ledger (nothing failed, nothing committed past them), and the batch step chooses among the other
collections' batches (``holds``). Every batch that does go is counted for the brake at that moment; one that
would take its collection over the hour's limit trips the brake instead and goes back to the batcher.

The gate asks the replica's ``Controls``; ``NO_CONTROLS`` (nothing stopped, no brake) is what a pipeline without
a control topic has.
"""

from __future__ import annotations

from typing import Final, Protocol

from service.pipeline.batcher import ReadyBatch
from service.pipeline.pending import PendingEvent
from service.pipeline.steps.abstract import MessageRejected, Step

__all__ = ["NO_CONTROLS", "Calls", "Controls", "GateStep"]


class Controls(Protocol):
    """What the replica's control view answers (``service.control.replica.ReplicaControls``). Nothing blocks."""

    def holds(self, account: str, collection: str) -> bool:
        """Whether calls for this collection of this account may not start (paused, braked, not read yet)."""

    def account_paused(self, account: str) -> bool:
        """Whether the whole account is stopped: its QPS demand is then 0."""

    def admit(self, collection: str, images: int) -> bool:
        """Whether ``images`` more of ``collection`` may be handed to a call now; False trips its brake."""

    def counted(self, collection: str, images: int) -> None:
        """``images`` of ``collection`` were handed to a call."""

    def poll(self) -> None:
        """Every turn of the poll loop: reads the control topic, writes this replica's trips. Never blocks."""

    def close(self) -> None:
        """On shutdown."""


class Calls(Step[ReadyBatch[PendingEvent]], Protocol):
    """The call step, as the gate sees it."""

    def accepting(self) -> bool: ...


class _NoControls:
    def holds(self, account: str, collection: str) -> bool:
        return False

    def account_paused(self, account: str) -> bool:
        return False

    def admit(self, collection: str, images: int) -> bool:
        return True

    def counted(self, collection: str, images: int) -> None:
        pass

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


NO_CONTROLS: Final[Controls] = _NoControls()


class GateStep:
    """The batch step's ``CallStarter``: the call step behind the account's and its collections' stops."""

    def __init__(self, *, account: str, controls: Controls, calls: Calls) -> None:
        self._account = account
        self._controls = controls
        self._calls = calls

    def holds(self, collection: str) -> bool:
        return self._controls.holds(self._account, collection)

    def accepting(self) -> bool:
        return self._calls.accepting()

    def submit(self, ready: ReadyBatch[PendingEvent]) -> None:
        collection, images = ready.batch.collection, len(ready.batch.items)
        if self.holds(collection) or not self._controls.admit(collection, images):
            raise MessageRejected
        self._calls.submit(ready)
        self._controls.counted(collection, images)

    def poll(self) -> None:
        self._calls.poll()

    def close(self) -> None:
        self._calls.close()

    def join(self, deadline: float) -> None:
        self._calls.join(deadline)

    def terminate(self) -> None:
        self._calls.terminate()
