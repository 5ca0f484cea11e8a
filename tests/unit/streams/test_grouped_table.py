"""KTable.group_by and KGroupedTable on the test driver: count, reduce and aggregate through
the repartition topic (inserts, rows moving to another group, updates within a group,
tombstones, tombstones of keys never seen, None mapped values and keys), the changes the result
table forwards and its store after each step, the order subtractor-then-adder, the repartition
record format, the internal topics' names and layout, and the result used downstream."""

from __future__ import annotations

from typing import Any

import pytest

from strom.streams import (
    Consumed,
    Grouped,
    KGroupedTable,
    KTable,
    Materialized,
    Processor,
    Produced,
    Record,
    Serdes,
    SerializationError,
    StreamsBuilder,
    TopologyTestDriver,
)
from strom.streams.grouped_table import decode, encode
from strom.streams.internal_topics import layout

S = Serdes.String()
L = Serdes.Long()
I = Serdes.Integer()  # noqa: E741
APP = {"application.id": "app"}

Seen = list[tuple[Any, Any, Any, int]]  # key, new, old, timestamp


def watch(table: KTable) -> Seen:
    """The changes `table` forwards: (key, new, old, timestamp)."""
    seen: Seen = []

    class Watch(Processor):
        def process(self, record: Record) -> None:
            change = record.value
            seen.append((record.key, change.new, change.old, record.timestamp))

    table.builder.topology.add_processor(table.builder.new_name("WATCH-"), Watch, table.node)
    return seen


def regions(name: str | None = None) -> tuple[StreamsBuilder, KGroupedTable]:
    builder = StreamsBuilder()
    users = builder.table("users", Consumed(S, S), Materialized("users"))
    return builder, users.group_by(lambda user, region: (region, user), Grouped(S, S, name))


class Run:
    def __init__(self, builder: StreamsBuilder, store: str, topic: str = "users",
                 value_serde: Any = S) -> None:
        self.driver = TopologyTestDriver(builder.build(), APP)
        self.input = self.driver.create_input_topic(topic, S, value_serde)
        self.store = self.driver.get_key_value_store(store)

    def pipe(self, key: str, value: Any, timestamp: int) -> None:
        self.input.pipe_input(key, value, timestamp)

    def contents(self) -> dict[Any, Any]:
        return dict(self.store.all())  # type: ignore[attr-defined]


# -- count -----------------------------------------------------------------------------------

def test_count_of_users_per_region() -> None:
    builder, grouped = regions()
    counts = grouped.count(Materialized("per-region"))
    seen = watch(counts)
    run = Run(builder, "per-region")
    run.pipe("alice", "eu", 10)
    run.pipe("bob", "eu", 20)
    run.pipe("carol", "us", 30)
    assert run.contents() == {"eu": 2, "us": 1}
    assert seen == [("eu", 1, None, 10), ("eu", 2, 1, 20), ("us", 1, None, 30)]
    seen.clear()
    run.pipe("alice", "us", 40)  # moves: eu loses one (first), us gains one
    assert seen == [("eu", 1, 2, 40), ("us", 2, 1, 40)]
    assert run.contents() == {"eu": 1, "us": 2}
    seen.clear()
    run.pipe("bob", None, 50)  # a tombstone: eu loses bob, and keeps its count of 0
    assert seen == [("eu", 0, 1, 50)]
    assert run.contents() == {"eu": 0, "us": 2}
    seen.clear()
    run.pipe("nobody", None, 60)  # a tombstone of a key never seen: nothing
    run.pipe("bob", None, 61)  # nor of one deleted already
    assert seen == []
    run.pipe("bob", "eu", 70)  # back from 0
    assert seen == [("eu", 1, 0, 70)]
    assert run.store.get_with_timestamp("eu") == (1, 70)  # type: ignore[attr-defined]


def test_an_update_within_a_group_is_one_change() -> None:
    """Old and new pair map to one key: they travel in one record, and the group forwards one
    change (its count unchanged), not a -1 and a +1."""
    builder = StreamsBuilder()
    users = builder.table("users", Consumed(S, S))
    seen = watch(users.group_by(lambda user, v: (v.split(":")[0], v), Grouped(S, S))
                 .count(Materialized("per-region")))
    run = Run(builder, "per-region")
    run.pipe("alice", "eu:paris", 10)
    run.pipe("alice", "eu:berlin", 20)
    assert seen == [("eu", 1, None, 10), ("eu", 1, 1, 20)]
    repartition = run.driver.create_output_topic("app-per-region-repartition", S,
                                                 Serdes.Bytes())
    assert [(k, decode("t", v)) for k, v in repartition.read_key_values_to_list()] == [
        ("eu", decode("t", encode(b"eu:paris", None))),
        ("eu", decode("t", encode(b"eu:berlin", b"eu:paris")))]


