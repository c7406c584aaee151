"""The budget topic in memory, for the simulated day (``bench.simulated_day``): replicas that count each other's
calls of the day, read each other's needs (``service.budget.demand``) and a restart that takes its member's count
and planner state back, as the service does through ``service.pipeline.budget_state`` (without a cap: calls are
counted as they start). A need reaches the others ``NEED_DELAY_SECONDS`` after it was published (the service reads
the topic on every turn of its loop: about a second, with the producer's linger and the broker's round trip)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from service.budget.curve import DAY_SECONDS
from service.budget.demand import NEED_EXPIRY_SECONDS
from service.budget.shared import SharedSpend

__all__ = ["NEED_DELAY_SECONDS", "MemoryBoard"]

NEED_DELAY_SECONDS = 1.0

State = Callable[[], dict[str, object]]


class MemoryBoard:
    """Every member's calls by day, and the last planner state each one told (read only when it restarts)."""

    def __init__(self) -> None:
        self.now = 0.0
        """The virtual clock, moved on by whoever drives the members (``bench.simulated_day.BudgetPolicy``)."""
        self._spent: dict[tuple[int, str], int] = {}
        self._states: dict[str, tuple[int, State]] = {}
        self._saved: dict[str, tuple[int, dict[str, object]]] = {}
        self._needs: dict[str, list[tuple[float, list[float]]]] = {}
        """Each member's needs as published (when, need): the latest one at least a delay old is the one seen."""

    def member(self, name: str) -> SharedSpend:
        return _MemberSpend(self, name, lambda: int(self.now // DAY_SECONDS))

    def published(self, name: str, need: Sequence[float]) -> None:
        now = self.now
        kept = self._needs.get(name, [])
        settled = [entry for entry in kept if entry[0] <= now - NEED_DELAY_SECONDS][-1:]
        fresh = [entry for entry in kept if entry[0] > now - NEED_DELAY_SECONDS]
        self._needs[name] = [*settled, *fresh, (now, list(need))]

    def needs(self, name: str) -> list[Sequence[float]]:
        """The other members' needs as seen now: published at least a delay ago, today, within the expiry."""
        now = self.now
        seen: list[Sequence[float]] = []
        for member, published in self._needs.items():
            visible = [(at, need) for at, need in published if at <= now - NEED_DELAY_SECONDS]
            if member == name or not visible:
                continue
            at, need = visible[-1]
            if now - at <= NEED_EXPIRY_SECONDS and at // DAY_SECONDS == now // DAY_SECONDS:
                seen.append(need)
        return seen

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

    def need(self, calls: Sequence[float]) -> None:
        self._board.published(self._name, calls)

    def needs(self) -> list[Sequence[float]]:
        return self._board.needs(self._name)

    def restored(self) -> tuple[int, dict[str, object] | None, bool]:
        day = self._today()
        saved = self._board.saved(self._name)
        if saved is None:
            return self._board.spent(day, self._name), None, False
        return self._board.spent(day, self._name), saved[1], saved[0] == day
