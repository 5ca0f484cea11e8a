"""Transactions across two brokers over the inter-broker path: node 1's transaction coordinator
and node 2 leading the data partitions (and the group's __consumer_offsets partition). Node 2
verifies each transactional produce with node 1 (AddPartitionsToTxn v5, verify_only), node 1
sends its COMMIT/ABORT markers to node 2 (WriteTxnMarkers), read_committed consumers of node 2
see exactly the committed records, a transactional offset commit on node 2 counts once node
1's marker arrives, and with node 1 gone node 2 answers NOT_ENOUGH_REPLICAS (retriable).

Until the PostgreSQL engine shares leases between brokers, each broker has its own storage
and the test tells each engine who leads what (and which brokers are live): the engines'
leadership and broker directory are what the leases will provide."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from strom.coordinator.internal_topics import OFFSETS_TOPIC, TXN_TOPIC
from strom.protocol.client import KafkaConnection
from strom.protocol.messages import RequestBuilder
from strom.storage.api import BrokerRegistration, Leadership
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, consume_partitions, unique_name
from tests.integration.test_peer_client import (
    END_TXN,
    INIT_PRODUCER_ID,
    PRODUCE,
    batch,
    begin,
    produce,
)

COORDINATOR, LEADER = 1, 2  # node ids
SETTINGS = {"transaction.state.log.num.partitions": "1", "offsets.topic.num.partitions": "1"}
ADD_OFFSETS_TO_TXN, TXN_OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_TRANSACTIONS = 25, 28, 9, 65


class Cluster:
    """Two embedded brokers, each told by the test what the other leads."""

    def __init__(self, coordinator: EmbeddedBroker, leader: EmbeddedBroker) -> None:
        self.coordinator = coordinator
        self.leader = leader
        self.led_by_leader: set[str] = {OFFSETS_TOPIC}  # topics node 2 leads (on node 1)

    def wire(self) -> None:
        live = [BrokerRegistration(COORDINATOR, "127.0.0.1", self.coordinator.port),
                BrokerRegistration(LEADER, "127.0.0.1", self.leader.port)]

        async def brokers() -> Sequence[BrokerRegistration]:
            return live

        for broker in (self.coordinator, self.leader):
            broker.server.engine.brokers = brokers  # type: ignore[method-assign]
        self._lead(self.coordinator, lambda name: LEADER if name in self.led_by_leader
                   else None)
        self._lead(self.leader, lambda name: COORDINATOR if name == TXN_TOPIC else None)

    @staticmethod
    def _lead(broker: EmbeddedBroker, other: Callable[[str], int | None]) -> None:
        engine = broker.server.engine
        original = engine.leadership

        def leadership(name: str, index: int) -> Leadership:
            node = other(name)
            if node is None:
                return original(name, index)
            return Leadership(node, 0, (node,))

        engine.leadership = leadership  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with EmbeddedBroker(settings={**SETTINGS, "node.id": str(COORDINATOR)}) as one, \
            EmbeddedBroker(settings={**SETTINGS, "node.id": str(LEADER)}) as two:
        running = Cluster(one, two)
        running.wire()
        yield running


@pytest.fixture
def topic(cluster: Cluster) -> str:
    """A topic both brokers know (one storage would hold it once); node 2 leads it. Each
    broker's engine creates it (an admin client would send CreateTopics to the controller,
    one of the two)."""
    name = unique_name("peer-txn")
    for broker in (cluster.coordinator, cluster.leader):
        broker.run(broker.server.engine.create_topic(name, 1, {}))
    cluster.led_by_leader.add(name)
    return name


async def connect(broker: EmbeddedBroker) -> KafkaConnection:
    return await KafkaConnection.open("127.0.0.1", broker.port, "test-client",
                                      connect_timeout_s=5, request_timeout_s=20)


async def call(connection: KafkaConnection, api_key: int, max_version: int,
               build: Callable[[RequestBuilder], Any]) -> Any:
    version = connection.version_for(api_key, max_version)
    return await connection.request(build(RequestBuilder(api_key, version)))


async def produce_error(connection: KafkaConnection, topic: str, transactional_id: str,
                        pid: int, epoch: int, seq: int, values: Sequence[bytes]) -> int:
    answer = await call(connection, PRODUCE, 12, produce(topic, 0, batch(
        values, producer_id=pid, producer_epoch=epoch, base_sequence=seq, transactional=True),
        transactional_id))
    return int(answer.responses[0].partition_responses[0].error_code)


async def end(connection: KafkaConnection, transactional_id: str, pid: int, epoch: int,
              commit: bool) -> None:
    answer = await call(connection, END_TXN, 4, lambda b: b.make(
        "EndTxnRequest", transactional_id=transactional_id, producer_id=pid,
        producer_epoch=epoch, committed=commit))
    assert answer.error_code == ErrorCode.none


async def wait_for_state(connection: KafkaConnection, transactional_id: str,
                         state: str) -> None:
    """The markers are written after EndTxn answers: Prepare* becomes Complete* after."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        answer = await call(connection, DESCRIBE_TRANSACTIONS, 0, lambda b: b.make(
            "DescribeTransactionsRequest", transactional_ids=(transactional_id,)))
        found = answer.transaction_states[0].transaction_state
        if found == state:
            return
        assert time.monotonic() < deadline, f"{transactional_id} stayed {found}"
        await asyncio.sleep(0.05)


def read_committed(broker: EmbeddedBroker, topic: str) -> list[bytes | None]:
    return [m.value() for m in consume_partitions(broker.bootstrap_servers, topic, (0,),
                                                  isolation_level="read_committed")]


