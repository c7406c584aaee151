"""A planner's state as plain data, to keep it across restarts (the budget topic, ``service.pipeline.budget_state``).

What the pacing learned and would otherwise learn again for days: the arrival curve (its learned rates, and today's
images and watched time by bin), the target's counts (each collection's part of the images, images per event,
today's correction), and the share of the input the curve was learned for. A state from an earlier budget day is
folded in as if that day had ended with the process (``ArrivalCurve.end_day``): what the process watched of it
counts, the time it was down does not. Numbers only, so JSON carries it; a malformed state raises ``ValueError``
(or ``TypeError``, ``KeyError``) before anything is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.budget.curve import ArrivalCurve
from service.budget.target import WaitTarget

__all__ = ["restore_state", "saved_state"]

VERSION = 1


def saved_state(curve: ArrivalCurve, target: WaitTarget, share: float | None) -> dict[str, object]:
    return {"version": VERSION, "share": share, "curve": curve.saved(), "target": target.saved()}


def restore_state(state: Mapping[str, Any], curve: ArrivalCurve, target: WaitTarget, *, same_day: bool) -> float | None:
    """Puts ``state`` back into ``curve`` and ``target``; returns the share the curve was learned for."""
    if state.get("version") != VERSION:
        raise ValueError(f"planner state version {state.get('version')!r}, expected {VERSION}")
    share = state.get("share")
    if share is not None and not (isinstance(share, int | float) and 0 < share <= 1):
        raise ValueError(f"share {share!r} out of (0, 1]")
    curve_state, target_state = dict(state["curve"]), dict(state["target"])
    curve.restore(curve_state)
    target.restore(target_state)
    if not same_day:
        curve.end_day()
        target.start_day()
    return None if share is None else float(share)
