"""The account's fatal state: held, one probe at a time, the backoff doubling up to its bound, resumed by a probe's
answer only."""

from __future__ import annotations

from service.api.fatal_gate import FatalGate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_probes_back_off_from_the_first_wait_to_the_bound_and_a_probe_answer_resumes() -> None:
    clock = Clock()
    gate = FatalGate(first_probe_seconds=60, max_probe_seconds=900, clock=clock)
    assert not gate.holding()
    assert not gate.starting()  # not halted: an ordinary call, not a probe
    gate.fatal("10045", "access key unknown", probe=False)
    waits = []
    for _ in range(6):
        state = gate.state()
        assert state is not None
        waits.append(state.next_probe_in_seconds)
        clock.now += state.next_probe_in_seconds - 1
        assert gate.holding()
        clock.now += 1
        assert not gate.holding()
        assert gate.starting()  # the probe
        assert gate.holding()  # one probe at a time
        gate.fatal("10045", "access key unknown", probe=True)
    assert waits == [60, 120, 240, 480, 900, 900]
    clock.now += 900
    assert gate.starting()
    assert gate.answered(probe=True)
    assert not gate.halted
    assert gate.state() is None
    gate.fatal("10045", "again", probe=False)  # a new halt starts from the first wait
    state = gate.state()
    assert state is not None
    assert state.next_probe_in_seconds == 60


def test_answers_of_calls_started_before_the_halt_move_nothing() -> None:
    clock = Clock()
    gate = FatalGate(clock=clock)
    gate.fatal("http_401", "unauthorized", probe=False)
    gate.fatal("http_401", "unauthorized", probe=False)
    assert not gate.answered(probe=False)
    state = gate.state()
    assert state is not None
    assert (state.next_probe_in_seconds, state.probes, state.reason()) == (60, 0, "API error http_401: unauthorized")


def test_an_abandoned_probe_is_due_again_and_long_messages_are_cut() -> None:
    clock = Clock()
    gate = FatalGate(clock=clock)
    gate.fatal("10047", "x" * 1000, probe=False)
    clock.now = 60
    assert gate.starting()
    gate.abandoned(probe=True)
    assert not gate.holding()
    state = gate.state()
    assert state is not None
    assert len(state.message) == 200
