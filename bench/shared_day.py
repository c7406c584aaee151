"""The budget topic in memory, for the simulated day (``bench.simulated_day``): replicas that count each other's
calls of the day, and a restart that takes its member's count and planner state back, as the service does
through ``service.pipeline.budget_state`` (without a cap: calls are counted as they start)."""

from __future__ import annotations

from collections.abc import Callable

from service.budget.shared import SharedSpend

__all__ = ["MemoryBoard"]

State = Callable[[], dict[str, object]]


class MemoryBoard:
    """Every member's calls by day, and the last planner state each one told (read only when it restarts)."""

    def __init__(self) -> None:
        self._spent: dict[tuple[int, str], int] = {}
        self._states: dict[str, tuple[int, State]] = {}
        self._saved: dict[str, tuple[int, dict[str, object]]] = {}

    def member(self, name: str, today: Callable[[], int]) -> SharedSpend:
        return _MemberSpend(self, name, today)

    def stopped(self, name: str) -> None:
        """The member's process ends: its last state is what it wrote (the service: every 5 min and at shutdown;
        here the state at the moment it stops, the best case)."""
        if name in self._states:
            day, state = self._states[name]
            self._saved[name] = (day, state())

    def spent(self, day: int, name: str) -> int:
        return self._spent.get((day, name), 0)

    def others(self, day: int, name: str) -> int:
        return sum(count for (when, member), count in self._spent.items() if when == day and member != name)

    def told(self, day: int, name: str, started: int, state: State) -> None:
        self._spent[day, name] = started
        self._states[name] = (day, state)

    def saved(self, name: str) -> tuple[int, dict[str, object]] | None:
        return self._saved.get(name)


class _MemberSpend:
    def __init__(self, board: MemoryBoard, name: str, today: Callable[[], int]) -> None:
        self._board = board
        self._name = name
        self._today = today

    def others(self) -> int:
        return self._board.others(self._today(), self._name)

    def may_start(self, started: int) -> bool:
        return True

    def started(self, started: int, state: State) -> None:
        self._board.told(self._today(), self._name, started, state)

    def restored(self) -> tuple[int, dict[str, object] | None, bool]:
        day = self._today()
        saved = self._board.saved(self._name)
        if saved is None:
            return self._board.spent(day, self._name), None, False
        return self._board.spent(day, self._name), saved[1], saved[0] == day
