"""Stream-table and stream-global-table joins on the test driver: a stream record joins the
table's value at its arrival (table updates emit nothing, deletions are seen), inner and left
joins, records without key or value, a filtered table materialized for the join, a stream
whose key changed repartitioned first, and global tables: a store of the whole topic, updated
by piping into it, readable by every task, recorded for a runtime to restore."""

from __future__ import annotations

import pytest

from strom.streams import (
    Consumed,
    Joined,
    KeyValueStoreBuilder,
    Materialized,
    Produced,
    StreamsBuilder,
    Topology,
    TopologyError,
)
from strom.streams.aggregate import TableSourceProcessor
from tests.unit.streams.joining import Run, S, joined


def stream_table(left: bool, name: str = "sj") -> StreamsBuilder:
    builder = StreamsBuilder()
    table = builder.table("table", Consumed(S, S), Materialized("table-store"))
    stream = builder.stream("in", consumed=Consumed(S, S))
    join = stream.left_join if left else stream.join
    join(table, joined, Joined(S, S, S, name=name)).to("out", Produced(S, S))
    return builder


def test_a_stream_record_joins_the_table_value_at_its_arrival() -> None:
    run = Run(stream_table(left=False), "in", "table")
    run.pipe("in", "a", "s1", 10)  # no table value yet: nothing
    run.pipe("table", "a", "t1", 50)  # a table update emits nothing
    assert run.take() == []
    run.pipe("in", "a", "s2", 20)  # the current value, whatever its timestamp
    run.pipe("table", "a", "t2", 60)
    run.pipe("in", "a", "s3", 25)
    run.pipe("table", "a", None, 70)  # deleted
    run.pipe("in", "a", "s4", 80)
    assert run.take() == [("a", "s2+t1", 20), ("a", "s3+t2", 25)]
    run.pipe("in", None, "no-key", 90)
    run.pipe("in", "a", None, 91)
    assert run.take() == [] and run.processor("sj").dropped == 2


def test_left_join_passes_none_for_a_missing_table_value_and_keeps_keyless_records() -> None:
    run = Run(stream_table(left=True), "in", "table")
    run.pipe("table", "a", "t1", 5)
    run.pipe("in", "a", "s1", 10)
    run.pipe("in", "b", "s2", 11)
    run.pipe("in", None, "s3", 12)  # no key: joined with None (KIP-962)
    run.pipe("in", "a", None, 13)  # no value: dropped
    assert run.take() == [("a", "s1+t1", 10), ("b", "s2+None", 11), (None, "s3+None", 12)]
    assert run.processor("sj").dropped == 1


def test_a_table_without_a_store_is_materialized_for_the_join() -> None:
    builder = StreamsBuilder()
    table = builder.table("table", Consumed(S, S)).filter(lambda k, v: v != "hidden")
    assert table.store is None
    builder.stream("in", consumed=Consumed(S, S)).join(table, joined).to("out", Produced(S, S))
    assert table.store == "KTABLE-MATERIALIZE-STATE-STORE-0000000006"
    run = Run(builder, "in", "table")
    run.pipe("table", "a", "t1", 1)
    run.pipe("in", "a", "s1", 2)
    run.pipe("table", "a", "hidden", 3)  # filtered out: deleted from the join's view
    run.pipe("in", "a", "s2", 4)
    assert run.take() == [("a", "s1+t1", 2)]
    assert dict(run.driver.get_key_value_store(table.store).all()) == {}


def test_a_stream_whose_key_changed_is_repartitioned_before_joining_a_table() -> None:
    builder = StreamsBuilder()
    table = builder.table("table", Consumed(S, S))
    (builder.stream("in", consumed=Consumed(S, S))
     .map(lambda k, v: (v.split(":")[0], v))
     .join(table, joined, Joined(S, S, name="sj"))
     .to("out", Produced(S, S)))
    topology = builder.build()
    assert list(topology.internal_topics) == ["sj-left-repartition"]
    assert frozenset({"sj-left-repartition", "table"}) in topology.copartition_groups
    run = Run(builder, "in", "table")
    run.pipe("table", "k", "T", 1)
    run.pipe("in", "x", "k:v", 2)
    assert run.take() == [("k", "k:v+T", 2)]
    assert run.driver.create_output_topic("app-sj-left-repartition", S, S
                                          ).read_key_values_to_list() == [("k", "k:v")]


