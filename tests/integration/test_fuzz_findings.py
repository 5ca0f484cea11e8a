"""The fuzzing campaign's reproducers (shared/research/fuzz-report.md), replayed byte for byte
against a fresh broker: each now gets Kafka's answer, and consumer groups, transactions and
topic deletion keep working for real clients, also after a restart."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v1.response import MetadataResponse
from kio.schema.offset_commit.v2.response import OffsetCommitResponse

from strom.coordinator.hashing import partition_for
from strom.protocol.messages import response_type
from strom.protocol.safe_decoder import decode
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, unique_name
from tests.integration.raw_client import RawClient

SETTINGS = {"group.initial.rebalance.delay.ms": "0"}
TXN_IDS = ("a", "b", "c", "tx-1", "my-app-tx")


def frame(text: str) -> bytes:
    """Hex as the report writes it: spaces ignored, `xx{*n}` repeats a byte n times."""
    out = bytearray()
    for part in text.split():
        if "{*" in part:
            byte, count = part.rstrip("}").split("{*")
            out += bytes.fromhex(byte) * int(count)
        else:
            out += bytes.fromhex(part)
    return bytes(out)


def replay(client: RawClient, hex_frame: str) -> bytes:
    """Sends the frame and returns the response frame (without its size)."""
    data = frame(hex_frame)
    assert struct.unpack(">i", data[:4])[0] == len(data) - 4, "the size prefix must be right"
    client.send_raw(data)
    return client.recv_frame()


def body(api_key: int, version: int, response: bytes) -> object:
    decoded, _ = decode(response_type(api_key, version), response, 4)
    return decoded


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(settings=SETTINGS, data_dir=tmp_path / "data") as running:
        yield running


def init_transactions(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                         "message.timeout.ms": 10000, "socket.timeout.ms": 10000})
    producer.init_transactions(DEADLINE_S)
    return producer


def assert_transactions_work(bootstrap: str) -> None:
    """InitProducerId for the report's ids, then one committed transaction read back."""
    topic = unique_name("txn")
    for transactional_id in TXN_IDS:
        producer = init_transactions(bootstrap, transactional_id)
        producer.begin_transaction()
        producer.produce(topic, key=transactional_id.encode(), value=b"v")
        producer.commit_transaction(DEADLINE_S)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("rc"),
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        keys = read_until_eof(consumer)
    finally:
        consumer.close()
    assert sorted(keys) == sorted(t.encode() for t in TXN_IDS)


def read_until_eof(consumer: Consumer) -> list[bytes]:
    keys: list[bytes] = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == -191:  # _PARTITION_EOF
                return keys
            raise KafkaException(msg.error())
        keys.append(msg.key())
    raise AssertionError(f"no end of partition; got {keys}")


def group_ids_on_many_partitions(partitions: int = 50) -> list[str]:
    """Group ids that map to several different __consumer_offsets partitions, 0 and 41 too."""
    wanted = {0, 1, 17, 41, partitions - 1}
    found: dict[int, str] = {}
    for i in range(100_000):
        group = f"g{i}"
        p = partition_for(group, partitions)
        if p in wanted and p not in found:
            found[p] = group
        if len(found) == len(wanted):
            break
    return list(found.values())


def assert_groups_work(bootstrap: str, groups: list[str]) -> None:
    """A subscribed consumer per group reads what was produced and commits it."""
    topic = unique_name("grp")
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(3):
        producer.produce(topic, value=b"m%d" % i)
    assert producer.flush(DEADLINE_S) == 0
    for group in groups:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "session.timeout.ms": 6000})
        try:
            consumer.subscribe([topic])
            got = []
            deadline = time.monotonic() + DEADLINE_S
            while len(got) < 3 and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    got.append(msg.value())
            assert got == [b"m0", b"m1", b"m2"], f"group {group} read {got}"
            consumer.commit(asynchronous=False)
            committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)
            assert committed[0].offset == 3, f"group {group}: {committed}"
        finally:
            consumer.close()


