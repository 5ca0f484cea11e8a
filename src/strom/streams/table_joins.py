"""Stream-table and table-table joins (Kafka's KStreamKTableJoin, KTableKTableInnerJoin,
KTableKTableLeftJoin / RightJoin, KTableKTableOuterJoin), and materializing a table that a join
reads.

Stream-table: each stream record is joined with the table's current value for its key; a table
update changes the store and produces nothing. Inner: no table value, no result; left: the
joiner gets None. A stream record without a value is dropped, one without a key too, except
in a left join, which joins it with None (KIP-962). The result keeps the stream record's
timestamp. The same processor joins a stream with a global table, looking up
`key_mapper(key, value)`.

Table-table: each update (a `Change(new, old)`) of one side is joined with the other side's
current value and forwarded as `Change(joined new, joined old)` at the later of the two
timestamps. Inner: results only while both sides have a value (a deletion on either side
becomes a tombstone); left: every left value has a result, `joiner(left, None)` while the right
side has none, right updates count only while the left has a value; outer: a result while
either side has a value, None for the missing one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from strom.streams.aggregate import Change, MaterializingProcessor
from strom.streams.joins import Joined, copartition, repartitioned
from strom.streams.processor import Processor, ProcessorContext, typed_store
from strom.streams.record import Record
from strom.streams.serdes import Serde
from strom.streams.stores.kv import KeyValueStoreBuilder, TimestampedKeyValueStore
from strom.streams.stream_join import ValueJoiner

if TYPE_CHECKING:
    from strom.streams.dsl import KStream, KTable, Materialized

log = logging.getLogger(__name__)

KeyMapper = Callable[[Any, Any], Any]  # (key, value) -> the key to look up


def _key_of(key: Any, value: Any) -> Any:
    return key


class StreamTableJoinProcessor(Processor):
    """Joins each stream record with a table's (or a global table's) current value."""

    def __init__(self, store_name: str, key_mapper: KeyMapper, joiner: ValueJoiner,
                 left: bool) -> None:
        self.store_name = store_name
        self.key_mapper = key_mapper
        self.joiner = joiner
        self.left = left
        self.dropped = 0

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.store = typed_store(context, self.store_name, TimestampedKeyValueStore)

    def process(self, record: Record) -> None:
        key, value = record.key, record.value
        lookup = None if value is None else self.key_mapper(key, value)
        if value is None or (lookup is None and not (self.left and key is None)):
            self.dropped += 1
            log.warning("stream-table join: skipping a record without a join key or value at "
                        "%s", self.context.record_metadata)
            return
        other = None if lookup is None else self.store.get(lookup)
        if other is not None or self.left:
            self.context.forward(record.with_value(self.joiner(value, other)))


class TableTableJoinProcessor(Processor):
    """One side of a table-table join: `this_outer` says whether this side's values have
    results without the other side's, `other_outer` whether the other side's have."""

    def __init__(self, other_store: str, joiner: ValueJoiner, this_is_left: bool,
                 this_outer: bool, other_outer: bool) -> None:
        self.other_store = other_store
        self.joiner = joiner
        self.this_is_left = this_is_left
        self.this_outer = this_outer
        self.other_outer = other_outer
        self.dropped = 0

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.store = typed_store(context, self.other_store, TimestampedKeyValueStore)

    def _join(self, this: Any, other: Any, has: bool) -> Any:
        if not has:
            return None
        return self.joiner(this, other) if self.this_is_left else self.joiner(other, this)

    def process(self, record: Record) -> None:
        if record.key is None:
            self.dropped += 1
            return
        change = record.value
        found = self.store.get_with_timestamp(record.key)
        other = None if found is None else found[0]
        if other is None and (not self.this_outer or (change.new is None and change.old is None)):
            return
        timestamp = record.timestamp if found is None else max(record.timestamp, found[1])
        keep_other = other is not None and self.other_outer
        new = self._join(change.new, other, change.new is not None or keep_other)
        old = self._join(change.old, other, change.old is not None or keep_other)
        self.context.forward(Record(record.key, Change(new, old), timestamp, record.headers))


class TableStoreProcessor(MaterializingProcessor):
    """Keeps each change's new value in a store (None deletes the key), if it has one, and
    forwards the change."""

    def process(self, record: Record) -> None:
        if record.key is None:
            return
        if self.store is not None:
            self.store.put(record.key, record.value.new, record.timestamp)
        self.context.forward(record)


def store_builder(name: str, materialized: Materialized | None, key_serde: Serde[Any] | None,
                  value_serde: Serde[Any] | None) -> KeyValueStoreBuilder:
    """A timestamped key-value store as `materialized` asks (serdes it gives win)."""
    logs, config, engine = ((materialized.logging, dict(materialized.changelog_config),
                             materialized.engine) if materialized else (True, {}, None))
    return KeyValueStoreBuilder(
        name, (materialized and materialized.key_serde) or key_serde,
        (materialized and materialized.value_serde) or value_serde, logging=logs,
        changelog_config=config, engine=engine, timestamped=True)


def materialized_store(table: KTable) -> str:
    """The store holding the table's current values. A table that has none (a filtered or
    mapped one) gets one, kept by a processor after it, as Kafka materializes a table that a
    join reads; its serdes are the table's (or the application's defaults)."""
    if table.store is not None:
        return table.store
    builder = table.builder
    name = builder.new_name("KTABLE-MATERIALIZE-")
    store = builder.new_name("KTABLE-MATERIALIZE-STATE-STORE-")
    builder.topology.add_processor(name, lambda: TableStoreProcessor(store), table.node)
    builder.topology.add_state_store(
        store_builder(store, None, table.key_serde, table.value_serde), name)
    table.store = store
    return store


def stream_table_join(stream: KStream, table: KTable, joiner: ValueJoiner,
                      joined: Joined | None = None, *, left: bool
                      ) -> tuple[str, Serde[Any] | None]:
    """Adds a join of a stream with a table; returns the results' node and key serde."""
    joined = joined or Joined()
    builder, topology = stream.builder, stream.builder.topology
    key_serde = joined.key_serde or stream.key_serde or table.key_serde
    stream = repartitioned(stream, joined.name and f"{joined.name}-left", key_serde,
                           joined.value_serde or stream.value_serde)
    store = materialized_store(table)
    name = joined.name or builder.new_name("KSTREAM-LEFTJOIN-" if left else "KSTREAM-JOIN-")
    topology.add_processor(name, lambda: StreamTableJoinProcessor(store, _key_of, joiner, left),
                           stream.node)
    topology.connect_processor_and_state_stores(name, stores=[store])
    copartition(topology, stream.node, table.node)
    return name, key_serde


