"""Done offsets in the committed offset's metadata: round trips, the size limit, hostile input, the shorter form."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.pipeline.offset_metadata import MAX_METADATA_CHARS, decode_done, encode_done

RUNS = "imgsweep1r"
BITS = "imgsweep1b"
SPAN = 1 << 22
"""How far above the base a map may name offsets."""

_bases = st.integers(0, 2**62)
_dense = st.sets(st.integers(1, 3000), max_size=600)
"""Up to 600 offsets within 3000 of the base."""
_sparse = st.sets(st.integers(1, 2**23), max_size=200)
"""Offsets far apart, some beyond the span."""


def _from_runs(gaps_and_lengths: list[tuple[int, int]]) -> set[int]:
    done: set[int] = set()
    position = 1
    for gap, length in gaps_and_lengths:
        position += gap
        done.update(range(position, position + length))
        position += length
    return done


_runs = st.lists(st.tuples(st.integers(1, 500), st.integers(1, 500)), max_size=40).map(_from_runs)
"""Alternating holes and finished stretches, as one slow event behind many fast ones makes them."""


def _kept_prefix(base: int, done: set[int], kept: int) -> frozenset[int]:
    return frozenset(sorted(offset for offset in done if offset > base)[:kept])


@settings(max_examples=150, deadline=None)
@given(base=_bases, deltas=st.one_of(_dense, _sparse, _runs), below=st.sets(st.integers(0, 100), max_size=10))
def test_decoding_gives_back_the_recorded_prefix(base: int, deltas: set[int], below: set[int]) -> None:
    done = {base + delta for delta in deltas} | {base - offset for offset in below}  # at or below the base: ignored
    encoded = encode_done(base, done)
    above = {offset for offset in done if offset > base}
    assert len(encoded.metadata) <= MAX_METADATA_CHARS
    assert 0 <= encoded.kept <= len(above)
    assert encoded.kept >= min(len({offset for offset in above if offset - base < SPAN}), 500)  # 500 always fit
    assert decode_done(base, encoded.metadata) == _kept_prefix(base, done, encoded.kept)
    assert (encoded.metadata == "") == (encoded.kept == 0)


@settings(max_examples=150, deadline=None)
@given(base=_bases, deltas=st.one_of(_dense, _sparse, _runs), limit=st.integers(0, 80))
def test_the_metadata_never_passes_a_small_limit(base: int, deltas: set[int], limit: int) -> None:
    done = {base + delta for delta in deltas}
    encoded = encode_done(base, done, limit=limit)
    assert len(encoded.metadata) <= limit
    assert decode_done(base, encoded.metadata) == _kept_prefix(base, done, encoded.kept)
    next_offsets = sorted(done)[encoded.kept : encoded.kept + 1]
    if next_offsets and next_offsets[0] - base < SPAN:
        # What was left out did not fit: one more offset would have passed the limit.
        longer = encode_done(base, _kept_prefix(base, done, encoded.kept + 1), limit=10**9)
        assert len(longer.metadata) > limit


def test_the_longest_prefix_that_fits_is_kept() -> None:
    done = {2, *range(4, 25)}  # three bytes of bits (14 characters) hold offsets up to 23: 21 of the 22
    encoded = encode_done(0, done, limit=14)
    assert encoded.kept == 21  # a proportional guess alone stopped at 18
    assert encoded.metadata.startswith(BITS)
    assert len(encoded.metadata) == 14
    assert decode_done(0, encoded.metadata) == frozenset(sorted(done)[:21])


def test_offsets_beyond_the_span_are_left_out_instead_of_voiding_the_map() -> None:
    encoded = encode_done(100, {105, 100 + SPAN - 1, 100 + SPAN, 100 + SPAN + 5})
    assert encoded.kept == 2
    assert decode_done(100, encoded.metadata) == {105, 100 + SPAN - 1}
    assert encode_done(100, {100 + SPAN}) == ("", 0)


def test_a_long_map_keeps_a_prefix_under_the_default_limit() -> None:
    done = set(range(2, 100_000, 2))  # every other offset: neither form fits 50,000 offsets in 3900 characters
    encoded = encode_done(0, done)
    assert 0 < encoded.kept < len(done)
    assert len(encoded.metadata) <= MAX_METADATA_CHARS
    assert decode_done(0, encoded.metadata) == frozenset(sorted(done)[: encoded.kept])


def test_offsets_at_or_below_the_base_are_not_recorded() -> None:
    assert encode_done(100, [100, 99, 3, -1]) == ("", 0)
    encoded = encode_done(100, [50, 100, 101, 105])
    assert encoded.kept == 2
    assert decode_done(100, encoded.metadata) == {101, 105}


def test_nothing_done_is_empty_metadata() -> None:
    assert encode_done(7, []) == ("", 0)
    assert decode_done(7, "") == frozenset()


def test_a_contiguous_stretch_is_written_as_runs() -> None:
    encoded = encode_done(1000, range(1002, 1502))  # one slow event at 1000, 1001 not done, 500 done after it
    assert encoded.metadata == RUNS + "2.dw"  # 2 not done (1000, 1001), then 500 (base 36 "dw") done
    assert encoded.kept == 500
    assert decode_done(1000, encoded.metadata) == frozenset(range(1002, 1502))


def test_scattered_offsets_are_written_as_bits_when_shorter() -> None:
    done = range(1, 400, 2)  # every other offset: 200 runs of one, but only 50 bytes of bits
    encoded = encode_done(0, done)
    assert encoded.metadata.startswith(BITS)
    bits = base64.urlsafe_b64decode(encoded.metadata[len(BITS) :])
    assert bits == bytes([0b10101010] * 50)
    assert decode_done(0, encoded.metadata) == frozenset(done)


@settings(max_examples=100, deadline=None)
@given(base=_bases, deltas=st.one_of(_dense, _sparse, _runs).filter(bool))
def test_the_shorter_form_is_chosen(base: int, deltas: set[int]) -> None:
    ordered = sorted(delta for delta in deltas if delta < SPAN)
    encoded = encode_done(base, {base + delta for delta in deltas}, limit=10**9)
    if not ordered:
        assert encoded == ("", 0)
        return
    bits_chars = len(BITS) + len(base64.urlsafe_b64encode(bytes(ordered[-1] // 8 + 1)))
    runs_chars = len(RUNS) + _runs_chars(ordered)
    assert len(encoded.metadata) == min(bits_chars, runs_chars)
    assert encoded.metadata.startswith(RUNS if runs_chars <= bits_chars else BITS)


def _runs_chars(deltas: list[int]) -> int:
    """The runs form's length, counted independently of the encoder: base-36 digits of each run, and the dots."""
    runs: list[int] = []
    position = 0
    for delta in deltas:
        if delta == position:
            runs[-1] += 1
        else:
            runs += [delta - position, 1]
        position = delta + 1
    return sum(len(_base36(run)) for run in runs) + len(runs) - 1


