"""The stream-stream join's processors and stores (Kafka's KStreamKStreamJoin, with KIP-633's
fix for spurious left/outer results).

Each side has a processor and a window store. A record of one side is kept in its side's store
and joined with every record of the other side's store whose timestamp is in its window: a
left record at t joins right records in [t - before, t + after], a right record at t left
records in [t - after, t + before] (bounds included); each match is `joiner(left, right)` at
the later of the two timestamps.

Left and outer joins share an "outer" buffer: a record that found no match waits there, keyed
by timestamp, side and key, until a later record of the other side matches it (it is then
removed) or its window closes, when it is emitted as `joiner(left, None)` / `joiner(None,
right)` at its own timestamp. A left record's window closes when the join's stream time (the
largest timestamp either side has seen) passes t + after + grace, a right record's when it
passes t + before + grace; the buffer is looked at when a record moves the stream time on.
A record that arrives after its own window closed is late: dropped and counted in `late`.
Records with no key or no value are dropped too (counted in `dropped`), except that a left or
outer side emits a record without a key at once as `joiner(value, None)` (KIP-962).

Differences from Kafka 4.x, on purpose: Kafka looks at the outer buffer at most once a second
of wall-clock time (an internal setting), here whenever the earliest buffered record's window
may have closed; Kafka emits an unmatched out-of-order record at once when its window end (not
end + grace) has passed, here it waits for the grace period as the docs promise; Kafka joins a
late record with what the other store still holds, here it is dropped; and a window store here
keeps a record while its timestamp >= stream time - retention (Kafka's in-memory store drops
it at equality, one millisecond before a record at the window's edge could still match it).
As in Kafka, with before > 0 a right record within its own grace period may still match a left
record whose unmatched result was already emitted.
"""

from __future__ import annotations

import heapq
import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from strom.streams.processor import Processor, ProcessorContext, typed_store
from strom.streams.record import Record
from strom.streams.serdes import BYTES, Serde
from strom.streams.stores.api import (
    BytesEngine,
    EngineFactory,
    StoreContext,
    make_engine,
    serialized,
)
from strom.streams.stores.base import EngineStore
from strom.streams.stores.kv import KeyValueStore, KeyValueStoreBuilder
from strom.streams.stores.memory import MemoryEngine
from strom.streams.stores.window import ADDITIONAL_CHANGELOG_RETENTION_MS

log = logging.getLogger(__name__)

ValueJoiner = Callable[[Any, Any], Any]  # (left value, right value) -> joined value

_TS_SEQ: Final = struct.Struct(">qI")  # a window store key's suffix: timestamp, sequence number
_TS: Final = struct.Struct(">q")
_LEN: Final = struct.Struct(">I")
LEFT: Final = 1  # the side byte of outer-buffer keys (Kafka's: left 1, right 0)
RIGHT: Final = 0


