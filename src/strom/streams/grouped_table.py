"""KTable.group_by and KGroupedTable (Kafka Streams' KTable#groupBy): a table re-grouped by a
new key and aggregated with an adder and a subtractor.

    users_per_region = (builder.table("user-regions", Consumed(STRING, STRING))
        .group_by(lambda user, region: (region, user), Grouped(STRING, STRING))
        .count(Materialized("users-per-region")))

Each update `Change(new, old)` of the table is mapped by the selector: `selector(key, old)` is
sent as a *subtraction* (its group takes the old value back) and `selector(key, new)` as an
*addition*. A None new or old value, or a pair whose mapped value is None, sends nothing for
that half; a pair whose mapped key is None is dropped (counted in `dropped`). Both halves go
through the internal repartition topic `<application.id>-<name>-repartition` (always: the key
changes), `<name>` being the Grouped's name or else the aggregation's store's name. The
aggregation (`KTableAggregateProcessor`) applies, for each record, the subtractor to the old
value (when the group has an aggregate) and then the adder to the new value (starting from the
initializer, or, for reduce, from the value itself, when the group has none); an aggregate
that comes back to its initial value is kept (count 0 stays 0), one that becomes None (a
reducer's subtractor returning None, with no addition after it) is deleted. The result table
forwards `Change(new aggregate, old aggregate)`.

On the repartition topic (as Kafka since KIP-904), the record's key is the mapped key (the
Grouped's key serde) and its value is an envelope, bytes:

    version (1 byte, 0) | flags (1 byte: 1 = has an addition, 2 = has a subtraction)
    addition only:      | new value
    subtraction only:   | old value
    both:               | length of the new value (4 bytes, big-endian) | new value | old value

the values written by the Grouped's value serde (or default.value.serde). When both halves map
to one key they travel in one record (one partition, so one task sees them together and
forwards a single change); otherwise the subtraction is written first, to the old key's
partition, then the addition, to the new key's.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from strom.streams.aggregate import Aggregator, Change, Initializer, Reducer, cached_store
from strom.streams.processor import Processor, ProcessorContext, typed_store
from strom.streams.record import Headers, Record
from strom.streams.serdes import BYTES, LONG, Serde, SerializationError
from strom.streams.stores.kv import KeyValueStoreBuilder, TimestampedKeyValueStore
from strom.streams.topology import InternalTopic

if TYPE_CHECKING:
    from strom.streams.dsl import Grouped, KTable, Materialized

log = logging.getLogger(__name__)

KeyValueSelector = Callable[[Any, Any], tuple[Any, Any]]  # (key, value) -> (new key, value)

_VERSION: Final = 0
_HEAD: Final = struct.Struct(">BB")  # version, flags
_LENGTH: Final = struct.Struct(">I")
_ADD: Final = 1
_SUBTRACT: Final = 2


@dataclass(frozen=True)
class Regrouped:
    """One repartition record's halves: the value to add and the one to take back (None:
    none)."""

    add: bytes | None
    subtract: bytes | None


def encode(add: bytes | None, subtract: bytes | None) -> bytes:
    if add is None and subtract is None:
        raise ValueError("a regrouped record carries an addition, a subtraction or both")
    flags = (_ADD if add is not None else 0) | (_SUBTRACT if subtract is not None else 0)
    head = _HEAD.pack(_VERSION, flags)
    if add is not None and subtract is not None:
        return head + _LENGTH.pack(len(add)) + add + subtract
    body = add if add is not None else subtract
    assert body is not None
    return head + body


def decode(topic: str, data: bytes | None) -> Regrouped:
    if data is None or len(data) < _HEAD.size:
        raise SerializationError(f"{topic}: not a regrouped table record (too short)")
    version, flags = _HEAD.unpack_from(data)
    if version != _VERSION or flags not in (_ADD, _SUBTRACT, _ADD | _SUBTRACT):
        raise SerializationError(f"{topic}: not a regrouped table record (version {version}, "
                                 f"flags {flags})")
    body = data[_HEAD.size:]
    if flags == _ADD:
        return Regrouped(body, None)
    if flags == _SUBTRACT:
        return Regrouped(None, body)
    if len(body) < _LENGTH.size:
        raise SerializationError(f"{topic}: a regrouped table record cut short")
    (length,) = _LENGTH.unpack_from(body)
    rest = body[_LENGTH.size:]
    if length > len(rest):
        raise SerializationError(f"{topic}: a regrouped table record cut short")
    return Regrouped(rest[:length], rest[length:])


def _written(serde: Serde[Any], topic: str, value: Any) -> bytes:
    data = serde.serialize(topic, value)
    if data is None:
        raise SerializationError(f"{topic}: the value serde wrote None for {value!r}")
    return data


class TableRepartitionMapProcessor(Processor):
    """Maps each table change to its subtraction and addition (Kafka's KTableRepartitionMap)
    and forwards them as repartition records (see the module's docstring)."""

    def __init__(self, selector: KeyValueSelector, value_serde: Serde[Any] | None,
                 topic: str) -> None:
        self.selector = selector
        self.given_value_serde = value_serde
        self.topic = topic
        self.dropped = 0

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.value_serde = self.given_value_serde or context.value_serde

    def _pair(self, key: Any, value: Any) -> tuple[Any, bytes] | None:
        if value is None:
            return None
        new_key, new_value = self.selector(key, value)
        if new_value is None:
            return None
        if new_key is None:
            self.dropped += 1
            log.debug("group_by of %r mapped %r to a None key: dropped", key, value)
            return None
        return new_key, _written(self.value_serde, self.topic, new_value)

    def process(self, record: Record) -> None:
        if record.key is None:
            return
        change = record.value
        old = self._pair(record.key, change.old)
        new = self._pair(record.key, change.new)
        forward = self.context.forward
        if old is not None and new is not None and old[0] == new[0]:
            forward(Record(new[0], encode(new[1], old[1]), record.timestamp, record.headers))
            return
        if old is not None:
            forward(Record(old[0], encode(None, old[1]), record.timestamp, record.headers))
        if new is not None:
            forward(Record(new[0], encode(new[1], None), record.timestamp, record.headers))


class TableAggregateProcessor(Processor):
    """count / reduce / aggregate of a grouped table (Kafka's KTableAggregate and KTableReduce):
    the subtractor for the old value, then the adder for the new one; `initializer` None is a
    reduce (a group's first value is its aggregate)."""

    def __init__(self, store_name: str, initializer: Initializer | None, adder: Aggregator,
                 subtractor: Aggregator, value_serde: Serde[Any] | None, topic: str) -> None:
        self.store_name = store_name
        self.initializer = initializer
        self.adder = adder
        self.subtractor = subtractor
        self.given_value_serde = value_serde
        self.topic = topic
        self.dropped = 0

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.store = typed_store(context, self.store_name, TimestampedKeyValueStore)
        self.value_serde = self.given_value_serde or context.value_serde
        self.cached = cached_store(self.store, self._flushed)

    def _flushed(self, key: Any, new: Any, old: Any, timestamp: int, headers: Headers) -> None:
        self.context.forward(Record(key, Change(new, old), timestamp, headers))

    def _value(self, data: bytes | None) -> Any:
        return None if data is None else self.value_serde.deserialize(self.topic, data)

    def process(self, record: Record) -> None:
        key = record.key
        if key is None:
            self.dropped += 1
            return
        halves = decode(self.topic, record.value)
        add, subtract = self._value(halves.add), self._value(halves.subtract)
        found = self.store.get_with_timestamp(key)
        old, timestamp = (None, record.timestamp) if found is None else (
            found[0], max(found[1], record.timestamp))
        current = old
        if subtract is not None and current is not None:
            current = self.subtractor(key, subtract, current)
        if add is not None:
            if current is None:
                current = add if self.initializer is None else self.adder(
                    key, add, self.initializer())
            else:
                current = self.adder(key, add, current)
        if current is None and old is None:
            return  # nothing to take back from a group that has no aggregate
        if self.cached is not None:  # forwarded when the cache is flushed
            self.cached.put(key, current, timestamp, headers=record.headers)
            return
        self.store.put(key, current, timestamp)  # None deletes the group
        self.context.forward(Record(key, Change(current, old), timestamp, record.headers))


def _reduce_half(reducer: Reducer) -> Aggregator:
    return lambda _key, value, aggregate: reducer(aggregate, value)


class KGroupedTable:
    """A table re-grouped by `KTable.group_by`: aggregate it with count, reduce or
    aggregate (each an adder for the values a group gains and a subtractor for those it
    loses)."""

    def __init__(self, table: KTable, selector: KeyValueSelector, grouped: Grouped) -> None:
        self.table = table
        self.selector = selector
        self.grouped = grouped

    def count(self, materialized: Materialized | None = None) -> KTable:
        """Rows per group: +1 for each row that joins it, -1 for each that leaves."""
        return self._aggregate("KTABLE-AGGREGATE", lambda: 0,
                               lambda _k, _v, count: count + 1,
                               lambda _k, _v, count: count - 1, materialized, LONG)

    def reduce(self, adder: Reducer, subtractor: Reducer,
               materialized: Materialized | None = None) -> KTable:
        """`adder(aggregate, value)` for a value that joins the group (its first value is the
        aggregate as it is), `subtractor(aggregate, value)` for one that leaves (a None result
        with nothing to add deletes the group)."""
        return self._aggregate("KTABLE-REDUCE", None, _reduce_half(adder),
                               _reduce_half(subtractor), materialized,
                               self.grouped.value_serde)

    def aggregate(self, initializer: Initializer, adder: Aggregator, subtractor: Aggregator,
                  materialized: Materialized | None = None) -> KTable:
        """`adder(key, value, aggregate)` for a value that joins the group (starting from
        `initializer()`), `subtractor(key, value, aggregate)` for one that leaves."""
        return self._aggregate("KTABLE-AGGREGATE", initializer, adder, subtractor,
                               materialized, None)

    def _aggregate(self, prefix: str, initializer: Initializer | None, adder: Aggregator,
                   subtractor: Aggregator, materialized: Materialized | None,
                   result_serde: Serde[Any] | None) -> KTable:
        from strom.streams.dsl import _DEFAULT, KTable, Materialized
        table, grouped = self.table, self.grouped
        builder, topology = table.builder, table.builder.topology
        materialized = materialized or Materialized()
        select = builder.new_name("KTABLE-SELECT-")
        store = materialized.name or builder.new_name(f"{prefix}-STATE-STORE-")
        base = grouped.name or store
        topic = f"{base}-repartition"
        selector, value_serde = self.selector, grouped.value_serde
        topology.add_processor(
            select, lambda: TableRepartitionMapProcessor(selector, value_serde, topic),
            table.node)
        topology.add_internal_topic(InternalTopic(topic, "repartition"))
        topology.add_sink(f"{base}-sink", topic, select, key_serde=grouped.key_serde,
                          value_serde=BYTES)
        topology.add_source(f"{base}-source", topic, key_serde=grouped.key_serde,
                            value_serde=BYTES)
        name = builder.new_name(f"{prefix}-")
        topology.add_processor(name, lambda: TableAggregateProcessor(
            store, initializer, adder, subtractor, value_serde, topic), f"{base}-source")
        key_serde = materialized.key_serde or grouped.key_serde
        store_value_serde = materialized.value_serde or result_serde
        topology.add_state_store(KeyValueStoreBuilder(
            store, key_serde or _DEFAULT, store_value_serde or _DEFAULT,
            logging=materialized.logging, changelog_config=dict(materialized.changelog_config),
            engine=materialized.engine, timestamped=True, caching=materialized.caching), name)
        return KTable(builder, name, key_serde, store_value_serde, store)
