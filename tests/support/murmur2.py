"""Kafka's Java partitioner, written out: ``Utils.murmur2`` and ``Utils.toPositive(murmur2(key)) % partitions``.

A transcription of ``org.apache.kafka.common.utils.Utils.murmur2`` (seed 0x9747b28c), in 32-bit arithmetic, so a
test can say where a Java producer puts a key without a JVM; checked against the vectors of Kafka's own
``UtilsTest.testMurmur2``.
"""

from __future__ import annotations

__all__ = ["java_partition", "murmur2"]

_MASK = 0xFFFFFFFF
_M = 0x5BD1E995
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Java's ``Utils.murmur2(data)``: a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """The partition Java's default partitioner chooses for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