def internal_partitions(bootstrap: str) -> dict[str, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = admin.list_topics(timeout=10).topics
    return {name: len(t.partitions) for name, t in topics.items() if name.startswith("__")}


def test_metadata_naming_transaction_state_does_not_create_it(broker: EmbeddedBroker) -> None:
    """Finding 1: Metadata v1 for __transaction_state on a fresh broker."""
    with RawClient(broker.port) as client:
        response = body(3, 1, replay(client, "00000023 0003 0001 00000002 ffff 00000001 0013 "
                                             "5f5f7472616e73616374696f6e5f7374617465"))
    assert isinstance(response, MetadataResponse)
    (topic,) = response.topics
    assert (topic.name, topic.error_code, topic.is_internal) == (
        "__transaction_state", ErrorCode.unknown_topic_or_partition, True)
    assert "__transaction_state" not in broker.server.engine.topics()
    assert_transactions_work(broker.bootstrap_servers)
    assert internal_partitions(broker.bootstrap_servers)["__transaction_state"] == 50
    broker.restart()
    assert_transactions_work(broker.bootstrap_servers)


def test_consumer_offsets_cannot_be_deleted(broker: EmbeddedBroker) -> None:
    """Finding 2: DeleteTopics v1 of __consumer_offsets, then Metadata, then OffsetCommit."""
    with RawClient(broker.port) as client:
        deleted = replay(client, "00000026 0014 0001 00000001 ffff 00000001 0012 "
                                 "5f5f636f6e73756d65725f6f666673657473 00001388")
        result = body(20, 1, deleted).responses[0]  # type: ignore[attr-defined]
        assert result.error_code == ErrorCode.invalid_topic_exception
        replay(client, "00000025 0003 0001 00000002 ffff 00000002 0012 "
                       "5f5f636f6e73756d65725f6f666673657473 0001 74")
        commit = body(8, 2, replay(
            client, "00000035 0008 0002 00000003 ffff 0002 6730 ffffffff 0000 "
                    "ffffffffffffffff 00000001 0001 74 00000001 00000000 0000000000000005 0000"))
    assert isinstance(commit, OffsetCommitResponse)
    assert [p.error_code for t in commit.topics for p in t.partitions] == [ErrorCode.none]
    assert internal_partitions(broker.bootstrap_servers)["__consumer_offsets"] == 50
    groups = group_ids_on_many_partitions()
    assert_groups_work(broker.bootstrap_servers, groups)
    broker.restart()
    assert internal_partitions(broker.bootstrap_servers)["__consumer_offsets"] == 50
    assert_groups_work(broker.bootstrap_servers, groups)


@pytest.mark.parametrize("length", [213, 214, 240, 246, 247, 249])
def test_long_topic_names_create_and_delete(broker: EmbeddedBroker, length: int) -> None:
    """Findings 3 and 4: CreateTopics then DeleteTopics of names up to Kafka's 249 chars."""
    name = "e" * length
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic(name, 2, 1)])[name].result(DEADLINE_S)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    producer.produce(name, value=b"x", partition=1)
    assert producer.flush(DEADLINE_S) == 0
    with RawClient(broker.port) as client:
        deleted = replay(client, _delete_frame(name))
    result = body(20, 1, deleted).responses[0]  # type: ignore[attr-defined]
    assert (result.name, result.error_code) == (name, ErrorCode.none)
    assert name not in admin.list_topics(timeout=10).topics
    broker.restart()
    assert name not in admin.list_topics(timeout=10).topics
    assert not [p for p in broker.data_dir.iterdir() if p.name.startswith(name[:200])]


def _delete_frame(name: str) -> str:
    """DeleteTopics v1 for `name`, laid out as the report's frame for e{*214}."""
    size = 20 + len(name)
    return f"{size:08x} 0014 0001 00000001 ffff 00000001 {len(name):04x} {name.encode().hex()} " \
           "00001388"


def test_delete_frame_is_the_reports() -> None:
    assert frame(_delete_frame("e" * 214)) == frame(
        "000000ea 0014 0001 00000001 ffff 00000001 00d6 65{*214} 00001388")


def test_metadata_auto_creates_a_247_character_name(broker: EmbeddedBroker) -> None:
    """Finding 4: Metadata v1 for a{*247} answered with no brokers and no topics."""
    with RawClient(broker.port) as client:
        response = body(3, 1, replay(client, "00000107 0003 0001 00000001 ffff 00000001 00f7 "
                                             "61{*247}"))
    assert isinstance(response, MetadataResponse)
    assert len(response.brokers) == 1
    (topic,) = response.topics
    assert (topic.name, topic.error_code, len(topic.partitions)) == ("a" * 247, 0, 1)


def test_concurrent_create_partitions_each_get_an_answer(broker: EmbeddedBroker) -> None:
    """Finding 5: two CreatePartitions v0 on "cp" (1 partition), to 64 and to 2, at once."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic("cp", 1, 1)])["cp"].result(DEADLINE_S)
    frames = ["0000001f 0025 0000 00000001 ffff 00000001 0002 6370 00000040 ffffffff 00001388 00",
              "0000001f 0025 0000 00000002 ffff 00000001 0002 6370 00000002 ffffffff 00001388 00"]
    answers: dict[int, object] = {}

    def send(i: int) -> None:
        with RawClient(broker.port) as client:
            answers[i] = body(37, 0, replay(client, frames[i])).results  # type: ignore[attr-defined]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    codes = sorted(r.error_code for i in range(2) for r in answers[i])  # type: ignore[attr-defined]
    assert len(codes) == 2, answers
    assert codes[0] == ErrorCode.none
    assert codes[1] in (ErrorCode.none, ErrorCode.invalid_partitions)
    partitions = len(admin.list_topics("cp", timeout=10).topics["cp"].partitions)
    assert partitions in (2, 64)