def test_commit_and_abort_across_brokers(cluster: Cluster, topic: str) -> None:
    async def main() -> None:
        coordinator, leader = await connect(cluster.coordinator), await connect(cluster.leader)
        try:
            tid = unique_name("peer-tid")
            pid, epoch = await begin(coordinator, tid, {topic: [0]})
            assert await produce_error(leader, topic, tid, pid, epoch, 0,
                                       [b"a", b"b"]) == ErrorCode.none
            assert await asyncio.to_thread(read_committed, cluster.leader, topic) == []
            await end(coordinator, tid, pid, epoch, True)
            await wait_for_state(coordinator, tid, "CompleteCommit")
            assert await asyncio.to_thread(read_committed, cluster.leader, topic) == [b"a",
                                                                                     b"b"]
            # the next transaction of the producer is aborted
            pid, epoch = await begin(coordinator, tid, {topic: [0]})
            assert await produce_error(leader, topic, tid, pid, epoch, 0,
                                       [b"dropped"]) == ErrorCode.none
            await end(coordinator, tid, pid, epoch, False)
            await wait_for_state(coordinator, tid, "CompleteAbort")
            assert await asyncio.to_thread(read_committed, cluster.leader, topic) == [b"a",
                                                                                     b"b"]
        finally:
            await coordinator.close()
            await leader.close()

    asyncio.run(main())


def test_a_partition_outside_the_transaction_is_refused_by_the_remote_check(
        cluster: Cluster, topic: str) -> None:
    async def main() -> None:
        coordinator, leader = await connect(cluster.coordinator), await connect(cluster.leader)
        try:
            tid = unique_name("peer-tid")
            init = await call(coordinator, INIT_PRODUCER_ID, 4, lambda b: b.make(
                "InitProducerIdRequest", transactional_id=tid,
                transaction_timeout=timedelta(minutes=1), producer_id=-1, producer_epoch=-1))
            pid, epoch = int(init.producer_id), int(init.producer_epoch)
            # no AddPartitionsToTxn: the coordinator on node 1 says the partition is not in it
            assert await produce_error(leader, topic, tid, pid, epoch, 0,
                                       [b"late"]) == ErrorCode.invalid_txn_state
            # a stale epoch after the producer re-initialised: fenced
            again = await call(coordinator, INIT_PRODUCER_ID, 4, lambda b: b.make(
                "InitProducerIdRequest", transactional_id=tid,
                transaction_timeout=timedelta(minutes=1), producer_id=-1, producer_epoch=-1))
            assert int(again.producer_epoch) == epoch + 1
            assert await produce_error(leader, topic, tid, pid, epoch, 0,
                                       [b"zombie"]) == ErrorCode.invalid_producer_epoch
        finally:
            await coordinator.close()
            await leader.close()

    asyncio.run(main())
    assert cluster.leader.server.engine.partition(topic, 0).log_end_offset == 0


def test_a_transactional_offset_commit_on_the_other_broker(cluster: Cluster,
                                                          topic: str) -> None:
    """The group's __consumer_offsets partition is on node 2: TxnOffsetCommit there is
    verified with node 1, and node 1's COMMIT marker to it makes the offset count."""
    group = unique_name("peer-group")

    async def fetch(leader: KafkaConnection) -> int:
        answer = await call(leader, OFFSET_FETCH, 7, lambda b: b.make(
            "OffsetFetchRequest", group_id=group, require_stable=False, topics=(b.make(
                "OffsetFetchRequestTopic", name=topic, partition_indexes=(0,)),)))
        return int(answer.topics[0].partitions[0].committed_offset)

    async def main() -> None:
        coordinator, leader = await connect(cluster.coordinator), await connect(cluster.leader)
        try:
            tid = unique_name("peer-tid")
            pid, epoch = await begin(coordinator, tid, {topic: [0]})
            added = await call(coordinator, ADD_OFFSETS_TO_TXN, 3, lambda b: b.make(
                "AddOffsetsToTxnRequest", transactional_id=tid, producer_id=pid,
                producer_epoch=epoch, group_id=group))
            assert added.error_code == ErrorCode.none
            committed = await call(leader, TXN_OFFSET_COMMIT, 3, lambda b: b.make(
                "TxnOffsetCommitRequest", transactional_id=tid, group_id=group,
                producer_id=pid, producer_epoch=epoch, generation_id=-1, member_id="",
                group_instance_id=None, topics=(b.make(
                    "TxnOffsetCommitRequestTopic", name=topic, partitions=(b.make(
                        "TxnOffsetCommitRequestPartition", partition_index=0,
                        committed_offset=42, committed_leader_epoch=-1,
                        committed_metadata=""),)),)))
            assert committed.topics[0].partitions[0].error_code == ErrorCode.none
            assert await fetch(leader) == -1  # pending until the marker
            await end(coordinator, tid, pid, epoch, True)
            await wait_for_state(coordinator, tid, "CompleteCommit")
            assert await fetch(leader) == 42
        finally:
            await coordinator.close()
            await leader.close()

    asyncio.run(main())


def test_without_its_coordinator_a_produce_is_not_enough_replicas(cluster: Cluster,
                                                                  topic: str) -> None:
    """Last in the module: node 1 stops. Node 2 cannot reach the coordinator to verify, and
    answers the retriable NOT_ENOUGH_REPLICAS."""
    cluster.coordinator.stop()

    async def main() -> None:
        leader = await connect(cluster.leader)
        try:
            started = time.monotonic()
            assert await produce_error(leader, topic, "any-tid", 1, 0, 0,
                                       [b"x"]) == ErrorCode.not_enough_replicas
            assert time.monotonic() - started < 5
        finally:
            await leader.close()

    asyncio.run(main())