class JoinWindowStore(EngineStore):
    """One side of a stream-stream join: every record of the side by key and timestamp (records
    with the same key and timestamp too), kept for `retention_ms` of the store's stream time.
    Engine keys are the serialized key, the 8-byte big-endian timestamp and a 4-byte sequence
    number, so one key's records are in timestamp order. In memory or on disk as default.dsl.store
    says; a persistent one rebuilds its expiry index, stream time and sequence from its engine
    when opened. Private to the join (a general window store comes with windowed
    aggregations)."""

    def __init__(self, name: str, key_serde: Serde[Any], value_serde: Serde[Any],
                 retention_ms: int, *, logging: bool = True, engine: BytesEngine | None = None,
                 persistent: bool = False) -> None:
        super().__init__(name, key_serde, value_serde,
                         engine if engine is not None else MemoryEngine(), logging=logging,
                         persistent=persistent)
        self.retention_ms = retention_ms
        self.observed_stream_time = -1
        self._sequence = 0
        self._by_time: list[tuple[int, bytes]] = []  # to drop expired records in time order

    def init(self, context: StoreContext) -> None:
        super().init(context)
        for raw_key, _ in self.engine.range(None, None):  # a persistent engine's records
            self._seen(raw_key)
            self._by_time.append((_TS.unpack_from(raw_key, len(raw_key) - _TS_SEQ.size)[0],
                                  raw_key))
        heapq.heapify(self._by_time)
        self._expire()

    def _seen(self, raw_key: bytes) -> int:
        """The timestamp of a record key the store comes across; the stream time and the
        next sequence number move on past it."""
        stamp, sequence = _TS_SEQ.unpack_from(raw_key, len(raw_key) - _TS_SEQ.size)
        self.observed_stream_time = max(self.observed_stream_time, stamp)
        self._sequence = max(self._sequence, (sequence + 1) & 0xFFFFFFFF)
        return int(stamp)

    def put(self, key: Any, value: Any, timestamp: int) -> bool:
        """Keeps the record; False if it is older than the retention (nothing kept)."""
        self.observed_stream_time = max(self.observed_stream_time, timestamp)
        if timestamp < self.observed_stream_time - self.retention_ms:
            return False
        raw_key = self._key(key) + _TS_SEQ.pack(timestamp, self._sequence)
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        raw = serialized(self.value_serde, self._name, value)
        self._keep(raw_key, raw, timestamp)
        self._log(raw_key, raw, timestamp)
        return True

    def fetch(self, key: Any, time_from: int, time_to: int) -> Iterator[tuple[int, Any]]:
        """(timestamp, value) of the key's records with time_from <= timestamp <= time_to."""
        prefix = self._key(key)
        low = max(time_from, self.observed_stream_time - self.retention_ms)
        if time_to < low:
            return
        for raw_key, raw in self.engine.range(prefix + _TS_SEQ.pack(low, 0),
                                              prefix + _TS_SEQ.pack(time_to, 0xFFFFFFFF)):
            if len(raw_key) == len(prefix) + _TS_SEQ.size:  # not a longer key sorting between
                yield (_TS.unpack_from(raw_key, len(prefix))[0],
                       self.value_serde.deserialize(self._name, raw))

    def all(self) -> Iterator[tuple[Any, int, Any]]:
        """(key, timestamp, value) of every record kept, by key then timestamp."""
        for raw_key, raw in self.engine.range(None, None):
            split = len(raw_key) - _TS_SEQ.size
            yield (self.key_serde.deserialize(self._name, raw_key[:split]),
                   _TS.unpack_from(raw_key, split)[0],
                   self.value_serde.deserialize(self._name, raw))

    def _keep(self, raw_key: bytes, raw: bytes, timestamp: int) -> None:
        self.engine.put(raw_key, raw)
        heapq.heappush(self._by_time, (timestamp, raw_key))
        self._expire()

    def _expire(self) -> None:
        limit = self.observed_stream_time - self.retention_ms
        while self._by_time and self._by_time[0][0] < limit:
            self.engine.delete(heapq.heappop(self._by_time)[1])

    def restore(self, key: bytes, value: bytes | None, timestamp: int = -1) -> None:
        if value is None:
            self.engine.delete(key)
            return
        self._keep(key, value, self._seen(key))

    def close(self) -> None:
        super().close()
        self._by_time.clear()


class JoinWindowStoreBuilder:
    """Makes one side's window store per task."""

    def __init__(self, name: str, key_serde: Serde[Any] | None, value_serde: Serde[Any] | None,
                 retention_ms: int, *, logging: bool = True) -> None:
        self.name = name
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.retention_ms = retention_ms
        self.logging = logging
        # Compacted and deleted by time, kept a day past the retention (as window stores').
        self.changelog_config = {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(retention_ms + ADDITIONAL_CHANGELOG_RETENTION_MS)}

    @property
    def persistent(self) -> bool:
        return False  # no engine of its own: default.dsl.store decides

    def build(self, task_directory: str, default_key_serde: Serde[Any] = BYTES,
              default_value_serde: Serde[Any] = BYTES,
              default_engine: EngineFactory | None = None) -> JoinWindowStore:
        """A join's window store, on disk when default.dsl.store says rocksDB (the default)."""
        engine = make_engine(None, default_engine, task_directory, self.name)
        return JoinWindowStore(self.name, self.key_serde or default_key_serde,
                               self.value_serde or default_value_serde, self.retention_ms,
                               logging=self.logging, engine=engine,
                               persistent=not isinstance(engine, MemoryEngine))


def outer_buffer_builder(name: str, logging: bool) -> KeyValueStoreBuilder:
    """The store left and outer joins keep unmatched records in: key = 8-byte timestamp, side
    byte, serialized key; value = the records' serialized values (4-byte length each)."""
    return KeyValueStoreBuilder(name, BYTES, BYTES, logging=logging)


class JoinTimeTracker:
    """The stream time of one join in one task (the largest timestamp either side's processor
    has seen) and the earliest timestamp in its outer buffer (None: not known, look)."""

    def __init__(self) -> None:
        self.stream_time = -1
        self.min_buffered: int | None = None


@dataclass(frozen=True)
class JoinSpec:
    """What both sides' processors of one join share."""

    left_store: str
    right_store: str
    outer_store: str | None
    before_ms: int
    after_ms: int
    grace_ms: int
    joiner: ValueJoiner
    left_outer: bool  # unmatched left records are emitted (left and outer joins)
    right_outer: bool  # unmatched right records are emitted (outer joins)
    trackers: dict[str, JoinTimeTracker]  # by task id


