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

The buffer is kept in a key-value store of the suppression's own, `<name>-store` (Kafka's
KTABLE-SUPPRESS-STATE-STORE), backed by its changelog as every store is, so updates buffered
but not yet emitted survive a restart or a task's move. Its entries, in a format of strom's
own (the store is the application's own):

    key:   the windowed key's key, by the table's key serde | window start (8 bytes) | end (8)
    value: version (1 byte, 0) | timestamp (8) | order (8) | header count (4)
           | per header: name length (4), name (UTF-8), value length (4, -1: None), value
           | new value length (4, -1: None), new value | old value length, old value

the values by the table's value serde (or the application's defaults).
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from strom.streams.aggregate import Change
from strom.streams.processor import Processor, ProcessorContext, typed_store
from strom.streams.record import Headers, Record
from strom.streams.serdes import BYTES, Serde
from strom.streams.stores.kv import KeyValueStore, KeyValueStoreBuilder
from strom.streams.stores.memory import MemoryEngine
from strom.streams.task import StreamsError
from strom.streams.topology import ProcessorNode
from strom.streams.windowed_serdes import SessionWindowedSerde, TimeWindowedSerde
from strom.streams.windows import Window, Windowed

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


_VERSION: Final = 0
_WINDOW: Final = struct.Struct(">qq")  # start, end
_HEAD: Final = struct.Struct(">BqqI")  # version, timestamp, order, header count
_LEN: Final = struct.Struct(">i")


class _Buffered:
    __slots__ = ("change", "headers", "order", "timestamp")

    def __init__(self, change: Change, timestamp: int, headers: Headers, order: int) -> None:
        self.change = change
        self.timestamp = timestamp
        self.headers = headers
        self.order = order


def _put_bytes(out: list[bytes], data: bytes | None) -> None:
    out.append(_LEN.pack(-1 if data is None else len(data)))
    if data is not None:
        out.append(data)


def _get_bytes(data: bytes, at: int) -> tuple[bytes | None, int]:
    (size,) = _LEN.unpack_from(data, at)
    at += _LEN.size
    if size < 0:
        return None, at
    if at + size > len(data):
        raise ValueError("a suppression buffer entry is cut short")
    return data[at:at + size], at + size


