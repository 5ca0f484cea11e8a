"""What the produce and fetch handlers tell the metrics, if any (strom.observability
implements it; `Broker.meter` is None while metrics are off, so nothing is paid then)."""

from __future__ import annotations

from typing import Protocol


class TopicMeter(Protocol):
    def fetched(self, topic: str, partition: int, size: int) -> None:
        """A fetch answer carries `size` bytes of the partition's batches."""
        ...

    def storage_error(self, operation: str) -> None:
        """The engine failed an "append" or a "read": the answer is KAFKA_STORAGE_ERROR."""
        ...
