"""Which of a partition's oldest segments retention deletes (Kafka's deleteOldSegments).

Three rules each select a prefix of the segments; the union of the prefixes is deleted:

* log start offset: a segment whose next segment starts at or below the log start offset
  (applies whatever the cleanup.policy, like Kafka);
* retention.ms (policy `delete`, -1 = infinite): a segment whose largest timestamp is more than
  retention.ms old (the file's mtime when it has no timestamps), up to the first that is not;
* retention.bytes (policy `delete`, -1 = infinite): the oldest segments while the partition is
  still at least as large as retention.bytes without them.

The active (last) segment is never selected.
"""

from __future__ import annotations

from collections.abc import Sequence


def count_log_start_breached(base_offsets: Sequence[int], log_start_offset: int) -> int:
    """How many leading segments lie wholly below the log start offset."""
    count = 0
    while count < len(base_offsets) - 1 and base_offsets[count + 1] <= log_start_offset:
        count += 1
    return count


def retention_ms_breached(largest_timestamp: int, now_ms: int, retention_ms: int) -> bool:
    return retention_ms >= 0 and now_ms - largest_timestamp > retention_ms


def count_size_breached(sizes: Sequence[int], retention_bytes: int) -> int:
    """How many leading segments (never the last) to drop to get within retention.bytes."""
    if retention_bytes < 0:
        return 0
    diff = sum(sizes) - retention_bytes
    count = 0
    while count < len(sizes) - 1 and diff - sizes[count] >= 0:
        diff -= sizes[count]
        count += 1
    return count


def deletes_by_policy(cleanup_policy: str) -> bool:
    return "delete" in cleanup_policy.split(",")