class SuppressFinalResultsProcessor(Processor):
    def __init__(self, final_after_ms: int, buffer: BufferConfig, store_name: str,
                 key_serde: Serde[Any] | None, value_serde: Serde[Any] | None) -> None:
        self.final_after_ms = final_after_ms
        self.max_records = buffer.max_records
        self.store_name = store_name
        self._key_serde = key_serde
        self._value_serde = value_serde
        self.observed_stream_time = -1
        self._buffer: dict[Windowed, _Buffered] = {}
        self._by_end: list[tuple[int, int, Windowed]] = []  # (window end, order, key)
        self._order = 0

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.key_serde = self._key_serde or context.key_serde
        self.value_serde = self._value_serde or context.value_serde
        self.store = typed_store(context, self.store_name, KeyValueStore)
        self._loaded = False

    def _load(self) -> None:
        """What was buffered before a restart: read from the store at the first record (a
        task restores its stores after its processors' init, before it processes)."""
        self._loaded = True
        for raw_key, raw in self.store.all():
            key = self._decode_key(raw_key)
            held = self._decode(raw)
            self._buffer[key] = held
            self._by_end.append((key.window.end, held.order, key))
            self._order = max(self._order, held.order + 1)
            self.observed_stream_time = max(self.observed_stream_time, held.timestamp)
        heapq.heapify(self._by_end)

    def process(self, record: Record) -> None:
        key, change = record.key, record.value
        if not isinstance(key, Windowed) or not isinstance(change, Change):
            raise StreamsError("suppress(until_window_closes) takes a windowed table's "
                               f"updates, not {record!r}")
        if not self._loaded:
            self._load()
        self.observed_stream_time = max(self.observed_stream_time, record.timestamp)
        held = self._buffer.get(key)
        prior = change.old if held is None else held.change.old
        if held is None:
            order = self._order
            self._order += 1
        else:
            order = held.order
        buffered = _Buffered(Change(change.new, prior), record.timestamp, record.headers,
                             order)
        self._buffer[key] = buffered
        self.store.put(self._encode_key(key), self._encode(buffered), record.timestamp)
        if held is None:
            heapq.heappush(self._by_end, (key.window.end, order, key))
        if self.max_records is not None and len(self._buffer) > self.max_records:
            raise StreamsError(f"the suppression buffer is full ({self.max_records} windows)")
        self._evict(self.observed_stream_time - self.final_after_ms)

    def _evict(self, final_time: int) -> None:
        while self._by_end and self._by_end[0][0] <= final_time:
            _, _, key = heapq.heappop(self._by_end)
            held = self._buffer.pop(key)
            self.store.delete(self._encode_key(key), held.timestamp)
            if held.change.new is not None:
                self.context.forward(Record(key, held.change, held.timestamp, held.headers))

    # -- the store's entries ----------------------------------------------------------

    def _encode_key(self, key: Windowed) -> bytes:
        inner = self.key_serde.serialize(self.store_name, key.key)
        if inner is None:
            raise StreamsError(f"{self.store_name}: a windowed key's key may not be None")
        return inner + _WINDOW.pack(key.window.start, key.window.end)

    def _decode_key(self, raw: bytes) -> Windowed:
        split = len(raw) - _WINDOW.size
        start, end = _WINDOW.unpack_from(raw, split)
        return Windowed(self.key_serde.deserialize(self.store_name, raw[:split]),
                        Window(start, end))

    def _encode(self, held: _Buffered) -> bytes:
        out = [_HEAD.pack(_VERSION, held.timestamp, held.order, len(held.headers))]
        for name, value in held.headers:
            _put_bytes(out, name.encode())
            _put_bytes(out, value)
        for value in (held.change.new, held.change.old):
            _put_bytes(out, None if value is None else
                       self.value_serde.serialize(self.store_name, value))
        return b"".join(out)

    def _decode(self, data: bytes) -> _Buffered:
        version, timestamp, order, count = _HEAD.unpack_from(data)
        if version != _VERSION:
            raise StreamsError(f"{self.store_name}: a suppression buffer entry of version "
                               f"{version} (this strom writes {_VERSION})")
        at = _HEAD.size
        headers = []
        for _ in range(count):
            name, at = _get_bytes(data, at)
            value, at = _get_bytes(data, at)
            headers.append(((name or b"").decode(), value))
        new, at = _get_bytes(data, at)
        old, at = _get_bytes(data, at)
        change = Change(None if new is None else
                        self.value_serde.deserialize(self.store_name, new),
                        None if old is None else
                        self.value_serde.deserialize(self.store_name, old))
        return _Buffered(change, timestamp, tuple(headers), order)


def suppress(table: KTable, suppressed: Suppressed) -> KTable:
    """The table's final results: needs a windowed table (found by walking up its nodes to
    the windowed aggregation, as Kafka looks for the grace)."""
    from strom.streams.dsl import KTable

    final_after = _final_after(table)
    builder = table.builder
    name = suppressed.name or builder.new_name("KTABLE-SUPPRESS-")
    store = f"{name}-store" if suppressed.name else builder.new_name(
        "KTABLE-SUPPRESS-STATE-STORE-")
    buffer = suppressed.buffer
    # A windowed table's key serde is a windowed one (or None: the default key serde, for
    # the key inside the window): the buffer writes the window itself.
    key_serde, value_serde = table.key_serde, table.value_serde
    if isinstance(key_serde, TimeWindowedSerde | SessionWindowedSerde):
        key_serde = key_serde.inner
    builder.topology.add_processor(
        name, lambda: SuppressFinalResultsProcessor(final_after, buffer, store, key_serde,
                                                    value_serde), table.node)
    # Bytes in, bytes out: the processor encodes its entries itself (see above). In memory
    # whatever default.dsl.store says (as Kafka's in-memory buffer), restored from the
    # changelog.
    builder.topology.add_state_store(
        KeyValueStoreBuilder(store, BYTES, BYTES, engine=_memory_engine), name)
    return KTable(builder, name, table.key_serde, table.value_serde, None)


def _memory_engine(task_directory: str) -> MemoryEngine:
    return MemoryEngine()


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
