"""Poison records: a record whose handling kills the process is dead-lettered after its second try.

An error raised while one event is handled (``HandlingFailed``) dead-letters that event as ``internal_error`` on
the spot (``Ledger.fail``). What no ``except`` can catch (the process killed by a signal, out of memory, a crash in
a C library) leaves the record uncommitted, and the next process reads it again. ``PoisonMarks`` remembers, in a
small file per partition, which record was being handled; the next process finds the mark, counts a failure for
that offset, and once an offset has failed ``FAILURES_BEFORE_DEAD_LETTER`` times it is dead-lettered without
another try (docs/decisions/0018-poison-records.md).

A mark is written before a record is handled and cleared after, by the poll loop's thread only: two stores of
a few dozen bytes into the file mapped shared (``mmap``: no system call), no ``fsync`` (the page cache outlives
a killed process; a container restart keeps ``/tmp``, the chart's ``emptyDir``). A mark that cannot be written
is logged once and the marks are off from then on: never fatal.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from service.pipeline.pending import SourceRecord

__all__ = ["FAILURES_BEFORE_DEAD_LETTER", "HandlingFailed", "PoisonMarks", "handling_failed"]

log = logging.getLogger(__name__)

FAILURES_BEFORE_DEAD_LETTER: Final = 2
"""An offset that stopped the process this many times is dead-lettered without another try: the first failure
may be bad luck (a kill during a deploy), the second after a restart is the record."""

_NONE: Final = -1
_LINE: Final = "{handling:>20} {failed:>20} {count:>6}\n"
_SIZE: Final = len(_LINE.format(handling=0, failed=0, count=0))
"""Every mark is written whole, at the same length (the file's)."""
_SAFE: Final = re.compile(r"[^A-Za-z0-9._-]")


class HandlingFailed(Exception):
    """Handling one record raised (not its content: imgsweep's own error), or it stopped the process before.

    Its dead letter's ``imgsweep_error_class`` is ``internal_error``: replay it once the bug is fixed."""

    error_class: Final = "internal_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:1000]

    def __str__(self) -> str:
        return self.reason


def handling_failed(step: str, error: BaseException) -> HandlingFailed:
    """The failure of ``step`` on one record, named by its exception's type and text (bounded)."""
    text = str(error)
    return HandlingFailed(f"{step} failed: {type(error).__name__}{': ' + text[:300] if text else ''}")


@dataclass(slots=True)
class _Mark:
    handling: int = _NONE
    """The offset being handled now (``_NONE``: none)."""
    failed: int = _NONE
    """The last offset that stopped a process while it was being handled."""
    count: int = 0
    """How many times ``failed`` did."""
    fd: int | None = None
    view: mmap.mmap | None = None
    """The file mapped shared: a write is a store to memory the kernel keeps when the process dies (no syscall)."""


class PoisonMarks:
    """Per partition of the input topic: the record being handled, and how often one stopped the process.

    ``directory`` None keeps the marks in memory only (unit tests, and when the directory cannot be written):
    nothing is then remembered across a restart.
    """

    def __init__(self, directory: Path | None, *, group: str, limit: int = FAILURES_BEFORE_DEAD_LETTER) -> None:
        self._directory = directory
        self._prefix = f"imgsweep-poison-{_SAFE.sub('_', group)}"
        self._limit = limit
        self._marks: dict[tuple[str, int], _Mark] = {}

    @classmethod
    def in_temp_dir(cls, group: str) -> PoisonMarks:
        """Files under ``$TMPDIR`` (``/tmp``: in the chart, an ``emptyDir`` that outlives a container restart)."""
        return cls(Path(tempfile.gettempdir()), group=group)

    def failures(self, record: SourceRecord) -> int:
        """How many times handling this record stopped a process (with the router's, for a forwarded record); at
        ``limit`` or more it must not be tried."""
        mark = self._mark(record)
        earlier = 0 if record.origin is None else record.origin.failures  # the router's (decision 0022)
        return earlier + (mark.count if mark.failed == record.offset else 0)

    def condemned(self, record: SourceRecord) -> bool:
        return self.failures(record) >= self._limit

    @contextmanager
    def handling(self, record: SourceRecord) -> Iterator[None]:
        """Marks the record as being handled while the block runs; a process that dies inside leaves the mark.

        An exception leaving the block is not the process dying: the mark is cleared."""
        mark = self._mark(record)
        mark.handling = record.offset
        self._write(record, mark)
        try:
            yield
        finally:
            mark.handling = _NONE
            if mark.failed == record.offset:  # handled this time: whatever stopped the process before is gone
                mark.failed, mark.count = _NONE, 0
            self._write(record, mark)

    def forget(self, record: SourceRecord) -> None:
        """The record was dead-lettered without a try: its count is done with."""
        mark = self._mark(record)
        if mark.failed == record.offset:
            mark.failed, mark.count = _NONE, 0
            self._write(record, mark)

    def close(self) -> None:
        for mark in self._marks.values():
            _release(mark)
        self._marks.clear()

    def _mark(self, record: SourceRecord) -> _Mark:
        key = (record.topic, record.partition)
        mark = self._marks.get(key)
        if mark is None:
            mark = self._marks[key] = self._open(record)
        return mark

    def _open(self, record: SourceRecord) -> _Mark:
        """The partition's mark as the last process left it: a record it was handling failed once more."""
        if self._directory is None:
            return _Mark()
        path = self._directory / f"{self._prefix}-{_SAFE.sub('_', record.topic)}-{record.partition}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            text = os.pread(fd, _SIZE, 0).decode("ascii", errors="replace")
            os.ftruncate(fd, _SIZE)
            view = mmap.mmap(fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as error:
            self._off(error if isinstance(error, OSError) else OSError(str(error)))
            return _Mark()
        mark = _parse(text)
        mark.fd, mark.view = fd, view
        if mark.handling != _NONE:
            mark.count = mark.count + 1 if mark.failed == mark.handling else 1
            mark.failed, mark.handling = mark.handling, _NONE
            log.warning(
                "the last process stopped while handling this record (%d time(s))",
                mark.count,
                extra={"topic": record.topic, "partition": record.partition, "offset": mark.failed},
            )
        self._write(record, mark)
        return mark

    def _write(self, record: SourceRecord, mark: _Mark) -> None:
        if mark.view is None:
            return
        try:
            mark.view[:_SIZE] = _LINE.format(handling=mark.handling, failed=mark.failed, count=mark.count).encode()
        except (OSError, ValueError) as error:
            _release(mark)
            self._off(error if isinstance(error, OSError) else OSError(str(error)), record)

    def _off(self, error: OSError, record: SourceRecord | None = None) -> None:
        if self._directory is not None:
            log.warning(
                "poison-record marks off (%s): a record that stops the process will be tried again after each restart",
                error.strerror or error,
                extra={"partition": None if record is None else record.partition},
            )
        self._directory = None
        for mark in self._marks.values():
            _release(mark)


def _release(mark: _Mark) -> None:
    if mark.view is not None:
        mark.view.close()
        mark.view = None
    if mark.fd is not None:
        os.close(mark.fd)
        mark.fd = None


def _parse(text: str) -> _Mark:
    parts = text.split()
    try:
        handling, failed, count = (int(part) for part in parts[:3])
    except ValueError:  # an empty (new) or foreign file: nothing known
        return _Mark()
    return _Mark(handling=handling, failed=failed, count=max(0, count))
