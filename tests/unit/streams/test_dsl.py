"""The DSL's stateless operators, grouping and aggregations, and tables, on the test driver
(no broker): what each operator forwards, which need a repartition topic, and what stores
and changelogs hold."""

from __future__ import annotations

from typing import Any

import pytest

from strom.streams import (
    Consumed,
    Grouped,
    Materialized,
    Produced,
    Serdes,
    StreamsBuilder,
    StreamsError,
    TopologyTestDriver,
)

S, L = Serdes.String(), Serdes.Long()


def run(builder: StreamsBuilder, records: list[tuple[Any, Any, int]], output: str = "out",
        key_serde: Any = S, value_serde: Any = S, config: dict[str, Any] | None = None
        ) -> list[tuple[Any, Any]]:
    with TopologyTestDriver(builder.build(), {"application.id": "app", **(config or {})}
                            ) as driver:
        source = driver.create_input_topic("in", S, S)
        for key, value, timestamp in records:
            source.pipe_input(key, value, timestamp)
        return driver.create_output_topic(output, key_serde, value_serde
                                          ).read_key_values_to_list()


def strings(builder: StreamsBuilder) -> Any:
    return builder.stream("in", consumed=Consumed(S, S))


def test_map_filter_and_friends() -> None:
    b = StreamsBuilder()
    (strings(b).filter(lambda k, v: v != "drop")
     .map_values(str.upper)
     .map(lambda k, v: (v, k))
     .filter_not(lambda k, v: k == "SKIP")
     .to("out", Produced(S, S)))
    got = run(b, [("a", "x", 1), ("b", "drop", 2), ("c", "skip", 3), ("d", "y", 4)])
    assert got == [("X", "a"), ("Y", "d")]


def test_flat_map_select_key_and_peek() -> None:
    seen: list[tuple[Any, Any]] = []
    b = StreamsBuilder()
    (strings(b).flat_map(lambda k, v: [(k, w) for w in v.split()])
     .peek(lambda k, v: seen.append((k, v)))
     .select_key(lambda k, v: v[0])
     .to("out", Produced(S, S)))
    got = run(b, [("k", "ab cd", 1)])
    assert got == [("a", "ab"), ("c", "cd")]
    assert seen == [("k", "ab"), ("k", "cd")]


def test_split_sends_each_record_to_its_first_branch_and_merge_joins_them() -> None:
    b = StreamsBuilder()
    short, long_, rest = strings(b).split(lambda k, v: len(v) < 3, lambda k, v: len(v) < 6,
                                          lambda k, v: True)
    short.map_values(lambda v: f"short:{v}").merge(rest.map_values(lambda v: f"rest:{v}")) \
        .to("out", Produced(S, S))
    long_.to("long", Produced(S, S))
    with TopologyTestDriver(b.build(), {"application.id": "app"}) as driver:
        source = driver.create_input_topic("in", S, S)
        for word in ("ab", "abcd", "abcdefg"):
            source.pipe_input("k", word, 1)
        assert driver.create_output_topic("out", S, S).read_values_to_list() == [
            "short:ab", "rest:abcdefg"]
        assert driver.create_output_topic("long", S, S).read_values_to_list() == ["abcd"]


def test_word_count_repartitions_and_counts() -> None:
    b = StreamsBuilder()
    (strings(b).flat_map_values(lambda line: line.lower().split())
     .group_by(lambda k, w: w, Grouped(key_serde=S, value_serde=S))
     .count(Materialized("counts"))
     .to_stream().to("out", Produced(S, L)))
    topology = b.build()
    assert [len(s.nodes) for s in topology.sub_topologies()] == [4, 4]
    with TopologyTestDriver(topology, {"application.id": "wc"}) as driver:
        source = driver.create_input_topic("in", S, S)
        source.pipe_input(None, "a b A", 1000)
        source.pipe_input(None, "b", 500)
        out = driver.create_output_topic("out", S, L)
        records = out.read_records_to_list()
        assert [(r.key, r.value, r.timestamp) for r in records] == [
            ("a", 1, 1000), ("b", 1, 1000), ("a", 2, 1000), ("b", 2, 1000)]
        assert dict(driver.get_key_value_store("counts").all()) == {"a": 2, "b": 2}
        # The changelog holds every update; the repartition topic every word.
        assert driver.create_output_topic("wc-counts-changelog", S, L
                                          ).read_key_values_to_map() == {"a": 2, "b": 2}
        assert driver.create_output_topic("wc-counts-repartition", S, S
                                          ).read_values_to_list() == ["a", "b", "a", "b"]


