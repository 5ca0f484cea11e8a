"""confluent-kafka, kafka-python and aiokafka members share one classic consumer group on strom:
with a common assignor (range) the partitions spread over the three without overlap, and each
consumes and commits exactly the records of its own partitions."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor as AioRange
from confluent_kafka import ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, produce_all, producer, unique_name
from tests.integration.group_clients import (
    GROUP_BROKER_SETTINGS,
    Consumed,
    Member,
    close_all,
    spread_ok,
)

# kafka-python loads its protocol schemas with importlib.resources.read_text, which Python 3.11
# deprecates; that is kafka-python's business, not a failure of strom.
OPEN_TEXT_DEPRECATED = "ignore:open_text is deprecated:DeprecationWarning"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor as KafkaPythonRange
    from kafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.filterwarnings(OPEN_TEXT_DEPRECATED)

PARTITIONS = 6
PER_PARTITION = 10
SESSION_MS = 6000
HEARTBEAT_MS = 200


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@dataclass
class ThreadMember:
    """A member run by another library on its own thread; the test thread reads these fields."""

    name: str
    assignment: frozenset[int] = frozenset()
    records: list[tuple[int, int]] = field(default_factory=list)
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self, target: Callable[[ThreadMember], None]) -> ThreadMember:
        def run() -> None:
            try:
                target(self)
            except BaseException as exc:  # reported by the test thread
                self.error = exc

        self.thread = threading.Thread(target=run, name=self.name, daemon=True)
        self.thread.start()
        return self

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"{self.name} failed") from self.error

    def join(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(DEADLINE_S)
            assert not self.thread.is_alive(), f"{self.name} did not stop"
        self.check()


def kafka_python_member(bootstrap: str, group: str, topic: str) -> Callable[[ThreadMember], None]:
    def run(member: ThreadMember) -> None:
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                          client_id="mixed-kafka-python", enable_auto_commit=False,
                          auto_offset_reset="earliest",
                          partition_assignment_strategy=[KafkaPythonRange],
                          session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                          fetch_max_wait_ms=100, request_timeout_ms=10000)
        try:
            while not member.stop.is_set():
                for tp, records in c.poll(timeout_ms=100).items():
                    for record in records:
                        c.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                        member.records.append((tp.partition, record.offset))
                member.assignment = frozenset(tp.partition for tp in c.assignment())
        finally:
            c.close()

    return run


def aiokafka_member(bootstrap: str, group: str, topic: str) -> Callable[[ThreadMember], None]:
    async def consume(member: ThreadMember) -> None:
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             client_id="mixed-aiokafka", enable_auto_commit=False,
                             auto_offset_reset="earliest",
                             partition_assignment_strategy=(AioRange,),
                             session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                             fetch_max_wait_ms=100, request_timeout_ms=10000)
        await c.start()
        try:
            while not member.stop.is_set():
                for tp, records in (await c.getmany(timeout_ms=100)).items():
                    for record in records:
                        await c.commit({tp: record.offset + 1})
                        member.records.append((tp.partition, record.offset))
                member.assignment = frozenset(tp.partition for tp in c.assignment())
        finally:
            await c.stop()

    return lambda member: asyncio.run(consume(member))


class Trio:
    """The three members; the test thread polls confluent-kafka and watches the other two."""

    def __init__(self, confluent: Member, log: list[Consumed], *threads: ThreadMember) -> None:
        self.confluent = confluent
        self.log = log
        self.threads = threads
        self._last: dict[str, frozenset[int]] = {}

    def assignments(self) -> dict[str, frozenset[int]]:
        return {self.confluent.name: self.confluent.partitions(),
                **{t.name: t.assignment for t in self.threads}}

    def consumed(self) -> dict[str, list[tuple[int, int]]]:
        return {self.confluent.name: [(r.partition, r.offset) for r in self.log],
                **{t.name: list(t.records) for t in self.threads}}

    def step(self) -> None:
        self.confluent.step(0.05)
        for t in self.threads:
            t.check()

    def poll_until(self, condition: Callable[[], bool], what: str, stable_s: float = 0.0) -> None:
        deadline = time.monotonic() + DEADLINE_S
        since: float | None = None
        while True:
            self.step()
            if condition():
                since = since or time.monotonic()
                if time.monotonic() - since >= stable_s:
                    return
            else:
                since = None
            assert time.monotonic() < deadline, (
                f"timed out waiting for {what}: {self.assignments()}")

    def close(self) -> None:
        """Stops all three at once: a member left polling alone would see the others leave,
        rejoin, and wait in JoinGroup for a member that is no longer polled."""
        for t in self.threads:
            t.stop.set()
        close_all([self.confluent])
        for t in self.threads:
            t.join()

    def spread_and_unchanged(self, partitions: set[int]) -> bool:
        now = self.assignments()
        unchanged, self._last = now == self._last, now
        return unchanged and spread_ok(now, partitions)


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], None]]]:
    actions: list[Callable[[], None]] = []
    yield actions
    for action in reversed(actions):
        with contextlib.suppress(AssertionError):  # the test has its verdict already
            action()


def test_three_client_libraries_share_a_group(broker: EmbeddedBroker,
                                              new_topic: Callable[..., str],
                                              cleanup: list[Callable[[], None]]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(partitions=PARTITIONS, prefix="mixed")
    group = unique_name("mixed")
    everything = set(range(PARTITIONS))
    log: list[Consumed] = []

    confluent = Member.subscribe("confluent", bootstrap, group, topic, log,
                                 client_id="mixed-confluent",
                                 partition_assignment_strategy="range",
                                 session_timeout_ms=SESSION_MS,
                                 heartbeat_interval_ms=HEARTBEAT_MS)
    kp = ThreadMember("kafka-python")
    aio = ThreadMember("aiokafka")
    trio = Trio(confluent, log, kp, aio)
    cleanup.append(trio.close)
    kp.start(kafka_python_member(bootstrap, group, topic))
    aio.start(aiokafka_member(bootstrap, group, topic))

    trio.poll_until(lambda: trio.spread_and_unchanged(everything),
                    "the three to share the partitions", stable_s=2.0)
    settled = trio.assignments()
    assert sorted(len(p) for p in settled.values()) == [2, 2, 2], settled

    delivered = produce_all(producer(bootstrap), topic, [
        {"value": f"v{i}".encode(), "partition": i % PARTITIONS}
        for i in range(PARTITIONS * PER_PARTITION)])
    assert not delivered.failed
    placed = {(m.partition(), m.offset()) for m in delivered.acked}
    trio.poll_until(lambda: sum(map(len, trio.consumed().values())) >= len(placed),
                    "every record to be consumed")
    linger = time.monotonic() + 0.5
    while time.monotonic() < linger:
        trio.step()

    assert trio.assignments() == settled, "the group rebalanced while consuming"
    for name, records in trio.consumed().items():
        assert len(records) == len(set(records)), f"{name} consumed a record twice"
        assert set(records) == {(p, o) for p, o in placed if p in settled[name]}, name
    committed = confluent.consumer.committed(
        [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    assert {tp.partition: tp.offset for tp in committed} == dict.fromkeys(everything,
                                                                          PER_PARTITION)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(
        DEADLINE_S)
    assert described.state == ConsumerGroupState.STABLE
    assert described.partition_assignor == "range"
    assert {m.client_id: {tp.partition for tp in m.assignment.topic_partitions}
            for m in described.members} == {
        f"mixed-{name}": set(parts) for name, parts in settled.items()}
    trio.close()  # a member that failed on its thread fails the test here
