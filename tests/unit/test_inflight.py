"""A blocking call on a thread of its own (the transaction's commit, the early ``init_transactions``): the caller
goes on, then reads what the call returned or raised, on its own thread."""

from __future__ import annotations

import threading

import pytest

from service.pipeline.inflight import InFlight


def test_the_caller_goes_on_while_the_call_waits_and_then_reads_its_value() -> None:
    answer, finished = threading.Event(), threading.Event()
    call = InFlight(lambda: answer.wait(5) and "committed", finished=finished.set)
    assert not call.done()
    assert not call.wait(0.01)
    with pytest.raises(RuntimeError, match="under way"):
        call.result()
    answer.set()
    assert call.wait(5)
    assert finished.wait(5)
    assert call.result() == "committed"
    assert call.seconds > 0


def test_what_the_call_raised_is_raised_again_on_the_callers_thread() -> None:
    def refused() -> None:
        raise ValueError("the broker said no")

    call = InFlight(refused)
    assert call.wait(5)
    with pytest.raises(ValueError, match="said no"):
        call.result()