class StreamStreamJoinProcessor(Processor):
    """One side of a stream-stream join (see the module's docstring)."""

    def __init__(self, spec: JoinSpec, left_side: bool) -> None:
        self.spec = spec
        self.left_side = left_side
        self.before, self.after = ((spec.before_ms, spec.after_ms) if left_side
                                   else (spec.after_ms, spec.before_ms))
        self.outer = spec.left_outer if left_side else spec.right_outer
        # A buffered record's window closes this long (plus grace) after its timestamp.
        self.close_after = {LEFT: spec.after_ms, RIGHT: spec.before_ms}
        self.buffered_sides = {side for side, on in ((LEFT, spec.left_outer),
                                                     (RIGHT, spec.right_outer)) if on}
        self.dropped = 0  # records without key or value, and late ones
        self.late = 0

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        spec = self.spec
        left = typed_store(context, spec.left_store, JoinWindowStore)
        right = typed_store(context, spec.right_store, JoinWindowStore)
        self.left_store, self.right_store = left, right
        self.this_store, self.other_store = (left, right) if self.left_side else (right, left)
        self.buffer: KeyValueStore | None = None
        if spec.outer_store is not None:
            self.buffer = typed_store(context, spec.outer_store, KeyValueStore)
        self.tracker = spec.trackers.setdefault(context.task_id, JoinTimeTracker())

    def _joined(self, this: Any, other: Any) -> Any:
        return self.spec.joiner(this, other) if self.left_side else self.spec.joiner(other, this)

    def process(self, record: Record) -> None:
        key, value, timestamp = record.key, record.value, record.timestamp
        tracker = self.tracker
        tracker.stream_time = max(tracker.stream_time, timestamp)
        if key is None and value is not None and self.outer:
            self.context.forward(record.with_value(self._joined(value, None)))
            return
        if key is None or value is None:
            self._drop("no key or no value", record)
            return
        if timestamp + self.after + self.spec.grace_ms < tracker.stream_time:
            self.late += 1
            self._drop(f"late (stream time {tracker.stream_time})", record)
            return
        if self.buffer is not None and timestamp == tracker.stream_time:
            self._emit_closed(self.buffer)
        self.this_store.put(key, value, timestamp)
        matched = False
        for other_time, other_value in self.other_store.fetch(
                key, max(0, timestamp - self.before), max(0, timestamp + self.after)):
            matched = True
            if self.buffer is not None:
                self.buffer.delete(self._buffer_key(not self.left_side, other_time, key))
            self.context.forward(Record(key, self._joined(value, other_value),
                                        max(timestamp, other_time), record.headers))
        if not matched and self.outer:
            assert self.buffer is not None
            self._buffer(self.buffer, key, value, timestamp)

    def _drop(self, why: str, record: Record) -> None:
        self.dropped += 1
        log.warning("stream-stream join: skipping a record (%s) at %s", why,
                    self.context.record_metadata)

    def _buffer_key(self, left: bool, timestamp: int, key: Any) -> bytes:
        store = self.left_store  # one key encoding for both sides
        return (_TS.pack(timestamp) + bytes((LEFT if left else RIGHT,))
                + serialized(store.key_serde, store.name, key))

    def _buffer(self, buffer: KeyValueStore, key: Any, value: Any, timestamp: int) -> None:
        raw_key = self._buffer_key(self.left_side, timestamp, key)
        raw = serialized(self.this_store.value_serde, self.this_store.name, value)
        buffer.put(raw_key, (buffer.get(raw_key) or b"") + _LEN.pack(len(raw)) + raw,
                   timestamp)
        known = self.tracker.min_buffered
        self.tracker.min_buffered = timestamp if known is None else min(known, timestamp)

    def _emit_closed(self, buffer: KeyValueStore) -> None:
        """Emits (and forgets) the buffered records whose windows have closed."""
        tracker, grace = self.tracker, self.spec.grace_ms
        soonest = min(self.close_after[side] for side in self.buffered_sides)
        if tracker.min_buffered is not None and (
                tracker.min_buffered + soonest + grace >= tracker.stream_time):
            return
        open_sides: set[int] = set()
        earliest_left: int | None = None
        for raw_key, raw in buffer.all():
            timestamp, side = _TS.unpack_from(raw_key)[0], raw_key[_TS.size]
            if timestamp + self.close_after[side] + grace >= tracker.stream_time:
                earliest_left = timestamp if earliest_left is None else earliest_left
                open_sides.add(side)
                if open_sides >= self.buffered_sides:  # later ones are open too
                    break
                continue
            self._emit(raw_key, raw, timestamp, side)
            buffer.delete(raw_key)
        tracker.min_buffered = earliest_left if earliest_left is not None else 2**63 - 1

    def _emit(self, raw_key: bytes, raw: bytes, timestamp: int, side: int) -> None:
        left, right = self.left_store, self.right_store
        key = left.key_serde.deserialize(left.name, raw_key[_TS.size + 1:])
        store = left if side == LEFT else right
        offset = 0
        while offset < len(raw):
            (size,) = _LEN.unpack_from(raw, offset)
            value = store.value_serde.deserialize(store.name, raw[offset + 4:offset + 4 + size])
            offset += 4 + size
            joined = (self.spec.joiner(value, None) if side == LEFT
                      else self.spec.joiner(None, value))
            self.context.forward(Record(key, joined, timestamp))

    def close(self) -> None:
        self.spec.trackers.pop(self.context.task_id, None)