def test_none_mapped_values_and_keys_are_left_out() -> None:
    builder = StreamsBuilder()
    users = builder.table("users", Consumed(S, S))

    def select(user: str, region: str) -> tuple[Any, Any]:
        if region == "nokey":
            return None, user
        return region, None if region == "hidden" else user

    grouped = users.group_by(select, Grouped(S, S))
    seen = watch(grouped.count(Materialized("per-region")))
    run = Run(builder, "per-region")
    run.pipe("alice", "hidden", 10)  # a None mapped value: no addition
    run.pipe("bob", "nokey", 11)  # a None mapped key: dropped
    assert seen == []
    run.pipe("alice", "eu", 20)  # the old pair had a None value: no subtraction
    run.pipe("bob", "eu", 21)
    run.pipe("alice", "hidden", 30)  # subtraction only
    assert seen == [("eu", 1, None, 20), ("eu", 2, 1, 21), ("eu", 1, 2, 30)]
    assert run.contents() == {"eu": 1}
    select_node = next(n for n in run.driver.topology.nodes if n.startswith("KTABLE-SELECT-"))
    processor = run.driver.tasks[0]._runtimes[select_node].processor  # type: ignore[attr-defined]
    assert processor.dropped == 2  # bob's pair, added and then taken back


# -- reduce ----------------------------------------------------------------------------------

def test_reduce_adds_and_subtracts_and_deletes_on_none() -> None:
    """Sums of amounts per category; the subtractor returns None when the sum reaches 0, which
    deletes the group (as Kafka's KTableReduce does), unless an addition follows."""
    builder = StreamsBuilder()
    items = builder.table("items", Consumed(S, S))

    def subtract(total: int, amount: int) -> int | None:
        return total - amount or None

    summed = items.group_by(lambda item, v: (v.split(":")[0], int(v.split(":")[1])),
                            Grouped(S, L)).reduce(lambda t, a: t + a, subtract,
                                                  Materialized("sums"))
    seen = watch(summed)
    summed.to_stream().to("out", Produced(S, L))
    run = Run(builder, "sums", "items")
    run.pipe("apple", "fruit:3", 1)
    run.pipe("pear", "fruit:4", 2)
    run.pipe("leek", "veg:5", 3)
    assert run.contents() == {"fruit": 7, "veg": 5}
    run.pipe("apple", "fruit:10", 4)  # within the group: 7 - 3 + 10
    run.pipe("pear", "veg:4", 5)  # moves
    run.pipe("apple", None, 6)  # fruit: 10 - 10 = 0 -> None: deleted
    assert seen == [("fruit", 3, None, 1), ("fruit", 7, 3, 2), ("veg", 5, None, 3),
                    ("fruit", 14, 7, 4), ("fruit", 10, 14, 5), ("veg", 9, 5, 5),
                    ("fruit", None, 10, 6)]
    assert run.contents() == {"veg": 9}
    run.pipe("leek", "veg:9", 7)  # veg: 9 - 5 = 4, + 9
    assert run.contents() == {"veg": 13}
    run.pipe("kiwi", "fruit:2", 8)  # a deleted group starts again from the value
    assert run.contents() == {"veg": 13, "fruit": 2}
    out = run.driver.create_output_topic("out", S, L)
    assert out.read_key_values_to_list()[-3:] == [("fruit", None), ("veg", 13), ("fruit", 2)]


def test_reduce_subtraction_to_none_then_addition_starts_from_the_value() -> None:
    builder = StreamsBuilder()
    items = builder.table("items", Consumed(S, S))
    seen = watch(items.group_by(lambda k, v: ("all", int(v)), Grouped(S, L))
                 .reduce(lambda t, a: t + a, lambda t, a: t - a or None, Materialized("sums")))
    run = Run(builder, "sums", "items")
    run.pipe("a", "5", 1)
    run.pipe("a", "7", 2)  # one record: 5 - 5 -> None, then 7 from scratch
    assert seen == [("all", 5, None, 1), ("all", 7, 5, 2)]
    assert run.contents() == {"all": 7}


# -- aggregate -------------------------------------------------------------------------------

def test_aggregate_applies_the_subtractor_before_the_adder() -> None:
    """The members of each group, as a sorted comma-separated list: an update within the group
    must first take the old value out and then put the new one in (the other order would lose
    it); the adder and subtractor see the values in that order."""
    calls: list[str] = []

    def add(key: str, value: str, members: str) -> str:
        calls.append(f"+{value}")
        return ",".join(sorted([*filter(None, members.split(",")), value]))

    def remove(key: str, value: str, members: str) -> str:
        calls.append(f"-{value}")
        names = [m for m in members.split(",") if m]
        names.remove(value)
        return ",".join(names)

    builder = StreamsBuilder()
    users = builder.table("users", Consumed(S, S))
    members = users.group_by(lambda user, v: (v, user.split("@")[0]), Grouped(S, S)) \
        .aggregate(lambda: "", add, remove, Materialized("members", value_serde=S))
    seen = watch(members)
    run = Run(builder, "members")
    run.pipe("ann@1", "eu", 1)
    run.pipe("ann@2", "eu", 2)  # "ann" twice in eu
    run.pipe("ann@1", "eu", 3)  # the same again: -ann then +ann, still two
    assert run.contents() == {"eu": "ann,ann"}
    run.pipe("ann@2", "us", 4)
    assert calls == ["+ann", "+ann", "-ann", "+ann", "-ann", "+ann"]
    assert seen[-3:] == [("eu", "ann,ann", "ann,ann", 3), ("eu", "ann", "ann,ann", 4),
                         ("us", "ann", None, 4)]
    run.pipe("ann@1", None, 5)
    run.pipe("ann@2", None, 6)
    assert run.contents() == {"eu": "", "us": ""}  # the initial value is kept
    assert seen[-2:] == [("eu", "", "ann", 5), ("us", "", "ann", 6)]


