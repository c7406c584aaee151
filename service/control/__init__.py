"""Stopping deletions on purpose and by the brake: the control topic, its table, the brake, the commands.

``state`` (what a control record says; pure), ``brake`` (images a collection lost in a sliding hour; pure),
``topic`` (the compacted control topic: made, read, written; blocking), ``replica`` (what a running replica
obeys, followed from the poll loop; ``service.pipeline.steps.gate`` asks it), ``cli`` (``imgsweep pause``,
``resume``, ``brake``). docs/decisions/0017-brake-and-pause.md.
"""

from service.control.brake import Brake
from service.control.state import ControlTable, Kind, State, Stop, Target, UnknownRecord

__all__ = ["Brake", "ControlTable", "Kind", "State", "Stop", "Target", "UnknownRecord"]