def global_join(left: bool) -> StreamsBuilder:
    builder = StreamsBuilder()
    products = builder.global_table("products", Consumed(S, S), Materialized("products"))
    orders = builder.stream("orders", consumed=Consumed(S, S)).select_key(lambda k, v: v)
    join = orders.left_join if left else orders.join
    join(products, lambda k, v: v.split(":")[0], joined).to("out", Produced(S, S))
    return builder


def test_global_table_lookups_by_a_key_taken_from_the_record() -> None:
    run = Run(global_join(left=False), "orders", "products")
    run.pipe("products", "p1", "pen", 100)  # updates the global store, emits nothing
    run.pipe("orders", "o1", "p1:2", 5)
    run.pipe("orders", "o2", "p2:1", 6)  # no such product
    run.pipe("products", "p2", "ink", 7)
    run.pipe("orders", "o3", "p2:1", 8)
    run.pipe("products", "p1", None, 9)  # deleted
    run.pipe("orders", "o4", "p1:1", 10)
    assert run.take() == [("p1:2", "p1:2+pen", 5), ("p2:1", "p2:1+ink", 8)]
    assert dict(run.driver.get_key_value_store("products").all()) == {"p2": "ink"}
    assert run.driver.global_task is not None and run.driver.global_task.id == "global"


def test_global_left_join() -> None:
    builder = StreamsBuilder()
    products = builder.global_table("products", Consumed(S, S))
    (builder.stream("orders", consumed=Consumed(S, S))
     .left_join(products, lambda k, v: None if v == "none" else v.split(":")[0], joined)
     .to("out", Produced(S, S)))
    run = Run(builder, "orders", "products")
    run.pipe("products", "p1", "pen", 1)
    run.pipe("orders", "o1", "p1:2", 2)
    run.pipe("orders", "o2", "p9:1", 3)
    run.pipe("orders", None, "p1:5", 4)  # no key, but a lookup key: joined
    run.pipe("orders", "o3", "none", 5)  # a key but no lookup key: dropped
    assert run.take() == [("o1", "p1:2+pen", 2), ("o2", "p9:1+None", 3),
                          (None, "p1:5+pen", 4)]


def test_global_stores_are_kept_apart_for_a_runtime_to_restore() -> None:
    builder = global_join(left=True)
    topology = builder.build()
    (store,) = topology.global_stores.values()
    assert (store.store, store.topic) == ("products", "products")
    assert topology.internal_topics == {}  # no repartition for a global table
    assert topology.source_topics == ("orders",)
    assert all("products" not in sub.source_topics for sub in topology.sub_topologies())
    global_sub = topology.global_sub_topology()
    assert global_sub is not None and global_sub.stores == ("products",)
    assert "global stores; generates no tasks" in topology.describe()
    run = Run(builder, "orders", "products")
    run.pipe("products", "p1", "pen", 1)
    assert run.driver.producer_topics == []  # the topic is the store's changelog


def test_global_store_rules() -> None:
    topology = Topology()
    with pytest.raises(TopologyError, match="logging=False"):
        topology.add_global_store(KeyValueStoreBuilder("g"), "src", "t", "p",
                                  lambda: TableSourceProcessor("g"))
    topology.add_global_store(KeyValueStoreBuilder("g", logging=False, timestamped=True),
                              "src", "t", "p", lambda: TableSourceProcessor("g"))
    topology.add_source("in", "x").add_processor("q", lambda: TableSourceProcessor(None), "in")
    with pytest.raises(TopologyError, match="global store"):
        topology.connect_processor_and_state_stores("q", stores=["g"])
