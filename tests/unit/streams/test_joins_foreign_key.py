"""Foreign-key joins (KIP-213) on the test driver: results as either table changes, foreign-key
changes (the old subscription is dropped), a None foreign key (inner: no result, left: joined
with None), deletions as tombstones, stale answers dropped by the value hash, the internal
topics and stores and their co-partition groups, and the messages' serdes."""

from __future__ import annotations

from typing import Any

import pytest

from strom.streams import (
    Consumed,
    Materialized,
    Produced,
    SerializationError,
    StreamsBuilder,
)
from strom.streams.fk_messages import (
    Instruction,
    Subscription,
    SubscriptionResponse,
    SubscriptionResponseSerde,
    SubscriptionSerde,
)
from tests.unit.streams import joining
from tests.unit.streams.joining import S


def joined(order: Any, customer: Any) -> str:
    return f"{order}+{customer}"


def customer_of(order: str) -> str | None:
    customer = order.split(":")[0]
    return None if customer == "none" else customer


class Run(joining.Run):
    """Tables `orders` (value "customer:item") and `customers`; `take()` reads `out`."""

    def __init__(self, builder: StreamsBuilder) -> None:
        super().__init__(builder, "orders", "customers", "order-updates")

    def subscriptions(self) -> list[bytes]:
        """The subscription store's keys: foreign key length, foreign key, order key."""
        return [key for key, _ in self.driver.get_key_value_store("fk-subscription-store").all()]

    def processor(self, name: str) -> Any:
        for task in self.driver.tasks:
            if name in task._runtimes:
                return task._runtimes[name].processor  # type: ignore[attr-defined]
        raise KeyError(name)


def fk_join(left: bool, materialized: Materialized | None = None) -> StreamsBuilder:
    builder = StreamsBuilder()
    orders = builder.table("orders", Consumed(S, S), Materialized("orders"))
    customers = builder.table("customers", Consumed(S, S), Materialized("customers"))
    join = orders.left_join if left else orders.join
    join(customers, customer_of, joined, materialized, named="fk").to_stream().to(
        "out", Produced(S, S))
    return builder


def test_inner_join_follows_both_tables_and_foreign_key_changes() -> None:
    run = Run(fk_join(left=False))
    run.pipe("customers", "c1", "Ann", 25)
    run.pipe("orders", "o1", "c1:pen", 20)  # at the later of the two timestamps
    run.pipe("orders", "o2", "c2:ink", 21)  # no customer c2 yet: nothing
    run.pipe("customers", "c2", "Bob", 30)  # answers o2's subscription
    run.pipe("customers", "c1", "Ann2", 40)
    assert run.take() == [("o1", "c1:pen+Ann", 25), ("o2", "c2:ink+Bob", 30),
                          ("o1", "c1:pen+Ann2", 40)]
    assert run.subscriptions() == [b"\0\0\0\x02c1o1", b"\0\0\0\x02c2o2"]
    run.pipe("orders", "o1", "c2:pen", 50)  # moves to c2: unsubscribes from c1
    assert run.subscriptions() == [b"\0\0\0\x02c2o1", b"\0\0\0\x02c2o2"]
    run.pipe("customers", "c1", "Ann3", 55)  # o1 no longer follows c1: nothing
    run.pipe("orders", "o1", "c9:pen", 60)  # to a customer that does not exist: tombstone
    assert run.take() == [("o1", "c2:pen+Bob", 50), ("o1", None, 60)]
    run.pipe("orders", "o2", "none:ink", 70)  # no foreign key: dropped, its result goes
    run.pipe("customers", "c2", None, 80)  # nobody follows c2 any more: nothing
    assert run.take() == [("o2", None, 70)]
    assert run.subscriptions() == [b"\0\0\0\x02c9o1"]
    assert run.processor("fk-subscription-registration").dropped == 1
    run.pipe("orders", "o3", "c1:cup", 90)
    run.pipe("customers", "c1", None, 95)  # the customer goes: so does the result
    run.pipe("orders", "o3", None, 100)  # the order goes (a tombstone, as Kafka sends)
    assert run.take() == [("o3", "c1:cup+Ann3", 90), ("o3", None, 95), ("o3", None, 100)]


