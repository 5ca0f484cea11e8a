"""Kafka's mapping of a group or transactional id to a partition of its internal topic."""

from __future__ import annotations


def java_string_hash(value: str) -> int:
    """Java's `String.hashCode` (over UTF-16 code units, int32 arithmetic)."""
    units = value.encode("utf-16-be", "surrogatepass")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + ((units[i] << 8) | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """Kafka's `Utils.abs(key.hashCode) % partitions` (Utils.abs maps Int.MIN to 0; it is not
    `& 0x7fffffff`), as GroupMetadataManager and TransactionStateManager compute it."""
    h = java_string_hash(key)
    return (0 if h == -(2**31) else abs(h)) % partitions