def test_aggregate_result_timestamp_is_the_latest() -> None:
    builder, grouped = regions()
    seen = watch(grouped.aggregate(lambda: 0, lambda k, v, a: a + 1, lambda k, v, a: a - 1,
                                   Materialized("agg", value_serde=I)))
    run = Run(builder, "agg")
    run.pipe("alice", "eu", 50)
    run.pipe("bob", "eu", 20)  # out of order: the group keeps the later time
    assert seen == [("eu", 1, None, 50), ("eu", 2, 1, 50)]
    assert run.store.get_with_timestamp("eu") == (2, 50)  # type: ignore[attr-defined]


# -- topology --------------------------------------------------------------------------------

def test_internal_topics_and_layout() -> None:
    builder, grouped = regions()
    grouped.count()
    topology = builder.build()
    assert sorted(topology.internal_topics) == [
        "KTABLE-AGGREGATE-STATE-STORE-0000000003-repartition"]
    assert sorted(topology.stores) == ["KTABLE-AGGREGATE-STATE-STORE-0000000003", "users"]
    planned = layout(topology, "app", {"users": 3})
    assert planned.sub_partitions == {0: 3, 1: 3}
    topics = {p.name: (p.partitions, p.config["cleanup.policy"]) for p in planned.internal}
    assert topics == {
        "app-KTABLE-AGGREGATE-STATE-STORE-0000000003-repartition": (3, "delete"),
        "app-KTABLE-AGGREGATE-STATE-STORE-0000000003-changelog": (3, "compact"),
        "app-users-changelog": (3, "compact")}

    builder, grouped = regions("by-region")
    grouped.reduce(lambda a, b: a + b, lambda a, b: a, Materialized("reduced"))
    topology = builder.build()
    assert list(topology.internal_topics) == ["by-region-repartition"]
    description = topology.describe()
    assert "Sink: by-region-sink (topic: by-region-repartition)" in description
    assert "Source: by-region-source (topics: [by-region-repartition])" in description
    assert "Processor: KTABLE-REDUCE-0000000003 (stores: [reduced])" in description


def test_the_result_table_feeds_downstream_and_logs_its_changes() -> None:
    builder, grouped = regions()
    counts = grouped.count(Materialized("per-region"))
    counts.filter(lambda region, n: n > 0).to_stream().to("out", Produced(S, L))
    run = Run(builder, "per-region")
    run.pipe("alice", "eu", 1)
    run.pipe("bob", "us", 2)
    run.pipe("alice", "us", 3)
    out = run.driver.create_output_topic("out", S, L)
    assert out.read_key_values_to_list() == [("eu", 1), ("us", 1), ("eu", None), ("us", 2)]
    changelog = run.driver.create_output_topic("app-per-region-changelog", S, L)
    assert changelog.read_key_values_to_list() == [("eu", 1), ("us", 1), ("eu", 0), ("us", 2)]


def test_the_result_table_can_be_joined() -> None:
    builder, grouped = regions()
    counts = grouped.count(Materialized("per-region"))
    names = builder.table("region-names", Consumed(S, S), Materialized("names"))
    counts.join(names, lambda n, name: f"{name}: {n}").to_stream().to("out", Produced(S, S))
    driver = TopologyTestDriver(builder.build(), APP)
    driver.create_input_topic("region-names", S, S).pipe_input("eu", "Europe", 1)
    users = driver.create_input_topic("users", S, S)
    users.pipe_input("alice", "eu", 2)
    users.pipe_input("bob", "eu", 3)
    out = driver.create_output_topic("out", S, S)
    assert out.read_values_to_list() == ["Europe: 1", "Europe: 2"]


# -- the repartition record ------------------------------------------------------------------

def test_repartition_record_format() -> None:
    assert encode(b"new", None) == b"\x00\x01new"
    assert encode(None, b"old") == b"\x00\x02old"
    assert encode(b"new", b"old") == b"\x00\x03\x00\x00\x00\x03newold"
    assert encode(b"", b"") == b"\x00\x03\x00\x00\x00\x00"
    for add, subtract in ((b"n", None), (None, b"o"), (b"n", b"o"), (b"", b"o")):
        halves = decode("t", encode(add, subtract))
        assert (halves.add, halves.subtract) == (add, subtract)
    with pytest.raises(ValueError):
        encode(None, None)
    for bad in (None, b"", b"\x00", b"\x01\x01x", b"\x00\x00x", b"\x00\x03\x00",
                b"\x00\x03\x00\x00\x00\x09ab"):
        with pytest.raises(SerializationError):
            decode("t", bad)