class TableJoinResult(NamedTuple):
    """Where a table join's results come from, their store (if materialized) and serdes."""

    node: str
    store: str | None
    key_serde: Serde[Any] | None
    value_serde: Serde[Any] | None


def table_table_join(left: KTable, right: KTable, joiner: ValueJoiner,
                     materialized: Materialized | None = None, named: str | None = None, *,
                     kind: str) -> TableJoinResult:
    """Adds a join of two tables on their keys ("inner", "left" or "outer")."""
    builder, topology = left.builder, left.builder.topology
    left_store, right_store = materialized_store(left), materialized_store(right)
    prefix = {"inner": "JOIN", "left": "LEFT", "outer": "OUTER"}[kind]
    this = f"{named}-join-this" if named else builder.new_name(f"KTABLE-{prefix}THIS-")
    other = f"{named}-join-other" if named else builder.new_name(f"KTABLE-{prefix}OTHER-")
    merge = named or builder.new_name("KTABLE-MERGE-")
    left_outer, right_outer = kind != "inner", kind == "outer"
    topology.add_processor(this, lambda: TableTableJoinProcessor(
        right_store, joiner, True, left_outer, right_outer), left.node)
    topology.add_processor(other, lambda: TableTableJoinProcessor(
        left_store, joiner, False, right_outer, left_outer), right.node)
    topology.connect_processor_and_state_stores(this, stores=[right_store])
    topology.connect_processor_and_state_stores(other, stores=[left_store])
    store = None
    if materialized is not None:
        store = materialized.name or builder.new_name("KTABLE-MERGE-STATE-STORE-")
    topology.add_processor(merge, lambda: TableStoreProcessor(store), this, other)
    key_serde = (materialized and materialized.key_serde) or left.key_serde or right.key_serde
    if store is not None:
        topology.add_state_store(store_builder(store, materialized, key_serde, None), merge)
    copartition(topology, left.node, right.node)
    return TableJoinResult(merge, store, key_serde,
                           materialized.value_serde if materialized else None)
