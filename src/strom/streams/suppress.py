"""`KTable.suppress(Suppressed.until_window_closes(...))`: the final result of each window of
a windowed table (Kafka Streams' final-results suppression, KIP-328).

Each update of a windowed key is held in a buffer, replacing the key's earlier update there,
until the window closes, by the aggregation's own rule applied to the suppression's stream
time (the largest timestamp of the updates it has seen): time windows once end <= stream
time - grace, sliding windows once end < stream time - grace, sessions once end < stream
time - grace - gap. Then its latest value is forwarded once, with the timestamp and headers
of that update; a tombstone (a session merged away) is not forwarded. Windows leave the
buffer by end, then in the order they first came. As in Kafka, the buffer is only looked at
when an update arrives. (Kafka's suppression lets sliding and session windows go one
millisecond earlier, end <= stream time - grace (- gap), when a record could still update
them; here a window is final only once the aggregation has closed it.)

The buffer is in memory here (Kafka backs it with a changelog topic): a restarted
application does not get back updates that were buffered but not yet emitted.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strom.streams.aggregate import Change
from strom.streams.processor import Processor
from strom.streams.record import Headers, Record
from strom.streams.task import StreamsError
from strom.streams.topology import ProcessorNode
from strom.streams.windows import Windowed

if TYPE_CHECKING:
    from strom.streams.dsl import KTable


@dataclass(frozen=True)
class BufferConfig:
    """How many windows the buffer may hold (None: no limit); a full buffer stops the
    application (Kafka's shutDownWhenFull), since emitting early would break the promise of
    final results."""

    max_records: int | None = None

    @staticmethod
    def unbounded() -> BufferConfig:
        return BufferConfig()

    @staticmethod
    def max_records_then_shut_down(max_records: int) -> BufferConfig:
        if max_records < 1:
            raise ValueError("a buffer holds at least one record")
        return BufferConfig(max_records)


@dataclass(frozen=True)
class Suppressed:
    buffer: BufferConfig = BufferConfig()
    name: str | None = None

    @staticmethod
    def until_window_closes(buffer: BufferConfig | None = None, name: str | None = None
                            ) -> Suppressed:
        return Suppressed(buffer or BufferConfig.unbounded(), name)


class _Buffered:
    __slots__ = ("change", "headers", "order", "timestamp")

    def __init__(self, change: Change, timestamp: int, headers: Headers, order: int) -> None:
        self.change = change
        self.timestamp = timestamp
        self.headers = headers
        self.order = order


class SuppressFinalResultsProcessor(Processor):
    def __init__(self, final_after_ms: int, buffer: BufferConfig) -> None:
        self.final_after_ms = final_after_ms
        self.max_records = buffer.max_records
        self.observed_stream_time = -1
        self._buffer: dict[Windowed, _Buffered] = {}
        self._by_end: list[tuple[int, int, Windowed]] = []  # (window end, order, key)
        self._order = itertools.count()

    def process(self, record: Record) -> None:
        key, change = record.key, record.value
        if not isinstance(key, Windowed) or not isinstance(change, Change):
            raise StreamsError("suppress(until_window_closes) takes a windowed table's "
                               f"updates, not {record!r}")
        self.observed_stream_time = max(self.observed_stream_time, record.timestamp)
        held = self._buffer.get(key)
        prior = change.old if held is None else held.change.old
        order = next(self._order) if held is None else held.order
        self._buffer[key] = _Buffered(Change(change.new, prior), record.timestamp,
                                      record.headers, order)
        if held is None:
            heapq.heappush(self._by_end, (key.window.end, order, key))
        if self.max_records is not None and len(self._buffer) > self.max_records:
            raise StreamsError(f"the suppression buffer is full ({self.max_records} windows)")
        self._evict(self.observed_stream_time - self.final_after_ms)

    def _evict(self, final_time: int) -> None:
        while self._by_end and self._by_end[0][0] <= final_time:
            _, _, key = heapq.heappop(self._by_end)
            held = self._buffer.pop(key)
            if held.change.new is not None:
                self.context.forward(Record(key, held.change, held.timestamp, held.headers))


def suppress(table: KTable, suppressed: Suppressed) -> KTable:
    """The table's final results: needs a windowed table (found by walking up its nodes to
    the windowed aggregation, as Kafka looks for the grace)."""
    from strom.streams.dsl import KTable

    final_after = _final_after(table)
    builder = table.builder
    name = suppressed.name or builder.new_name("KTABLE-SUPPRESS-")
    buffer = suppressed.buffer
    builder.topology.add_processor(
        name, lambda: SuppressFinalResultsProcessor(final_after, buffer), table.node)
    return KTable(builder, name, table.key_serde, table.value_serde, None)


def _final_after(table: KTable) -> int:
    nodes: Any = table.builder.topology.nodes
    pending = [table.node]
    while pending:
        node = nodes[pending.pop()]
        if not isinstance(node, ProcessorNode):
            continue
        final_after = getattr(node.supplier, "final_after_ms", None)
        if isinstance(final_after, int):
            return final_after
        pending.extend(node.parents)
    raise ValueError("suppress(until_window_closes) needs a windowed table (from "
                     "windowed_by(...).count/reduce/aggregate)")
