"""Fixtures for the integration tests: a real strom broker per module and a unique topic per test.

Each test module gets one in-process broker on a free loopback port (override the module-scoped
``broker_settings`` fixture to start it with other settings). A module that sets
``STORAGE_ENGINES = ALL_ENGINES`` runs all its tests once per storage engine (``file``, the
local log; ``memory``; ``postgresql``, a new database on the session's private PostgreSQL
server); others run on the local engine.  Topics are created through the
Kafka protocol with confluent-kafka's AdminClient, as any Kafka user would create them, and the
helpers here read topics back with confluent-kafka consumers that use ``assign()`` with explicit
offsets (strom has no consumer groups yet).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing import EmbeddedBroker

# Every wait in these tests is a poll loop with a deadline this short or shorter.
DEADLINE_S = 20.0

# Brokers for streams tests that run one application instance at a time: a new (or emptied)
# group forms its first generation at once, not after group.initial.rebalance.delay.ms (3 s by
# default), which every StreamsApp start paid. Not for tests of instances sharing the tasks:
# without the delay the first instance forms the group alone and keeps the stateful tasks, the
# others get warm-up replicas only (as with Kafka Streams' high-availability assignor).
STREAMS_BROKER_SETTINGS: Mapping[str, str] = {"group.initial.rebalance.delay.ms": "0"}


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    """Broker settings (Kafka's dotted names) for this module's broker; override per module."""
    return {}


ALL_ENGINES = ("file", "memory", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage_engine" in metafunc.fixturenames:
        engines = getattr(metafunc.module, "STORAGE_ENGINES", ("file",))
        metafunc.parametrize("storage_engine", engines, indirect=True, scope="module")


@pytest.fixture(scope="module")
def storage_engine(request: pytest.FixtureRequest) -> str:
    """The storage engine of this module's broker (see STORAGE_ENGINES)."""
    engine: str = request.param
    return engine


def storage_url(request: pytest.FixtureRequest, engine: str) -> str:
    """A `--storage` URL of a new, empty store of `engine` ("" for the local default)."""
    if engine == "memory":
        return "memory:"
    if engine == "postgresql":
        url: str = request.getfixturevalue("postgres_server").new_database()
        return url
    return ""


@pytest.fixture(scope="module")
def broker(broker_settings: dict[str, str], storage_engine: str,
           request: pytest.FixtureRequest) -> Iterator[EmbeddedBroker]:
    """One in-process broker for the whole module, on 127.0.0.1 and a free port."""
    with EmbeddedBroker(settings=broker_settings,
                        storage=storage_url(request, storage_engine)) as running:
        yield running


def unique_name(prefix: str = "it") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_topic(bootstrap: str, name: str, partitions: int = 1,
                 config: Mapping[str, str] | None = None) -> str:
    """Creates `name` with CreateTopics and waits until Metadata shows all its partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1,
                  config=dict(config or {}))],
        operation_timeout=10, request_timeout=15)
    futures[name].result(timeout=DEADLINE_S)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return name
        assert time.monotonic() < deadline, f"topic {name} never showed {partitions} partitions"
        time.sleep(0.05)


@pytest.fixture
def new_topic(broker: EmbeddedBroker) -> Callable[..., str]:
    """A factory: new_topic(partitions=1, config=None) creates a uniquely named topic."""

    def make(partitions: int = 1, config: Mapping[str, str] | None = None,
             prefix: str = "it") -> str:
        return create_topic(broker.bootstrap_servers, unique_name(prefix), partitions, config)

    return make


@pytest.fixture
def topic(new_topic: Callable[..., str]) -> str:
    """A new single-partition topic with a unique name."""
    return new_topic()


def producer(bootstrap: str, **extra: Any) -> Producer:
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": 5,
                            "message.timeout.ms": 15000, "socket.timeout.ms": 10000}
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    return Producer(conf)


def consumer(bootstrap: str, **extra: Any) -> Consumer:
    """A consumer for assign() only: no subscribe, no commits (strom has no groups yet)."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "group.id": unique_name("unused"),
                            "enable.auto.commit": False, "enable.auto.offset.store": False,
                            "auto.offset.reset": "error", "fetch.wait.max.ms": 100,
                            "socket.timeout.ms": 10000, "enable.partition.eof": True}
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    return Consumer(conf)


class Delivered:
    """Collects delivery reports: the acknowledged messages and the errors, in report order."""

    def __init__(self) -> None:
        self.acked: list[Message] = []
        self.failed: list[tuple[KafkaError, Message]] = []

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.acked.append(msg)
        else:
            self.failed.append((err, msg))


def produce_all(p: Producer, topic: str, records: Sequence[Mapping[str, Any]]) -> Delivered:
    """Produces each record (keyword arguments of Producer.produce) and waits for every report."""
    delivered = Delivered()
    for record in records:
        while True:
            try:
                p.produce(topic, on_delivery=delivered, **record)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    remaining = p.flush(DEADLINE_S)
    assert remaining == 0, f"{remaining} messages were never reported"
    return delivered


def consume_partitions(bootstrap: str, topic: str, partitions: Sequence[int] = (0,),
                       start: int = 0, expected: int | None = None,
                       **extra: Any) -> list[Message]:
    """Reads each partition from `start` to its end (partition EOF), returns messages in order.

    With `expected`, keeps reading until that many messages arrived (for acks=0 producers whose
    last messages may still be in flight) rather than stopping at the first EOF.
    """
    c = consumer(bootstrap, **extra)
    try:
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        messages: list[Message] = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if expected is None and at_eof == set(partitions):
                break
            if expected is not None and len(messages) >= expected:
                break
            msg = c.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    continue
                raise KafkaException(err)
            at_eof.discard(msg.partition())
            messages.append(msg)
        else:
            raise AssertionError(f"timed out reading {topic}: got {len(messages)} messages, "
                                 f"EOF on {sorted(at_eof)}")
        return messages
    finally:
        c.close()
