"""The DSL (Kafka Streams' StreamsBuilder, KStream, KGroupedStream, KTable) over a Topology.

    builder = StreamsBuilder()
    (builder.stream("words-input", Consumed(value_serde=Serdes.String()))
        .flat_map_values(lambda line: line.lower().split())
        .group_by(lambda key, word: word, Grouped(key_serde=Serdes.String()))
        .count(Materialized("counts"))
        .to_stream()
        .to("word-counts", Produced(Serdes.String(), Serdes.Long())))
    topology = builder.build()

Operators that change the key (map, select_key, flat_map, group_by) mark the stream: the next
key-based operator (an aggregation, a join) first writes it through an internal repartition
topic, `<application.id>-<name>-repartition`, so every record of a key reaches one task.
A table's group_by (`grouped_table`) always goes through one, its subtractions with its additions.
Joins (stream-stream, stream-table, table-table, foreign-key, global tables) are built by
`joins`, `table_joins`, `fk_join` and `global_table`; the methods here only choose which.
Nodes, stores and internal topics are named as Kafka Streams names them
(KSTREAM-MAP-0000000001, ...), or as `named=` / `Materialized(name)` say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, overload

from strom.streams.aggregate import (
    Aggregator,
    Initializer,
    Reducer,
    StreamAggregateProcessor,
    TableFilterProcessor,
    TableMapValuesProcessor,
    TableSourceProcessor,
    TableToStreamProcessor,
    reduce_aggregator,
)
from strom.streams.fk_join import ForeignKeyExtractor, foreign_key_join
from strom.streams.global_table import GlobalKTable, global_table, stream_global_table_join
from strom.streams.joins import Joined, JoinWindows, StreamJoined, stream_stream_join
from strom.streams.operators import (
    BranchProcessor,
    FilterProcessor,
    FlatMapProcessor,
    FlatMapValuesProcessor,
    MapProcessor,
    MapValuesProcessor,
    PassThroughProcessor,
    PeekProcessor,
    Predicate,
    SelectKeyProcessor,
)
from strom.streams.processor import ProcessorSupplier
from strom.streams.record import Record
from strom.streams.serdes import LONG, Serde
from strom.streams.stores.kv import KeyValueStoreBuilder
from strom.streams.stream_join import ValueJoiner
from strom.streams.table_joins import (
    KeyMapper,
    TableJoinResult,
    stream_table_join,
    table_table_join,
)
from strom.streams.topology import InternalTopic, Partitioner, TimestampExtractor, Topology

if TYPE_CHECKING:
    from strom.streams.grouped_table import KeyValueSelector, KGroupedTable
    from strom.streams.suppress import Suppressed
    from strom.streams.windowed import SessionWindowedKStream, TimeWindowedKStream
    from strom.streams.windows import SessionWindows, SlidingWindows, TimeWindows


@dataclass(frozen=True)
class Consumed:
    key_serde: Serde[Any] | None = None
    value_serde: Serde[Any] | None = None
    timestamp_extractor: TimestampExtractor | None = None
    name: str | None = None


@dataclass(frozen=True)
class Produced:
    key_serde: Serde[Any] | None = None
    value_serde: Serde[Any] | None = None
    partitioner: Partitioner | None = None
    name: str | None = None


@dataclass(frozen=True)
class Grouped:
    key_serde: Serde[Any] | None = None
    value_serde: Serde[Any] | None = None
    name: str | None = None  # names the repartition topic


@dataclass(frozen=True)
class Repartitioned:
    key_serde: Serde[Any] | None = None
    value_serde: Serde[Any] | None = None
    name: str | None = None
    partitions: int | None = None


@dataclass(frozen=True)
class Materialized:
    """Names (and so makes queryable) the store behind a table or an aggregation."""

    name: str | None = None
    key_serde: Serde[Any] | None = None
    value_serde: Serde[Any] | None = None
    logging: bool = True
    changelog_config: tuple[tuple[str, str], ...] = ()
    engine: Callable[[str], Any] | None = None  # a persistent engine factory (stores.*)
    retention: int | timedelta | None = None  # windowed stores: ms, if longer than needed
    # The record cache (statestore.cache.max.bytes) in front of an aggregation's store:
    # False writes and forwards every update (Kafka's withCachingDisabled()).
    caching: bool = True

    def with_caching_disabled(self) -> Materialized:
        return replace(self, caching=False)

    def with_caching_enabled(self) -> Materialized:
        return replace(self, caching=True)


class StreamsBuilder:
    def __init__(self) -> None:
        self.topology = Topology()
        self._index = 0

    def new_name(self, prefix: str) -> str:
        name = f"{prefix}{self._index:010d}"
        self._index += 1
        return name

    def stream(self, *topics: str, consumed: Consumed | None = None) -> KStream:
        consumed = consumed or Consumed()
        name = consumed.name or self.new_name("KSTREAM-SOURCE-")
        self.topology.add_source(name, *topics, key_serde=consumed.key_serde,
                                 value_serde=consumed.value_serde,
                                 timestamp_extractor=consumed.timestamp_extractor)
        return KStream(self, name, consumed.key_serde, consumed.value_serde)

    def table(self, topic: str, consumed: Consumed | None = None,
              materialized: Materialized | None = None) -> KTable:
        """The topic as a table: the latest value of each key (None deletes it)."""
        consumed = consumed or Consumed()
        source = consumed.name or self.new_name("KSTREAM-SOURCE-")
        self.topology.add_source(source, topic, key_serde=consumed.key_serde,
                                 value_serde=consumed.value_serde,
                                 timestamp_extractor=consumed.timestamp_extractor)
        name = self.new_name("KTABLE-SOURCE-")
        materialized = materialized or Materialized()
        store = materialized.name or self.new_name("KTABLE-SOURCE-STATE-STORE-")
        self.topology.add_processor(name, lambda: TableSourceProcessor(store), source)
        self.topology.add_state_store(KeyValueStoreBuilder(
            store, materialized.key_serde or consumed.key_serde or _DEFAULT,
            materialized.value_serde or consumed.value_serde or _DEFAULT,
            logging=materialized.logging, changelog_config=dict(materialized.changelog_config),
            engine=materialized.engine, timestamped=True), name)
        return KTable(self, name, materialized.key_serde or consumed.key_serde,
                      materialized.value_serde or consumed.value_serde, store)

    def global_table(self, topic: str, consumed: Consumed | None = None,
                     materialized: Materialized | None = None) -> GlobalKTable:
        """The topic, all its partitions, as a table every task can join with (see
        `global_table`)."""
        return global_table(self, topic, consumed or Consumed(), materialized or Materialized())

    def build(self) -> Topology:
        return self.topology


_DEFAULT: Any = None  # a store without a serde uses the application's default (see Task)


class KStream:
    def __init__(self, builder: StreamsBuilder, node: str, key_serde: Serde[Any] | None,
                 value_serde: Serde[Any] | None, repartition_required: bool = False) -> None:
        self.builder = builder
        self.node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.repartition_required = repartition_required

    # -- stateless -----------------------------------------------------------------------

    def map(self, mapper: Callable[[Any, Any], tuple[Any, Any]],
            named: str | None = None) -> KStream:
        return KStream(self.builder, self._add("KSTREAM-MAP-", lambda: MapProcessor(mapper),
                                               named), None, None, True)

    def map_values(self, mapper: Callable[[Any], Any], named: str | None = None) -> KStream:
        return self._same_key("KSTREAM-MAPVALUES-", lambda: MapValuesProcessor(mapper), named,
                              keep_value_serde=False)

    def _add(self, prefix: str, supplier: ProcessorSupplier, named: str | None) -> str:
        name = named or self.builder.new_name(prefix)
        self.builder.topology.add_processor(name, supplier, self.node)
        return name

    def _same_key(self, prefix: str, supplier: ProcessorSupplier, named: str | None,
                  keep_value_serde: bool) -> KStream:
        return KStream(self.builder, self._add(prefix, supplier, named), self.key_serde,
                       self.value_serde if keep_value_serde else None,
                       self.repartition_required)

    def flat_map(self, mapper: Callable[[Any, Any], Iterable[tuple[Any, Any]]],
                 named: str | None = None) -> KStream:
        return KStream(self.builder, self._add("KSTREAM-FLATMAP-",
                                               lambda: FlatMapProcessor(mapper), named),
                       None, None, True)

    def flat_map_values(self, mapper: Callable[[Any], Iterable[Any]],
                        named: str | None = None) -> KStream:
        return self._same_key("KSTREAM-FLATMAPVALUES-", lambda: FlatMapValuesProcessor(mapper),
                              named, keep_value_serde=False)

    def filter(self, predicate: Predicate, named: str | None = None) -> KStream:
        return self._same_key("KSTREAM-FILTER-", lambda: FilterProcessor(predicate), named,
                              keep_value_serde=True)

    def filter_not(self, predicate: Predicate, named: str | None = None) -> KStream:
        return self._same_key("KSTREAM-FILTER-", lambda: FilterProcessor(predicate, False),
                              named, keep_value_serde=True)

    def select_key(self, mapper: Callable[[Any, Any], Any], named: str | None = None
                   ) -> KStream:
        return KStream(self.builder, self._add("KSTREAM-KEY-SELECT-",
                                               lambda: SelectKeyProcessor(mapper), named),
                       None, self.value_serde, True)

    def peek(self, action: Callable[[Any, Any], Any], named: str | None = None) -> KStream:
        return self._same_key("KSTREAM-PEEK-", lambda: PeekProcessor(action), named,
                              keep_value_serde=True)

    def foreach(self, action: Callable[[Any, Any], Any], named: str | None = None) -> None:
        self._add("KSTREAM-FOREACH-", lambda: PeekProcessor(action), named)

    def split(self, *predicates: Predicate, named: str | None = None) -> list[KStream]:
        """One stream per predicate: each record goes to the first whose predicate holds
        (Kafka's split/branch); add `lambda k, v: True` last for "the rest"."""
        name = named or self.builder.new_name("KSTREAM-BRANCH-")
        children = [f"{name}-{i}" for i in range(len(predicates))]
        self.builder.topology.add_processor(
            name, lambda: BranchProcessor(list(predicates), children), self.node)
        streams = []
        for child in children:
            self.builder.topology.add_processor(child, PassThroughProcessor, name)
            streams.append(KStream(self.builder, child, self.key_serde, self.value_serde,
                                   self.repartition_required))
        return streams

    def merge(self, other: KStream, named: str | None = None) -> KStream:
        name = named or self.builder.new_name("KSTREAM-MERGE-")
        self.builder.topology.add_processor(name, PassThroughProcessor, self.node, other.node)
        same = self.key_serde is other.key_serde and self.value_serde is other.value_serde
        return KStream(self.builder, name, self.key_serde if same else None,
                       self.value_serde if same else None,
                       self.repartition_required or other.repartition_required)

    def process(self, supplier: ProcessorSupplier, *stores: str,
                named: str | None = None) -> KStream:
        """Records through a Processor: `supplier` makes one per task (a Processor class,
        or a function returning a new Processor); `stores` names the state stores it uses.
        What it forwards may have any key (the next key-based operator repartitions)."""
        name = self._add("KSTREAM-PROCESSOR-", supplier, named)
        if stores:
            self.builder.topology.connect_processor_and_state_stores(name, stores=stores)
        return KStream(self.builder, name, None, None, True)

    # -- out -----------------------------------------------------------------------------

    def to(self, topic: str | Callable[[Record], str], produced: Produced | None = None
           ) -> None:
        produced = produced or Produced()
        name = produced.name or self.builder.new_name("KSTREAM-SINK-")
        self.builder.topology.add_sink(
            name, topic, self.node, key_serde=produced.key_serde or self.key_serde,
            value_serde=produced.value_serde or self.value_serde,
            partitioner=produced.partitioner)

    def repartition(self, repartitioned: Repartitioned | None = None) -> KStream:
        """Through an internal topic (`<application.id>-<name>-repartition`)."""
        r = repartitioned or Repartitioned()
        return self._through_topic(r.name, r.key_serde or self.key_serde,
                                   r.value_serde or self.value_serde, r.partitions)

    def _through_topic(self, name: str | None, key_serde: Serde[Any] | None,
                       value_serde: Serde[Any] | None, partitions: int | None) -> KStream:
        base = name or self.builder.new_name("KSTREAM-REPARTITION-")
        topic = f"{base}-repartition"
        topology = self.builder.topology
        topology.add_internal_topic(InternalTopic(topic, "repartition", partitions))
        topology.add_sink(f"{base}-sink", topic, self.node, key_serde=key_serde,
                          value_serde=value_serde)
        topology.add_source(f"{base}-source", topic, key_serde=key_serde,
                            value_serde=value_serde)
        return KStream(self.builder, f"{base}-source", key_serde, value_serde)

    # -- joins ---------------------------------------------------------------------------

    @overload
    def join(self, other: KStream, joiner: ValueJoiner, windows: JoinWindows,
             stream_joined: StreamJoined | None = None) -> KStream: ...

    @overload
    def join(self, other: KTable, joiner: ValueJoiner, joined: Joined | None = None
             ) -> KStream: ...

    @overload
    def join(self, other: GlobalKTable, key_mapper: KeyMapper, joiner: ValueJoiner,
             named: str | None = None) -> KStream: ...

    def join(self, other: KStream | KTable | GlobalKTable, *args: Any, **kwargs: Any
             ) -> KStream:
        """`joiner(value, other value)` for each match: with another stream, records of one
        key within `windows` of each other; with a table, its current value for the key; with
        a global table, its value for `key_mapper(key, value)`."""
        return self._join("inner", other, *args, **kwargs)

    @overload
    def left_join(self, other: KStream, joiner: ValueJoiner, windows: JoinWindows,
                  stream_joined: StreamJoined | None = None) -> KStream: ...

    @overload
    def left_join(self, other: KTable, joiner: ValueJoiner, joined: Joined | None = None
                  ) -> KStream: ...

    @overload
    def left_join(self, other: GlobalKTable, key_mapper: KeyMapper, joiner: ValueJoiner,
                  named: str | None = None) -> KStream: ...

    def left_join(self, other: KStream | KTable | GlobalKTable, *args: Any, **kwargs: Any
                  ) -> KStream:
        """As `join`, and every record of this stream without a match gives `joiner(value,
        None)` (with a stream: once its window has closed)."""
        return self._join("left", other, *args, **kwargs)

    def outer_join(self, other: KStream, joiner: ValueJoiner, windows: JoinWindows,
                   stream_joined: StreamJoined | None = None) -> KStream:
        """As `left_join` with a stream, and unmatched records of the other stream give
        `joiner(None, other value)` once their window has closed."""
        return self._join("outer", other, joiner, windows, stream_joined)

    def _join(self, kind: str, other: Any, *args: Any, **kwargs: Any) -> KStream:
        if isinstance(other, KStream):
            node, key_serde = stream_stream_join(self, other, *args, kind=kind, **kwargs)
            return KStream(self.builder, node, key_serde, None)
        if isinstance(other, KTable) and kind != "outer":
            node, key_serde = stream_table_join(self, other, *args, left=kind == "left",
                                                **kwargs)
            return KStream(self.builder, node, key_serde, None)
        if isinstance(other, GlobalKTable) and kind != "outer":
            node = stream_global_table_join(self, other, *args, left=kind == "left", **kwargs)
            return KStream(self.builder, node, self.key_serde, None, self.repartition_required)
        joinable = "a KStream" if kind == "outer" else "a KStream, a KTable or a GlobalKTable"
        raise TypeError(f"a stream {kind}-joins {joinable}, not {type(other).__name__}")

    # -- grouping ------------------------------------------------------------------------

    def group_by_key(self, grouped: Grouped | None = None) -> KGroupedStream:
        grouped = grouped or Grouped()
        return KGroupedStream(self, grouped.key_serde or self.key_serde,
                              grouped.value_serde or self.value_serde, grouped.name,
                              self.repartition_required)

    def group_by(self, selector: Callable[[Any, Any], Any], grouped: Grouped | None = None
                 ) -> KGroupedStream:
        grouped = grouped or Grouped()
        rekeyed = self.select_key(selector)
        return KGroupedStream(rekeyed, grouped.key_serde, grouped.value_serde or
                              self.value_serde, grouped.name, True)

    def to_table(self, materialized: Materialized | None = None) -> KTable:
        stream = self._through_topic(None, self.key_serde, self.value_serde, None) \
            if self.repartition_required else self
        materialized = materialized or Materialized()
        name = self.builder.new_name("KSTREAM-TOTABLE-")
        store = materialized.name or self.builder.new_name("KSTREAM-TOTABLE-STATE-STORE-")
        topology = self.builder.topology
        topology.add_processor(name, lambda: TableSourceProcessor(store), stream.node)
        topology.add_state_store(KeyValueStoreBuilder(
            store, materialized.key_serde or stream.key_serde or _DEFAULT,
            materialized.value_serde or stream.value_serde or _DEFAULT,
            logging=materialized.logging, engine=materialized.engine, timestamped=True), name)
        return KTable(self.builder, name, stream.key_serde, stream.value_serde, store)


class KGroupedStream:
    def __init__(self, stream: KStream, key_serde: Serde[Any] | None,
                 value_serde: Serde[Any] | None, name: str | None,
                 repartition: bool) -> None:
        self.stream = stream
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.name = name
        self.repartition = repartition

    def _aggregate(self, prefix: str, initializer: Initializer | None,
                   aggregator: Aggregator, materialized: Materialized | None,
                   result_serde: Serde[Any] | None) -> KTable:
        builder = self.stream.builder
        materialized = materialized or Materialized()
        store = materialized.name or builder.new_name(f"{prefix}-STATE-STORE-")
        stream = self.stream
        if self.repartition:
            stream = stream._through_topic(self.name or f"{store}", self.key_serde,
                                           self.value_serde, None)
        name = builder.new_name(f"{prefix}-")
        key_serde = materialized.key_serde or self.key_serde
        value_serde = materialized.value_serde or result_serde
        builder.topology.add_processor(
            name, lambda: StreamAggregateProcessor(store, initializer, aggregator), stream.node)
        builder.topology.add_state_store(KeyValueStoreBuilder(
            store, key_serde or _DEFAULT, value_serde or _DEFAULT, logging=materialized.logging,
            changelog_config=dict(materialized.changelog_config), engine=materialized.engine,
            timestamped=True, caching=materialized.caching), name)
        return KTable(builder, name, key_serde, value_serde, store)

    def count(self, materialized: Materialized | None = None) -> KTable:
        """Records per key (records with a None key or value are not counted)."""
        return self._aggregate("KSTREAM-AGGREGATE", lambda: 0,
                               lambda key, value, count: count + 1, materialized,
                               materialized.value_serde if materialized and
                               materialized.value_serde else LONG)

    def reduce(self, reducer: Reducer, materialized: Materialized | None = None) -> KTable:
        return self._aggregate("KSTREAM-REDUCE", None, reduce_aggregator(reducer),
                               materialized, self.value_serde)

    def aggregate(self, initializer: Initializer, aggregator: Aggregator,
                  materialized: Materialized | None = None) -> KTable:
        return self._aggregate("KSTREAM-AGGREGATE", initializer, aggregator, materialized,
                               None)

    @overload
    def windowed_by(self, windows: TimeWindows | SlidingWindows) -> TimeWindowedKStream: ...

    @overload
    def windowed_by(self, windows: SessionWindows) -> SessionWindowedKStream: ...

    def windowed_by(self, windows: TimeWindows | SlidingWindows | SessionWindows
                    ) -> TimeWindowedKStream | SessionWindowedKStream:
        """Aggregations per window (strom.streams.windowed)."""
        from strom.streams.windowed import windowed_by
        return windowed_by(self, windows)


class KTable:
    def __init__(self, builder: StreamsBuilder, node: str, key_serde: Serde[Any] | None,
                 value_serde: Serde[Any] | None, store: str | None) -> None:
        self.builder = builder
        self.node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.store = store  # the queryable store, if the table is materialized

    @property
    def queryable_store_name(self) -> str | None:
        return self.store

    def _then(self, prefix: str, supplier: ProcessorSupplier, named: str | None,
              value_serde: Serde[Any] | None) -> KTable:
        name = named or self.builder.new_name(prefix)
        self.builder.topology.add_processor(name, supplier, self.node)
        return KTable(self.builder, name, self.key_serde, value_serde, None)

    def filter(self, predicate: Predicate, named: str | None = None) -> KTable:
        """Updates whose new value fails the predicate become deletions downstream."""
        return self._then("KTABLE-FILTER-", lambda: TableFilterProcessor(predicate), named,
                          self.value_serde)

    def filter_not(self, predicate: Predicate, named: str | None = None) -> KTable:
        return self._then("KTABLE-FILTER-", lambda: TableFilterProcessor(predicate, False),
                          named, self.value_serde)

    def map_values(self, mapper: Callable[[Any], Any], named: str | None = None) -> KTable:
        return self._then("KTABLE-MAPVALUES-",
                          lambda: TableMapValuesProcessor(lambda _k, v: mapper(v)), named, None)

    def group_by(self, selector: KeyValueSelector, grouped: Grouped | None = None
                 ) -> KGroupedTable:
        """The table re-grouped: `selector(key, value)` gives each row's (new key, new value);
        aggregate the groups with count, reduce or aggregate (each update takes the row's old
        pair out of its group and adds the new pair to its own; see `grouped_table`)."""
        from strom.streams.grouped_table import KGroupedTable
        return KGroupedTable(self, selector, grouped or Grouped())

    def suppress(self, suppressed: Suppressed) -> KTable:
        """Final results of a windowed table (strom.streams.suppress)."""
        from strom.streams.suppress import suppress
        return suppress(self, suppressed)

    # -- joins ---------------------------------------------------------------------------

    @overload
    def join(self, other: KTable, joiner: ValueJoiner, materialized: Materialized | None = None,
             named: str | None = None) -> KTable: ...

    @overload
    def join(self, other: KTable, foreign_key_extractor: ForeignKeyExtractor,
             joiner: ValueJoiner, materialized: Materialized | None = None,
             named: str | None = None) -> KTable: ...

    def join(self, other: KTable, *args: Any, **kwargs: Any) -> KTable:
        """A table of `joiner(value, other value)` for the keys both tables have; or, given a
        `foreign_key_extractor(value)`, joined with the other table's row of that key (a
        foreign-key join, see `fk_join`)."""
        return self._join("inner", other, *args, **kwargs)

    @overload
    def left_join(self, other: KTable, joiner: ValueJoiner,
                  materialized: Materialized | None = None, named: str | None = None
                  ) -> KTable: ...

    @overload
    def left_join(self, other: KTable, foreign_key_extractor: ForeignKeyExtractor,
                  joiner: ValueJoiner, materialized: Materialized | None = None,
                  named: str | None = None) -> KTable: ...

    def left_join(self, other: KTable, *args: Any, **kwargs: Any) -> KTable:
        """As `join`, and every key of this table has a result (None for the other value)."""
        return self._join("left", other, *args, **kwargs)

    def outer_join(self, other: KTable, joiner: ValueJoiner,
                   materialized: Materialized | None = None, named: str | None = None
                   ) -> KTable:
        """A result for every key either table has (None for the missing value)."""
        return self._join("outer", other, joiner, materialized, named)

    def _join(self, kind: str, other: KTable, *args: Any, **kwargs: Any) -> KTable:
        result: TableJoinResult
        if "foreign_key_extractor" in kwargs or (len(args) > 1 and callable(args[1])):
            if kind == "outer":
                raise TypeError("a foreign-key join is an inner or a left join")
            result = foreign_key_join(self, other, *args, left_join=kind == "left", **kwargs)
        else:
            result = table_table_join(self, other, *args, kind=kind, **kwargs)
        return KTable(self.builder, result.node, result.key_serde, result.value_serde,
                      result.store)

    def to_stream(self, named: str | None = None) -> KStream:
        name = named or self.builder.new_name("KTABLE-TOSTREAM-")
        self.builder.topology.add_processor(name, TableToStreamProcessor, self.node)
        return KStream(self.builder, name, self.key_serde, self.value_serde)
