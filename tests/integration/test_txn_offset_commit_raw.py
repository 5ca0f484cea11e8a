"""TxnOffsetCommit on the wire (v0 and v3): offsets of an open transaction stay out of
OffsetFetch, answer UNSTABLE_OFFSET_COMMIT to require_stable (v7 and v8), count after the
COMMIT marker, vanish after an ABORT, survive a restart while the transaction is open (and
after its marker), and a
failed transaction verification answers its error for every partition. The transaction
coordinator is replaced by a fake `verify`; its markers by GroupRuntime.complete_txn."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.offset_fetch.v7 import request as fetch_v7
from kio.schema.offset_fetch.v8 import request as fetch_v8
from kio.schema.txn_offset_commit.v0 import request as txn_v0
from kio.schema.txn_offset_commit.v3 import request as txn_v3
from kio.static.primitive import i16, i32, i64

from strom.broker.state import Broker
from strom.protocol.control_batch import build_control_batch
from strom.storage.api import AppendBatch
from strom.testing import EmbeddedBroker
from tests.integration.raw_client import RawClient

PID, EPOCH = 4242, 0
UNSTABLE = ErrorCode.unstable_offset_commit


class Verifier:
    """Stands in for TransactionRuntime.verify: every partition is in the transaction."""

    def __init__(self) -> None:
        self.error = 0
        self.calls: list[tuple[str, int, int, list[tuple[str, int]]]] = []

    def __call__(self, transactional_id: str, producer_id: int, producer_epoch: int,
                 partitions: Any) -> int:
        self.calls.append((transactional_id, producer_id, producer_epoch, list(partitions)))
        return self.error


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


def inner(embedded: EmbeddedBroker) -> Broker:
    broker = embedded.server.broker
    assert broker is not None
    return broker


@pytest.fixture
def verifier(broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> Verifier:
    fake = Verifier()
    monkeypatch.setattr(inner(broker).transactions, "verify", fake)
    return fake


def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"txn-topic-{suffix}", f"txn-group-{suffix}"


def create_topic(client: RawClient, topic: str) -> None:
    answer = client.request(MetadataRequest(
        topics=(MetadataRequestTopic(topic_id=None, name=topic),),
        allow_auto_topic_creation=True, include_topic_authorized_operations=False))
    assert answer.topics[0].error_code == ErrorCode.none


def commit_v3(client: RawClient, group: str, topic: str, offset: int, *,
              generation: int = -1, member: str = "") -> int:
    answer = client.request(txn_v3.TxnOffsetCommitRequest(
        transactional_id="tx", group_id=group, producer_id=i64(PID), producer_epoch=i16(EPOCH),
        generation_id=i32(generation), member_id=member, group_instance_id=None,
        topics=(txn_v3.TxnOffsetCommitRequestTopic(name=topic, partitions=(
            txn_v3.TxnOffsetCommitRequestPartition(
                partition_index=i32(0), committed_offset=i64(offset),
                committed_leader_epoch=i32(-1), committed_metadata="m"),)),)))
    return int(answer.topics[0].partitions[0].error_code)


def commit_v0(client: RawClient, group: str, topic: str, offset: int) -> int:
    answer = client.request(txn_v0.TxnOffsetCommitRequest(
        transactional_id="tx", group_id=group, producer_id=i64(PID), producer_epoch=i16(EPOCH),
        topics=(txn_v0.TxnOffsetCommitRequestTopic(name=topic, partitions=(
            txn_v0.TxnOffsetCommitRequestPartition(
                partition_index=i32(0), committed_offset=i64(offset),
                committed_metadata=None),)),)))
    return int(answer.topics[0].partitions[0].error_code)


def fetch_v7_(client: RawClient, group: str, topic: str, stable: bool) -> tuple[int, int]:
    answer = client.request(fetch_v7.OffsetFetchRequest(
        group_id=group, require_stable=stable,
        topics=(fetch_v7.OffsetFetchRequestTopic(name=topic, partition_indexes=(i32(0),)),)))
    part = answer.topics[0].partitions[0]
    return int(part.committed_offset), int(part.error_code)


def fetch_v8_(client: RawClient, group: str, topic: str, stable: bool) -> tuple[int, int]:
    answer = client.request(fetch_v8.OffsetFetchRequest(
        require_stable=stable, groups=(fetch_v8.OffsetFetchRequestGroup(
            group_id=group, topics=(fetch_v8.OffsetFetchRequestTopics(
                name=topic, partition_indexes=(i32(0),)),)),)))
    part = answer.groups[0].topics[0].partitions[0]
    return int(part.committed_offset), int(part.error_code)


def end_txn(embedded: EmbeddedBroker, group: str, commit: bool) -> None:
    """What the transaction runtime does: the marker into the group's partition, then
    complete_txn."""
    broker = inner(embedded)
    partition = broker.groups.partition_for(group)
    marker = bytearray(build_control_batch(PID, EPOCH, commit, 0))

    async def write_and_complete() -> None:
        plog = broker.engine.partition("__consumer_offsets", partition)
        await plog.append([AppendBatch(marker, 1, 0, 0)])
        await broker.groups.complete_txn(partition, PID, commit)

    embedded.run(write_and_complete())


def test_pending_until_commit_marker(broker: EmbeddedBroker, verifier: Verifier) -> None:
    topic, group = names()
    with RawClient(broker.port) as client:
        create_topic(client, topic)
        assert commit_v3(client, group, topic, 5) == ErrorCode.none
        partition = inner(broker).groups.partition_for(group)
        assert verifier.calls == [("tx", PID, EPOCH, [("__consumer_offsets", partition)])]
        assert fetch_v7_(client, group, topic, stable=False) == (-1, ErrorCode.none)
        assert fetch_v7_(client, group, topic, stable=True) == (-1, UNSTABLE)
        assert fetch_v8_(client, group, topic, stable=True) == (-1, UNSTABLE)
        end_txn(broker, group, commit=True)
        assert fetch_v7_(client, group, topic, stable=True) == (5, ErrorCode.none)
        assert fetch_v8_(client, group, topic, stable=True) == (5, ErrorCode.none)

        assert commit_v0(client, group, topic, 9) == ErrorCode.none
        end_txn(broker, group, commit=False)
        assert fetch_v7_(client, group, topic, stable=True) == (5, ErrorCode.none)


def test_verification_and_member_errors(broker: EmbeddedBroker, verifier: Verifier) -> None:
    topic, group = names()
    with RawClient(broker.port) as client:
        create_topic(client, topic)
        verifier.error = ErrorCode.invalid_txn_state
        assert commit_v3(client, group, topic, 5) == ErrorCode.invalid_txn_state
        verifier.error = 0
        assert commit_v3(client, "", topic, 5) == ErrorCode.invalid_group_id
        assert commit_v3(client, group, topic, 5, generation=3,
                         member="m") == ErrorCode.illegal_generation
        assert commit_v3(client, group, "no-such-topic-" + group, 5) == (
            ErrorCode.unknown_topic_or_partition)
        assert fetch_v7_(client, group, topic, stable=True) == (-1, ErrorCode.none)


def test_open_transaction_survives_restart(broker: EmbeddedBroker, verifier: Verifier) -> None:
    topic, group = names()
    with RawClient(broker.port) as client:
        create_topic(client, topic)
        assert commit_v3(client, group, topic, 7) == ErrorCode.none
    broker.restart()
    with RawClient(broker.port) as client:
        assert fetch_v7_(client, group, topic, stable=True) == (-1, UNSTABLE)
        end_txn(broker, group, commit=True)
        assert fetch_v7_(client, group, topic, stable=True) == (7, ErrorCode.none)
    broker.restart()
    with RawClient(broker.port) as client:
        assert fetch_v7_(client, group, topic, stable=True) == (7, ErrorCode.none)
