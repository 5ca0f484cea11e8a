"""A join application on a real broker, two instances of it in one group, over co-partitioned
and not co-partitioned inputs: a table of customers (2 partitions) joined with a stream of
clicks keyed by customer (2 partitions: co-partitioned, joined where it is read) and with a
stream of orders keyed by order id (3 partitions: re-keyed by customer, the application
repartitions it through an internal topic with the table's 2 partitions). Every click and
order is joined with its customer exactly as the table held it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from strom.streams import (
    Consumed,
    JoinWindows,
    Produced,
    Serdes,
    StreamsApp,
    StreamsBuilder,
    Topology,
)
from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    STREAMS_BROKER_SETTINGS,
    create_topic,
    producer,
    storage_url,
    unique_name,
)
from tests.integration.test_streams_app import wait_running

pytestmark = pytest.mark.slow  # runs first: see tests/conftest.py

S = Serdes.String()


# Against strom's local log and against the PostgreSQL engine.
STORAGE_ENGINES = ("file", "postgresql")


@pytest.fixture(scope="module")
def streams_broker(broker: EmbeddedBroker) -> EmbeddedBroker:
    """With the initial rebalance delay: the two instances share the tasks."""
    return broker


@pytest.fixture(scope="module")
def single_instance_broker(storage_engine: str, request: pytest.FixtureRequest
                           ) -> Iterator[EmbeddedBroker]:
    """For one instance at a time: no initial rebalance delay (STREAMS_BROKER_SETTINGS)."""
    with EmbeddedBroker(settings=STREAMS_BROKER_SETTINGS,
                        storage=storage_url(request, storage_engine)) as running:
        yield running


def topology(customers: str, clicks: str, orders: str, out: str) -> Topology:
    builder = StreamsBuilder()
    table = builder.table(customers, Consumed(S, S))
    (builder.stream(clicks, consumed=Consumed(S, S))
     .join(table, lambda page, name: f"click {page} by {name}")
     .to(out, Produced(S, S)))
    (builder.stream(orders, consumed=Consumed(S, S))
     .select_key(lambda _order, value: value.split(":")[0])  # "customer:item"
     .join(table, lambda value, name: f"order of {value.split(':')[1]} by {name}")
     .to(out, Produced(S, S)))
    return builder.build()


def produce(bootstrap: str, topic: str, pairs: list[tuple[str, str]]) -> None:
    # Keys partitioned as Java clients (and Kafka Streams) do: murmur2.
    p = producer(bootstrap, partitioner="murmur2_random")
    for key, value in pairs:
        p.produce(topic, key=key.encode(), value=value.encode())
    assert p.flush(DEADLINE_S) == 0


def read_values(bootstrap: str, topic: str, partitions: int, want: int) -> list[tuple[str, str]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 2 * DEADLINE_S
    try:
        while len(seen) < want and time.monotonic() < deadline:
            for msg in c.consume(500, 0.2):
                if msg.error() is None:
                    seen.append(((msg.key() or b"").decode(), (msg.value() or b"").decode()))
        for msg in c.consume(500, 1.0):  # nothing more (no record joined twice)
            if msg.error() is None:
                seen.append(((msg.key() or b"").decode(), (msg.value() or b"").decode()))
    finally:
        c.close()
    return seen


def test_two_instances_join_co_partitioned_and_repartitioned_inputs(
        streams_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bootstrap = streams_broker.bootstrap_servers
    app_id = unique_name("joins")
    customers, clicks, orders, out = (unique_name(n) for n in
                                      ("customers", "clicks", "orders", "joined"))
    create_topic(bootstrap, customers, 2)
    create_topic(bootstrap, clicks, 2)
    create_topic(bootstrap, orders, 3)
    create_topic(bootstrap, out, 2)
    names = {f"c{i}": f"name{i}" for i in range(20)}
    produce(bootstrap, customers, list(names.items()))
    apps = [StreamsApp(topology(customers, clicks, orders, out),
                       {"application.id": app_id, "bootstrap.servers": bootstrap,
                        "processing.guarantee": "exactly_once_v2",
                        "state.dir": str(tmp_path / instance), "commit.interval.ms": 100})
            for instance in ("a", "b")]
    for app in apps:
        app.start()
    try:
        for app in apps:
            wait_running(app)
        click_pairs = [(f"c{i % 20}", f"page{i}") for i in range(60)]
        order_pairs = [(f"o{i}", f"c{(i * 7) % 20}:item{i}") for i in range(60)]
        produce(bootstrap, clicks, click_pairs)
        produce(bootstrap, orders, order_pairs)
        seen = read_values(bootstrap, out, 2, len(click_pairs) + len(order_pairs))
        want = sorted([(c, f"click {page} by {names[c]}") for c, page in click_pairs] +
                      [(v.split(":")[0], f"order of {v.split(':')[1]} by {names[v.split(':')[0]]}")
                       for _o, v in order_pairs])
        assert sorted(seen) == want
        # The orders went through a repartition topic with the table's partition count; the
        # clicks were joined where they were read (no repartition topic for them).
        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
        repartition = [t for t in topics if t.startswith(app_id) and t.endswith("-repartition")]
        assert len(repartition) == 1, repartition
        assert len(topics[repartition[0]].partitions) == 2
        # Both instances ran tasks (the group spread them).
        assert all(app.metrics()["tasks"] for app in apps)
    finally:
        for app in apps:
            assert app.close(DEADLINE_S)
    assert all(app.failure is None for app in apps)


def windowed_topology(impressions: str, clicks: str, out: str) -> Topology:
    builder = StreamsBuilder()
    shown = builder.stream(impressions, consumed=Consumed(S, S))  # keyed by ad
    (builder.stream(clicks, consumed=Consumed(S, S))  # keyed by click id, value "ad:user"
     .select_key(lambda _click, value: value.split(":")[0])
     .join(shown, lambda click, impression: f"{click} after {impression}",
           JoinWindows.of_time_difference_with_no_grace(10_000))
     .to(out, Produced(S, S)))
    return builder.build()


def test_a_windowed_stream_join_across_a_restart(single_instance_broker: EmbeddedBroker,
                                                 tmp_path: Path) -> None:
    """A stream-stream join (clicks re-keyed and repartitioned to the impressions' 2
    partitions) whose window stores are on disk (RocksDB, the default): a click after a clean
    restart still finds the impression the first run kept, from the store's checkpoint, and a
    click outside the window finds nothing."""
    bootstrap = single_instance_broker.bootstrap_servers
    app_id = unique_name("ssjoin")
    impressions, clicks, out = (unique_name(n) for n in ("impressions", "clicks", "joined"))
    create_topic(bootstrap, impressions, 2)
    create_topic(bootstrap, clicks, 3)
    create_topic(bootstrap, out, 2)
    restored: list[tuple[str, int]] = []

    def run(produce_first: list[tuple[str, str, list[tuple[str, str, int]]]],
            want: int) -> list[tuple[str, str]]:
        app = StreamsApp(windowed_topology(impressions, clicks, out),
                         {"application.id": app_id, "bootstrap.servers": bootstrap,
                          "processing.guarantee": "exactly_once_v2",
                          "state.dir": str(tmp_path / "state"), "commit.interval.ms": 100},
                         restore_listener=lambda p: restored.append((p.store, p.restored)))
        app.start()
        try:
            wait_running(app)
            for _name, topic, records in produce_first:
                p = producer(bootstrap, partitioner="murmur2_random")
                for key, value, timestamp in records:
                    p.produce(topic, key=key.encode(), value=value.encode(),
                              timestamp=timestamp)
                assert p.flush(DEADLINE_S) == 0
            return read_values(bootstrap, out, 2, want)
        finally:
            assert app.close(DEADLINE_S)

    base = int(time.time() * 1000) - 60_000
    first = run([("impressions", impressions, [(f"ad{i}", f"shown{i}", base) for i in range(6)]),
                 ("clicks", clicks, [("x0", "ad0:u0", base + 1_000)])], want=1)
    assert first == [("ad0", "ad0:u0 after shown0")]
    restored.clear()
    second = run([("clicks", clicks, [("x1", "ad1:u1", base + 9_000),
                                      ("x2", "ad2:u2", base + 30_000)])], want=2)
    # The whole output topic: the first run's join, then the restarted one's (ad2's click is
    # 30 s after its impression: outside the 10 s window).
    assert sorted(second) == [("ad0", "ad0:u0 after shown0"), ("ad1", "ad1:u1 after shown1")]
    join_stores = [(s, n) for s, n in restored if "JOIN" in s.upper()]
    assert join_stores and all(n == 0 for _s, n in join_stores), restored