def test_group_by_key_needs_no_repartition_unless_the_key_changed() -> None:
    b = StreamsBuilder()
    strings(b).group_by_key().count().to_stream().to("out", Produced(S, L))
    assert len(b.build().sub_topologies()) == 1
    b = StreamsBuilder()
    strings(b).select_key(lambda k, v: v).group_by_key(Grouped(S, S)).count()
    assert len(b.build().sub_topologies()) == 2


def test_reduce_and_aggregate_drop_none_keys_and_values() -> None:
    b = StreamsBuilder()
    grouped = strings(b).group_by_key()
    grouped.reduce(lambda agg, v: agg + v).to_stream().to("out", Produced(S, S))
    grouped.aggregate(list, lambda k, v, agg: [*agg, v],
                      Materialized(value_serde=Serdes.Json())).to_stream() \
        .to("lists", Produced(S, Serdes.Json()))
    with TopologyTestDriver(b.build(), {"application.id": "app"}) as driver:
        source = driver.create_input_topic("in", S, S)
        for key, value in (("k", "a"), (None, "x"), ("k", None), ("k", "b"), ("j", "c")):
            source.pipe_input(key, value, 1)
        assert driver.create_output_topic("out", S, S).read_key_values_to_list() == [
            ("k", "a"), ("k", "ab"), ("j", "c")]
        assert driver.create_output_topic("lists", S, Serdes.Json()
                                          ).read_key_values_to_map() == {
            "k": ["a", "b"], "j": ["c"]}


def test_table_keeps_the_latest_value_and_filters_to_tombstones() -> None:
    b = StreamsBuilder()
    table = b.table("in", Consumed(S, S), Materialized("latest"))
    table.filter(lambda k, v: v.startswith("ok")).to_stream().to("out", Produced(S, S))
    with TopologyTestDriver(b.build(), {"application.id": "app"}) as driver:
        source = driver.create_input_topic("in", S, S)
        source.pipe_input("a", "ok-1", 1)
        source.pipe_input("a", "bad", 2)  # the filter now drops a: a tombstone downstream
        source.pipe_input("b", "bad", 3)  # never passed: nothing
        source.pipe_input("b", None, 4)  # deleted: nothing passed before either
        assert driver.create_output_topic("out", S, S).read_key_values_to_list() == [
            ("a", "ok-1"), ("a", None)]
        assert dict(driver.get_key_value_store("latest").all()) == {"a": "bad"}


def test_an_unreadable_record_fails_or_is_skipped_as_configured() -> None:
    b = StreamsBuilder()
    b.stream("in", consumed=Consumed(S, L)).to("out", Produced(S, L))
    with TopologyTestDriver(b.build(), {"application.id": "app"}) as driver, \
            pytest.raises(StreamsError, match="LogAndContinue"):
        driver.create_input_topic("in", S, S).pipe_input("k", "not a long", 1)
    config = {"default.deserialization.exception.handler": "LogAndContinue"}
    with TopologyTestDriver(b.build(), {"application.id": "app", **config}) as driver:
        driver.create_input_topic("in", S, S).pipe_input("k", "not a long", 1)
        driver.create_input_topic("in", S, L).pipe_input("k", 7, 2)
        assert driver.create_output_topic("out", S, L).read_values_to_list() == [7]
        assert driver.tasks[0].dropped == 1
