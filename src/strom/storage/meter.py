"""What the storage engines tell the metrics, if any (strom.observability implements
`StorageMeter`). An engine holds one `MeterSlot`, shared with its partitions; its `meter` is
None while metrics are off, so a hot path pays one attribute read and a None check then."""

from __future__ import annotations

from typing import Final, Protocol

# Why retention deleted segments (local engine) or batch rows (PostgreSQL).
RETENTION_TIME: Final = "time"  # retention.ms
RETENTION_SIZE: Final = "size"  # retention.bytes
RETENTION_LOG_START: Final = "log_start"  # below a log start offset DeleteRecords moved


class StorageMeter(Protocol):
    def appended(self, seconds: float) -> None:
        """An append took `seconds` (until it was written, and durable where the engine
        waits for that: an fsync with flush.messages=1, a PostgreSQL commit)."""
        ...

    def flushed(self, seconds: float) -> None:
        """An fsync of a segment (local) or a group commit (PostgreSQL) took `seconds`."""
        ...

    def cleaned(self, removed_bytes: int) -> None:
        """The log cleaner compacted one partition, `removed_bytes` smaller than before."""
        ...

    def retention_deleted(self, reason: str, count: int) -> None:
        """Retention deleted `count` segments (local) or batch rows (PostgreSQL)."""
        ...

    def failed(self, operation: str) -> None:
        """An engine operation ("append", "read", "flush") failed with a storage error."""
        ...


class MeterSlot:
    """Where an engine and its partitions find the meter (set once metrics start)."""

    __slots__ = ("meter",)

    def __init__(self) -> None:
        self.meter: StorageMeter | None = None


def retention_reasons(log_start: int, by_size: int, by_time: int) -> dict[str, int]:
    """Attributes the oldest `max(...)` segments deleted to their reasons, in Kafka's order
    (retention.ms, then retention.bytes, then the log start offset); counts of 0 left out."""
    counts = {RETENTION_TIME: by_time,
              RETENTION_SIZE: max(by_size - by_time, 0),
              RETENTION_LOG_START: max(log_start - max(by_size, by_time), 0)}
    return {reason: count for reason, count in counts.items() if count > 0}
