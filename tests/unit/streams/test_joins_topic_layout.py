"""The runtime's topic layout for joins: repartition and foreign-key topics take the partition
count of the topics a join reads them with (the topology's co-partition groups), joined user
topics must agree, and a global table's topic must exist (with any partition count)."""

from __future__ import annotations

import pytest

from strom.streams import (
    Consumed,
    Joined,
    JoinWindows,
    Serdes,
    StreamsBuilder,
)
from strom.streams.internal_topics import TopicLayoutError, layout

S = Serdes.String()


def plans(builder: StreamsBuilder, **existing: int) -> dict[str, int]:
    planned = layout(builder.build(), "app", {k.replace("_", "-"): n
                                              for k, n in existing.items()})
    return {plan.name: plan.partitions for plan in planned.internal}


def test_a_repartitioned_stream_takes_the_tables_partition_count() -> None:
    builder = StreamsBuilder()
    table = builder.table("table", Consumed(S, S))
    (builder.stream("in", consumed=Consumed(S, S)).select_key(lambda k, v: v)
     .join(table, lambda v, t: v, Joined(S, S, name="sj")))
    # Written by the sub-topology of "in" (4 tasks), read with "table" (2 partitions).
    assert plans(builder, **{"in": 4, "table": 2})["app-sj-left-repartition"] == 2


def test_foreign_key_topics_take_the_counts_of_the_tables_they_are_read_with() -> None:
    builder = StreamsBuilder()
    orders = builder.table("orders", Consumed(S, S))
    orders.join(builder.table("customers", Consumed(S, S)), lambda v: v, lambda o, c: o,
                named="fk")
    counts = plans(builder, orders=3, customers=5)
    assert counts["app-fk-subscription-registration-topic"] == 5
    assert counts["app-fk-subscription-response-topic"] == 3
    assert counts["app-fk-subscription-store-changelog"] == 5


def test_joined_user_topics_must_have_one_partition_count() -> None:
    builder = StreamsBuilder()
    left = builder.stream("left", consumed=Consumed(S, S))
    left.join(builder.stream("right", consumed=Consumed(S, S)), lambda a, b: a,
              JoinWindows.of_time_difference_with_no_grace(1))
    assert plans(builder, left=2, right=2)["app-KSTREAM-JOINTHIS-0000000002-store-changelog"
                                           ] == 2
    with pytest.raises(TopicLayoutError, match=r"left \(2\), right \(3\) are joined"):
        plans(builder, left=2, right=3)


def test_a_global_tables_topic_must_exist_but_takes_any_partition_count() -> None:
    builder = StreamsBuilder()
    products = builder.global_table("products", Consumed(S, S))
    builder.stream("orders", consumed=Consumed(S, S)).join(
        products, lambda k, v: v, lambda v, p: p).to("out")
    with pytest.raises(TopicLayoutError, match="products do not exist"):
        plans(builder, orders=2)
    assert plans(builder, orders=2, products=5) == {}  # nothing made for a global table
