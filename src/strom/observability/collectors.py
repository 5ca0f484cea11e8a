"""What is read at scrape time rather than counted per request: the partitions' offsets, sizes
and segment counts (from the storage engine), connections by listener, throttled answers.

prometheus-client calls `collect()` synchronously while an engine's offsets are awaited, so
the HTTP handler first awaits `StorageCollector.refresh()` (a snapshot of the partitions this
broker serves) and `collect()` renders the snapshot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from strom.storage.api import StorageEngine, StorageError

log = logging.getLogger(__name__)

# A scrape waits this long at most for the partitions' offsets (a storage that does not answer).
REFRESH_TIMEOUT_S: Final = 5.0
_PARTITION_LABELS: Final = ("topic", "partition")


@runtime_checkable
class HasSegments(Protocol):
    """A partition log made of segment files (the local engine's)."""

    @property
    def segment_count(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PartitionSample:
    topic: str
    partition: int
    log_start: int
    log_end: int
    high_watermark: int
    size_bytes: int
    segments: int | None  # None: the engine keeps no segments
    producer_ids: int = 0  # producer-id states the partition holds
    appended_records: int = 0  # what this broker appended (strom.storage.api.PartitionLog)
    appended_bytes: int = 0


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily,
                         GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily,
                         CounterMetricFamily]:
    return (
        GaugeMetricFamily("strom_log_start_offset", "The partition's log start offset.",
                          labels=_PARTITION_LABELS),
        GaugeMetricFamily("strom_log_end_offset", "The partition's log end offset.",
                          labels=_PARTITION_LABELS),
        GaugeMetricFamily("strom_log_high_watermark", "The partition's high watermark.",
                          labels=_PARTITION_LABELS),
        GaugeMetricFamily("strom_log_size_bytes", "The partition's size on storage.",
                          labels=_PARTITION_LABELS),
        GaugeMetricFamily("strom_log_segments", "The partition's segment files (the local "
                          "engine only).", labels=_PARTITION_LABELS),
        CounterMetricFamily("strom_topic_messages_in", "Records this broker appended to the "
                            "partition (Produce, transaction markers, coordinator writes; "
                            "Kafka's MessagesInPerSec).", labels=_PARTITION_LABELS),
        CounterMetricFamily("strom_topic_bytes_in", "Bytes of record batches this broker "
                            "appended to the partition (as messages in; Kafka's "
                            "BytesInPerSec).", labels=_PARTITION_LABELS),
    )


class StorageCollector(Collector):
    """Offsets, sizes and segment counts of the partitions this broker serves."""

    def __init__(self, engine: StorageEngine) -> None:
        self.engine = engine
        self.samples: list[PartitionSample] = []

    async def refresh(self) -> None:
        """Reads a new snapshot; keeps the last one if the storage fails or is too slow."""
        try:
            self.samples = await asyncio.wait_for(self._read(), REFRESH_TIMEOUT_S)
        except (StorageError, OSError, TimeoutError) as exc:
            log.warning("metrics: cannot read the partitions' offsets: %s", exc)

    async def _read(self) -> list[PartitionSample]:
        described = await self.engine.describe_log_dir()
        samples = []
        for size in described.partitions:
            try:
                plog = self.engine.partition(size.topic, size.partition)
                offsets = await plog.offsets()
            except StorageError:  # deleted or moved meanwhile
                continue
            segments = plog.segment_count if isinstance(plog, HasSegments) else None
            samples.append(PartitionSample(size.topic, size.partition, offsets.log_start,
                                           offsets.log_end, offsets.high_watermark,
                                           size.size_bytes, segments,
                                           len(plog.producer_state), plog.appended_records,
                                           plog.appended_bytes))
        return samples

    def log_ends(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> log end offset, as of the last refresh."""
        return {(s.topic, s.partition): s.log_end for s in self.samples}

    def high_watermarks(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> high watermark, as of the last refresh."""
        return {(s.topic, s.partition): s.high_watermark for s in self.samples}

    def producer_ids(self) -> int:
        """Producer-id states of all the partitions, as of the last refresh."""
        return sum(s.producer_ids for s in self.samples)

    def describe(self) -> Iterator[Metric]:
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        families = _families()
        start, end, hw, size, segments, messages_in, bytes_in = families
        for s in self.samples:
            labels = [s.topic, str(s.partition)]
            start.add_metric(labels, s.log_start)
            end.add_metric(labels, s.log_end)
            hw.add_metric(labels, s.high_watermark)
            size.add_metric(labels, s.size_bytes)
            if s.segments is not None:
                segments.add_metric(labels, s.segments)
            if s.appended_records:  # a partition nothing was appended to has no series
                messages_in.add_metric(labels, s.appended_records)
                bytes_in.add_metric(labels, s.appended_bytes)
        yield from families


class ServerCollector(Collector):
    """Connections by listener and throttled answers, read from the server's own counts."""

    def __init__(self, connections: Callable[[], Mapping[str, int]],
                 throttled: Callable[[], int]) -> None:
        self.connections = connections
        self.throttled = throttled

    def _families(self) -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        return (GaugeMetricFamily("strom_connections", "Open client connections, by "
                                  "listener.", labels=("listener",)),
                CounterMetricFamily("strom_throttled_requests", "Answers that carried a "
                                    "quota throttle (KIP-219)."))

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        connections, throttled = self._families()
        for listener, count in sorted(self.connections().items()):
            connections.add_metric([listener], count)
        throttled.add_metric([], self.throttled())
        yield connections
        yield throttled
