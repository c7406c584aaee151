"""What the control topic says: which accounts and collections are stopped, by whom, and why. Pure.

A record's key names what it stops (``collection:NAME`` or ``account:NAME``); its value says how
(``{"state": "paused"|"braked", "by", "at", "reason"}``); a tombstone (no value) lets it go again. The topic is
compacted and has one partition, so every replica reads the same records in the same order and ends up with the
same table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ControlTable", "Kind", "State", "Stop", "Target", "UnknownRecord"]


class Kind(StrEnum):
    COLLECTION = "collection"
    ACCOUNT = "account"


class State(StrEnum):
    PAUSED = "paused"
    """Stopped on purpose by an operator (``imgsweep pause``)."""
    BRAKED = "braked"
    """A collection whose brake tripped: more images in an hour than ``IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR``."""


class UnknownRecord(ValueError):
    """A control record that is not imgsweep's (a key or value of another shape): ignored, with a warning."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a record stops: a collection (of whichever account) or an account (every collection of it)."""

    kind: Kind
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, key: str) -> Target:
        kind, sep, name = key.partition(":")
        if not sep or not name or kind not in Kind.__members__.values():
            raise UnknownRecord(f"key {key!r} is not collection:NAME or account:NAME")
        return cls(Kind(kind), name)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Stop:
    """Why a target is stopped: its state, who stopped it (a person or a replica), when (ISO 8601) and why."""

    state: State
    by: str
    at: str
    reason: str = ""

    def encode(self) -> bytes:
        return json.dumps({"state": self.state, "by": self.by, "at": self.at, "reason": self.reason}).encode()

    @classmethod
    def decode(cls, value: bytes) -> Stop:
        try:
            document = json.loads(value)
            return cls(
                State(document["state"]), str(document["by"]), str(document["at"]), str(document.get("reason", ""))
            )
        except (ValueError, KeyError, TypeError) as error:
            raise UnknownRecord(f"value is not a control record ({error})") from None

    def describe(self) -> str:
        because = f": {self.reason}" if self.reason else ""
        return f"{self.state} by {self.by} at {self.at}{because}"


class ControlTable:
    """The stops in force: what the topic says, plus brakes this replica tripped that it has not read back yet.

    A brake tripped here stops its collection at once; once its record comes back from the topic the topic's
    entry rules (a resume's tombstone lets it go). A tombstone read before the trip's own record comes back is
    an older one (the topic has one partition, and a resume follows the stop it lifts), so it does not lift it.
    """

    def __init__(self) -> None:
        self._topic: dict[Target, Stop] = {}
        self._local: dict[Target, Stop] = {}

    def heard(self, target: Target, stop: Stop | None) -> Stop | None:
        """A record read from the topic; returns the entry it replaced on the topic (None if there was none)."""
        before = self._topic.pop(target, None)
        if stop is not None:
            self._topic[target] = stop
            self._local.pop(target, None)
        return before

    def tripped(self, collection: str, stop: Stop) -> None:
        """This replica tripped a collection's brake: it stops here now, on the others once they read it."""
        self._local[Target(Kind.COLLECTION, collection)] = stop

    def unconfirmed(self) -> dict[Target, Stop]:
        """Brakes tripped here whose record has not come back from the topic yet."""
        return dict(self._local)

    def stop_of(self, target: Target) -> Stop | None:
        return self._local.get(target) or self._topic.get(target)

    def holds(self, account: str, collection: str) -> bool:
        """Whether calls for this collection of this account may not start."""
        return (
            self.stop_of(Target(Kind.COLLECTION, collection)) is not None
            or self.stop_of(Target(Kind.ACCOUNT, account)) is not None
        )

    def stops(self) -> dict[Target, Stop]:
        """Every stop in force, ordered by target."""
        merged = {**self._topic, **self._local}
        return dict(sorted(merged.items(), key=lambda entry: (entry[0].kind, entry[0].name)))