def _base36(value: int) -> str:
    digits = ""
    while True:
        value, digit = divmod(value, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
        if value == 0:
            return digits


@pytest.mark.parametrize(
    "metadata",
    [
        "",
        "imgsweep",
        "imgsweep1",
        RUNS,
        BITS + "=",
        RUNS + ".",
        RUNS + "1..2",
        RUNS + "1.0",  # an empty run of done offsets
        RUNS + "-1.2",
        RUNS + "1.-2",
        RUNS + "1.zzzzzzzzzzzz",  # billions of done offsets in a few characters
        RUNS + "zzzzzzzzz.1",  # a hole beyond any span imgsweep records
        RUNS + ".".join(["1"] * 2000) + ".zzzzz",  # many short runs, then one too long
        RUNS + "1." + "9" * 5000,  # more digits than int() converts
        RUNS + "1.2.x!",
        RUNS + "1\x00.2",
        BITS + "AAAA" + "A",  # truncated base64
        BITS + "QUJD" + "QU",
        BITS + "Q",
        "imgsweep2r1.2",  # a future version
        "imgsweep1x1.2",
        '{"tool":"kafka-consumer-groups"}',  # another tool's metadata
        "parallel-consumer:abc==",
        "é" * 100,
    ],
)
def test_metadata_it_did_not_write_means_nothing_is_done(metadata: str) -> None:
    assert decode_done(10, metadata) == frozenset()


@settings(max_examples=200, deadline=None)
@given(
    base=_bases,
    metadata=st.one_of(
        st.text(max_size=60),
        st.text(max_size=60).map(lambda text: RUNS + text),
        st.text(max_size=60).map(lambda text: BITS + text),
        st.lists(
            st.one_of(st.integers(-5, 5000), st.integers(2**22 - 5, 2**40)).map(lambda n: format(n, "x")), max_size=12
        ).map(lambda parts: RUNS + ".".join(parts)),
    ),
)
def test_decoding_anything_never_raises_and_stays_bounded(base: int, metadata: str) -> None:
    done = decode_done(base, metadata)
    assert len(done) <= 1 << 22
    assert all(base <= offset <= base + (1 << 22) for offset in done)


@settings(max_examples=100, deadline=None)
@given(base=_bases, deltas=st.one_of(_dense, _sparse, _runs).filter(bool), cut=st.integers(1, 8))
def test_truncated_metadata_decodes_to_nothing_or_a_subset(base: int, deltas: set[int], cut: int) -> None:
    done = {base + delta for delta in deltas}
    metadata = encode_done(base, done).metadata
    # A cut shortens the last run (or the bitset) or leaves a part that does not parse: never an offset not done.
    assert decode_done(base, metadata[:-cut]) <= done
