"""Global tables (Kafka's GlobalKTable): a topic read whole, every partition of it, into one
store that every task of the application instance reads; streams join it by a key they compute
from each record (`key_mapper(key, value)`), with no repartitioning and no co-partitioning.

    products = builder.global_table("products", Consumed(Serdes.String(), Serdes.Json()))
    orders.join(products, lambda order_id, order: order["product"],
                lambda order, product: {**order, "price": product["price"]})

The store is a global store of the topology (`Topology.global_stores` names it and its topic):
a runtime fills it from the whole topic, all partitions up to their end offsets, before any
task processes a record (the topic is the store's changelog: the store logs nothing), then keeps
applying the topic's new records. The test driver applies a record piped into the topic at once.
A global table's updates never trigger join results; a stream record joins what the store holds
when it is processed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strom.streams.aggregate import TableSourceProcessor
from strom.streams.serdes import Serde
from strom.streams.stores.kv import KeyValueStoreBuilder
from strom.streams.stream_join import ValueJoiner
from strom.streams.table_joins import KeyMapper, StreamTableJoinProcessor

if TYPE_CHECKING:
    from strom.streams.dsl import Consumed, KStream, Materialized, StreamsBuilder


class GlobalKTable:
    """A topic as a table held whole by every application instance; only joins read it (and
    the test driver's `get_state_store(store)`)."""

    def __init__(self, builder: StreamsBuilder, store: str, topic: str,
                 key_serde: Serde[Any] | None, value_serde: Serde[Any] | None) -> None:
        self.builder = builder
        self.store = store
        self.topic = topic
        self.key_serde = key_serde
        self.value_serde = value_serde

    @property
    def queryable_store_name(self) -> str:
        return self.store


def global_table(builder: StreamsBuilder, topic: str, consumed: Consumed,
                 materialized: Materialized) -> GlobalKTable:
    """Adds the topic as a global table: a source and a processor keeping the latest value of
    each key (None deletes it) in a global store."""
    source = consumed.name or builder.new_name("KSTREAM-SOURCE-")
    processor = builder.new_name("KTABLE-SOURCE-")
    store = materialized.name or builder.new_name("KTABLE-SOURCE-STATE-STORE-")
    key_serde = materialized.key_serde or consumed.key_serde
    value_serde = materialized.value_serde or consumed.value_serde
    builder.topology.add_global_store(
        KeyValueStoreBuilder(store, key_serde, value_serde, logging=False,
                             engine=materialized.engine, timestamped=True),
        source, topic, processor, lambda: TableSourceProcessor(store),
        key_serde=consumed.key_serde, value_serde=consumed.value_serde,
        timestamp_extractor=consumed.timestamp_extractor)
    return GlobalKTable(builder, store, topic, key_serde, value_serde)


def stream_global_table_join(stream: KStream, table: GlobalKTable, key_mapper: KeyMapper,
                             joiner: ValueJoiner, named: str | None = None, *, left: bool
                             ) -> str:
    """Adds a join of a stream with a global table; returns the results' node."""
    name = named or stream.builder.new_name("KSTREAM-LEFTJOIN-" if left else "KSTREAM-JOIN-")
    stream.builder.topology.add_processor(
        name, lambda: StreamTableJoinProcessor(table.store, key_mapper, joiner, left),
        stream.node)
    return name