def test_left_join_answers_every_order_with_none_for_no_customer() -> None:
    run = Run(fk_join(left=True))
    run.pipe("orders", "o1", "c1:pen", 10)
    run.pipe("customers", "c1", "Ann", 20)
    run.pipe("orders", "o1", "none:pen", 30)  # a None foreign key: joined with None
    assert run.subscriptions() == []  # unsubscribed from c1, nothing kept for None
    run.pipe("customers", "c1", "Ann2", 40)  # o1 unsubscribed from c1: nothing
    run.pipe("orders", "o1", None, 50)
    run.pipe("orders", "o2", None, 55)  # deleting what never was: nothing
    assert run.take() == [("o1", "c1:pen+None", 10), ("o1", "c1:pen+Ann", 20),
                          ("o1", "none:pen+None", 30), ("o1", None, 50)]


def test_a_stale_answer_is_dropped() -> None:
    # Two updates of one order in one step: both subscriptions are answered after the second
    # update, so the first answer is about a value the order no longer has.
    builder = StreamsBuilder()
    orders = (builder.stream("order-updates", consumed=Consumed(S, S))
              .flat_map_values(lambda v: v.split("|"))
              .to_table(Materialized("orders", S, S)))
    customers = builder.table("customers", Consumed(S, S))
    orders.join(customers, customer_of, joined, named="fk").to_stream().to(
        "out", Produced(S, S))
    run = Run(builder)
    run.pipe("customers", "c1", "Ann", 1)
    run.pipe("order-updates", "o1", "c1:pen|c1:ink", 5)
    assert run.take() == [("o1", "c1:ink+Ann", 5)]
    assert run.processor("fk-response-join").stale == 1


def test_internal_topics_stores_and_co_partition_groups() -> None:
    builder = fk_join(left=False, materialized=Materialized("result", value_serde=S))
    topology = builder.build()
    assert set(topology.internal_topics) == {"fk-subscription-registration-topic",
                                             "fk-subscription-response-topic"}
    assert set(topology.copartition_groups) == {
        frozenset({"fk-subscription-registration-topic", "customers"}),
        frozenset({"fk-subscription-response-topic", "orders"})}
    assert len(topology.sub_topologies()) == 2
    run = Run(builder)
    run.pipe("customers", "c1", "Ann", 1)
    run.pipe("orders", "o1", "c1:pen", 2)
    assert dict(run.driver.get_key_value_store("result").all()) == {"o1": "c1:pen+Ann"}
    assert {"app-fk-subscription-registration-topic", "app-fk-subscription-response-topic",
            "app-fk-subscription-store-changelog", "app-result-changelog"
            } <= set(run.driver.producer_topics)
    store = run.driver.get_key_value_store("fk-subscription-store")
    ((key, subscription),) = store.all()
    assert key == b"\x00\x00\x00\x02c1o1"
    assert subscription.instruction is Instruction.PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE


def test_unnamed_join_takes_kafkas_generated_names() -> None:
    builder = StreamsBuilder()
    orders = builder.table("orders", Consumed(S, S))
    orders.join(builder.table("customers", Consumed(S, S)), customer_of, joined)
    assert set(builder.build().internal_topics) == {
        "KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-0000000006-topic",
        "KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-0000000007-topic"}


def test_messages_round_trip_and_unknown_versions_are_refused() -> None:
    subscription = Subscription(b"h" * 16, Instruction.DELETE_KEY_AND_PROPAGATE, b"key", 3)
    data = SubscriptionSerde().serialize("t", subscription)
    assert data is not None and SubscriptionSerde().deserialize("t", data) == subscription
    deleted = Subscription(None, Instruction.PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE, b"", -1)
    assert SubscriptionSerde().deserialize(
        "t", SubscriptionSerde().serialize("t", deleted)) == deleted
    for response in (SubscriptionResponse(b"h" * 16, b"", 0),
                     SubscriptionResponse(None, None, 7)):
        raw = SubscriptionResponseSerde().serialize("t", response)
        assert SubscriptionResponseSerde().deserialize("t", raw) == response
    with pytest.raises(SerializationError, match="version 9"):
        SubscriptionSerde().deserialize("t", b"\x09" + data[1:])
    with pytest.raises(SerializationError, match="too short"):
        SubscriptionResponseSerde().deserialize("t", b"\x00\x00")
