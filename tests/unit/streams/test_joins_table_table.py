"""Table-table joins on their keys on the test driver: inner, left and outer results for
inserts, updates and deletes on either side (deletes become tombstones), result timestamps
(the later side's), a materialized result store with its changelog, tables without a store
materialized for the join, and the co-partition group."""

from __future__ import annotations

from strom.streams import (
    Consumed,
    Materialized,
    Produced,
    StreamsBuilder,
)
from tests.unit.streams.joining import Run, S, joined


def tables(kind: str, materialized: Materialized | None = None) -> StreamsBuilder:
    builder = StreamsBuilder()
    left = builder.table("left", Consumed(S, S), Materialized("L"))
    right = builder.table("right", Consumed(S, S), Materialized("R"))
    join = {"inner": left.join, "left": left.left_join, "outer": left.outer_join}[kind]
    join(right, joined, materialized).to_stream().to("out", Produced(S, S))
    return builder


def test_inner_join_has_results_while_both_sides_have_values() -> None:
    run = Run(tables("inner"))
    run.pipe("left", "a", "A1", 10)
    assert run.take() == []
    run.pipe("right", "a", "B1", 20)
    run.pipe("left", "a", "A2", 15)  # the result's timestamp is the later side's
    run.pipe("right", "a", None, 30)  # the result goes: a tombstone
    run.pipe("left", "a", None, 40)  # no result left to delete: nothing
    run.pipe("right", "a", "B2", 50)  # no left value: nothing
    assert run.take() == [("a", "A1+B1", 20), ("a", "A2+B1", 20), ("a", None, 30)]


def test_left_join_has_a_result_for_every_left_value() -> None:
    run = Run(tables("left"))
    run.pipe("left", "a", "A1", 10)
    run.pipe("right", "a", "B1", 20)
    run.pipe("right", "a", None, 30)
    run.pipe("right", "c", "C", 35)  # no left value: nothing
    run.pipe("left", "a", None, 40)
    run.pipe("left", "c", "X", 45)
    run.pipe("left", "z", None, 46)  # deleting what never was: nothing
    assert run.take() == [("a", "A1+None", 10), ("a", "A1+B1", 20), ("a", "A1+None", 30),
                          ("a", None, 40), ("c", "X+C", 45)]


def test_outer_join_has_a_result_while_either_side_has_a_value() -> None:
    run = Run(tables("outer"))
    run.pipe("left", "a", "A", 10)
    run.pipe("right", "b", "B", 20)
    run.pipe("right", "a", "Ba", 30)
    run.pipe("left", "a", None, 40)
    run.pipe("right", "a", None, 50)
    run.pipe("right", "b", None, 60)
    assert run.take() == [("a", "A+None", 10), ("b", "None+B", 20), ("a", "A+Ba", 30),
                          ("a", "None+Ba", 40), ("a", None, 50), ("b", None, 60)]


def test_a_materialized_result_keeps_the_joined_table_and_logs_it() -> None:
    run = Run(tables("left", Materialized("joined", value_serde=S)))
    run.pipe("left", "a", "A", 1)
    run.pipe("left", "b", "B", 2)
    run.pipe("right", "a", "x", 3)
    run.pipe("left", "b", None, 4)
    store = run.driver.get_key_value_store("joined")
    assert dict(store.all()) == {"a": "A+x"}
    assert store.get_with_timestamp("a") == ("A+x", 3)  # type: ignore[attr-defined]
    changelog = run.driver.create_output_topic("app-joined-changelog", S, S)
    assert changelog.read_key_values_to_list() == [
        ("a", "A+None"), ("b", "B+None"), ("a", "A+x"), ("b", None)]


def test_tables_without_stores_are_materialized_and_co_partitioned() -> None:
    builder = StreamsBuilder()
    left = builder.table("left", Consumed(S, S)).map_values(str.upper)
    right = builder.table("right", Consumed(S, S)).filter(lambda k, v: v != "no")
    left.join(right, joined, named="both").to_stream().to("out", Produced(S, S))
    topology = builder.build()
    assert topology.copartition_groups == [frozenset({"left", "right"})]
    (sub,) = topology.sub_topologies()
    assert {"both-join-this", "both-join-other", "both"} <= set(sub.nodes)
    # The mapped table's store has no value serde of its own: the default's.
    run = Run(builder, **{"default.value.serde": "string"})
    run.pipe("left", "a", "x", 1)
    run.pipe("right", "a", "y", 2)
    run.pipe("right", "a", "no", 3)  # filtered out: the right value goes
    assert run.take() == [("a", "X+y", 2), ("a", None, 3)]
