"""Transactions with real clients: confluent-kafka (librdkafka) and aiokafka commit and abort
across partitions and topics, read_committed consumers see exactly the committed records and
stop at the last stable offset, a second producer with the same transactional.id fences the
first (whose open transaction is aborted), the coordinator aborts a transaction past its
timeout, and committed/aborted/open transactions stay consistent across a broker restart.

The raw-protocol helpers here are shared with test_transactions_raw.py."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition
from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.end_txn.v4.request import EndTxnRequest as EndTxnRequestV4
from kio.schema.end_txn.v5.request import EndTxnRequest as EndTxnRequestV5
from kio.schema.errors import ErrorCode
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.list_offsets.v7.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.list_transactions.v1.request import ListTransactionsRequest
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.types import BrokerId, ProducerId, TopicName, TransactionalId
from kio.static.primitive import i8, i16, i32, i64

from strom.protocol.record_builder import build_batch
from strom.testing import EmbeddedBroker
from tests.integration.broker_process import serve_process
from tests.integration.conftest import (
    ALL_ENGINES,
    DEADLINE_S,
    consume_partitions,
    consumer,
    create_topic,
    produce_all,
    producer,
    unique_name,
)
from tests.integration.raw_client import RawClient

STORAGE_ENGINES = ALL_ENGINES  # every test here runs on each storage engine

READ_COMMITTED = 1
READ_UNCOMMITTED = 0

# -- raw protocol helpers ----------------------------------------------------------------------


def raw_port(bootstrap: str) -> int:
    return int(bootstrap.rsplit(":", 1)[1])


def raw_init(client: RawClient, transactional_id: str, timeout_ms: int = 60000) -> Any:
    """InitProducerId for `transactional_id`, retried while the coordinator answers
    CONCURRENT_TRANSACTIONS (it is aborting an ongoing transaction first)."""
    request = InitProducerIdRequest(
        transactional_id=TransactionalId(transactional_id),
        transaction_timeout=timedelta(milliseconds=timeout_ms), producer_id=ProducerId(-1),
        producer_epoch=i16(-1))
    deadline = time.monotonic() + DEADLINE_S
    while True:
        answer = client.request(request)
        if answer.error_code != ErrorCode.concurrent_transactions:
            return answer
        assert time.monotonic() < deadline, "InitProducerId kept answering CONCURRENT_TXNS"
        time.sleep(0.05)


def raw_add_partitions(client: RawClient, transactional_id: str, producer_id: int, epoch: int,
                       partitions: Mapping[str, Sequence[int]]) -> dict[tuple[str, int], int]:
    """AddPartitionsToTxn v3; {(topic, partition): error code}."""
    answer = client.request(AddPartitionsToTxnRequest(
        v3_and_below_transactional_id=TransactionalId(transactional_id),
        v3_and_below_producer_id=ProducerId(producer_id), v3_and_below_producer_epoch=i16(epoch),
        v3_and_below_topics=tuple(
            AddPartitionsToTxnTopic(name=TopicName(t), partitions=tuple(i32(p) for p in ps))
            for t, ps in partitions.items())))
    return {(t.name, r.partition_index): r.partition_error_code
            for t in answer.results_by_topic_v3_and_below for r in t.results_by_partition}


def raw_end_txn(client: RawClient, transactional_id: str, producer_id: int, epoch: int,
                commit: bool, version: int = 4) -> Any:
    cls = EndTxnRequestV5 if version == 5 else EndTxnRequestV4
    return client.request(cls(transactional_id=TransactionalId(transactional_id),
                              producer_id=ProducerId(producer_id), producer_epoch=i16(epoch),
                              committed=commit))


def txn_batch(producer_id: int, epoch: int, seq: int, values: Sequence[bytes],
              transactional: bool = True) -> bytes:
    now = int(time.time() * 1000)
    return build_batch([(None, v, [], now) for v in values], producer_id=producer_id,
                       producer_epoch=epoch, base_sequence=seq, transactional=transactional)


def raw_produce(client: RawClient, topic: str, partition: int, records: bytes,
                transactional_id: str | None) -> Any:
    answer = client.request(ProduceRequest(
        transactional_id=None if transactional_id is None else TransactionalId(transactional_id),
        acks=i16(-1), timeout=timedelta(seconds=5),
        topic_data=(TopicProduceData(name=TopicName(topic), partition_data=(
            PartitionProduceData(index=i32(partition), records=records),)),)))
    return answer.responses[0].partition_responses[0]


def list_offset(client: RawClient, topic: str, partition: int, isolation: int,
                timestamp: int = -1) -> int:
    """ListOffsets v7 (latest by default): the high watermark for read_uncommitted, the last
    stable offset for read_committed."""
    answer = client.request(ListOffsetsRequest(
        replica_id=BrokerId(-1), isolation_level=i8(isolation),
        topics=(ListOffsetsTopic(name=TopicName(topic), partitions=(
            ListOffsetsPartition(partition_index=i32(partition), timestamp=i64(timestamp)),)),)))
    part = answer.topics[0].partitions[0]
    assert part.error_code == ErrorCode.none, part
    return int(part.offset)


def describe(client: RawClient, *transactional_ids: str) -> dict[str, Any]:
    answer = client.request(DescribeTransactionsRequest(
        transactional_ids=tuple(TransactionalId(t) for t in transactional_ids)))
    found = {s.transactional_id: s for s in answer.transaction_states}
    assert set(found) == set(transactional_ids), answer
    return found


def list_states(client: RawClient, *states: str) -> dict[str, str]:
    """ListTransactions v1: {transactional id: state}."""
    answer = client.request(ListTransactionsRequest(state_filters=states))
    assert answer.error_code == ErrorCode.none, answer
    return {s.transactional_id: s.transaction_state for s in answer.transaction_states}


def wait_for_state(client: RawClient, transactional_id: str, state: str) -> Any:
    """Markers are written after EndTxn answers: Prepare* turns Complete* a moment later."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = describe(client, transactional_id)[transactional_id]
        if found.error_code == ErrorCode.none and found.transaction_state == state:
            return found
        assert time.monotonic() < deadline, f"{transactional_id} never reached {state}: {found}"
        time.sleep(0.05)


def wait_for_offset(client: RawClient, topic: str, partition: int, isolation: int,
                    expected: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while (got := list_offset(client, topic, partition, isolation)) != expected:
        assert time.monotonic() < deadline, f"{topic}-{partition}: offset {got} != {expected}"
        time.sleep(0.05)


# -- client helpers ------------------------------------------------------------------------------


def txn_producer(bootstrap: str, transactional_id: str, **extra: Any) -> Producer:
    p = producer(bootstrap, transactional_id=transactional_id, **extra)
    p.init_transactions(DEADLINE_S)
    return p


def produce_txn(p: Producer, records: Iterable[tuple[str, int, bytes]]) -> None:
    """Produces (topic, partition, value) records inside the current transaction and flushes
    them (librdkafka drops unsent messages on abort: the records must reach the log)."""
    errors: list[Any] = []

    def report(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for topic, partition, value in records:
        p.produce(topic, value=value, partition=partition, on_delivery=report)
    assert p.flush(DEADLINE_S) == 0
    assert not errors, errors


def read(bootstrap: str, topic: str, partitions: Sequence[int], committed: bool,
         start: int = 0) -> dict[int, list[tuple[int, bytes]]]:
    """{partition: [(offset, value), ...]} read to the partition end (the LSO when committed)."""
    level = "read_committed" if committed else "read_uncommitted"
    out: dict[int, list[tuple[int, bytes]]] = {p: [] for p in partitions}
    for m in consume_partitions(bootstrap, topic, partitions, start=start, isolation_level=level):
        value = m.value()
        assert value is not None
        out[m.partition()].append((m.offset(), value))
    return out


def values(got: Mapping[int, Sequence[tuple[int, bytes]]]) -> dict[int, list[bytes]]:
    return {p: [v for _, v in recs] for p, recs in got.items()}


def fatal_or_fenced(exc: KafkaException) -> bool:
    err = exc.args[0]
    return bool(err.fatal()) or err.code() in (
        KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)


# -- tests ---------------------------------------------------------------------------------------


def test_commit_and_abort_across_partitions_and_topics(broker: EmbeddedBroker,
                                                       new_topic: Callable[..., str]) -> None:
    bootstrap = broker.bootstrap_servers
    layout = {new_topic(partitions=3, prefix="txn-a"): (0, 1, 2),
              new_topic(partitions=2, prefix="txn-b"): (0, 1)}
    p = txn_producer(bootstrap, unique_name("txn-id"))
    rounds, per_partition = 5, 3
    committed_rounds = [r for r in range(rounds) if r % 2 == 0]  # 0, 2, 4 commit; 1, 3 abort
    for r in range(rounds):
        p.begin_transaction()
        produce_txn(p, [(t, part, f"r{r}-{t}-{part}-{i}".encode())
                        for i in range(per_partition)
                        for t, parts in layout.items() for part in parts])
        if r in committed_rounds:
            p.commit_transaction(DEADLINE_S)
        else:
            p.abort_transaction(DEADLINE_S)

    end = rounds * (per_partition + 1)  # every transaction ends with one marker per partition
    with RawClient(broker.port) as client:
        for t, parts in layout.items():
            for part in parts:
                wait_for_offset(client, t, part, READ_UNCOMMITTED, end)
                wait_for_offset(client, t, part, READ_COMMITTED, end)
    for t, parts in layout.items():
        committed = read(bootstrap, t, parts, committed=True)
        assert values(committed) == {
            part: [f"r{r}-{t}-{part}-{i}".encode() for r in committed_rounds
                   for i in range(per_partition)] for part in parts}
        everything = read(bootstrap, t, parts, committed=False)
        assert everything == {
            part: [(r * (per_partition + 1) + i, f"r{r}-{t}-{part}-{i}".encode())
                   for r in range(rounds) for i in range(per_partition)] for part in parts}
        # The committed records keep their offsets: only aborted records and markers are gaps.
        assert all(set(committed[part]) <= set(everything[part]) for part in parts)


def test_read_committed_stops_at_the_last_stable_offset(broker: EmbeddedBroker,
                                                        topic: str) -> None:
    bootstrap = broker.bootstrap_servers
    plain = produce_all(producer(bootstrap), topic, [{"value": b"plain-0"}, {"value": b"plain-1"}])
    assert not plain.failed
    p = txn_producer(bootstrap, unique_name("txn-lso"))
    p.begin_transaction()
    produce_txn(p, [(topic, 0, f"open-{i}".encode()) for i in range(3)])

    with RawClient(broker.port) as client:
        assert list_offset(client, topic, 0, READ_UNCOMMITTED) == 5
        assert list_offset(client, topic, 0, READ_COMMITTED) == 2  # the open txn's first offset
    assert read(bootstrap, topic, (0,), committed=True) == {0: [(0, b"plain-0"), (1, b"plain-1")]}
    assert values(read(bootstrap, topic, (0,), committed=False)) == {
        0: [b"plain-0", b"plain-1", b"open-0", b"open-1", b"open-2"]}
    # librdkafka's watermark query follows the consumer's isolation level.
    for level, high in (("read_committed", 2), ("read_uncommitted", 5)):
        c = consumer(bootstrap, isolation_level=level)
        try:
            assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, high)
        finally:
            c.close()

    p.commit_transaction(DEADLINE_S)
    with RawClient(broker.port) as client:
        wait_for_offset(client, topic, 0, READ_COMMITTED, 6)
        assert list_offset(client, topic, 0, READ_UNCOMMITTED) == 6
    assert values(read(bootstrap, topic, (0,), committed=True)) == {
        0: [b"plain-0", b"plain-1", b"open-0", b"open-1", b"open-2"]}


def test_second_producer_fences_the_zombie(broker: EmbeddedBroker, topic: str) -> None:
    bootstrap = broker.bootstrap_servers
    transactional_id = unique_name("txn-zombie")
    zombie = txn_producer(bootstrap, transactional_id)
    zombie.begin_transaction()
    produce_txn(zombie, [(topic, 0, b"zombie-0"), (topic, 0, b"zombie-1")])

    successor = txn_producer(bootstrap, transactional_id)  # aborts the zombie's transaction
    with pytest.raises(KafkaException) as failed:
        zombie.commit_transaction(DEADLINE_S)
    assert fatal_or_fenced(failed.value), failed.value.args[0]

    successor.begin_transaction()
    produce_txn(successor, [(topic, 0, b"successor-0")])
    successor.commit_transaction(DEADLINE_S)
    # zombie 0,1 + abort marker 2, successor 3 + commit marker 4
    with RawClient(broker.port) as client:
        wait_for_offset(client, topic, 0, READ_COMMITTED, 5)
    assert read(bootstrap, topic, (0,), committed=True) == {0: [(3, b"successor-0")]}
    assert values(read(bootstrap, topic, (0,), committed=False)) == {
        0: [b"zombie-0", b"zombie-1", b"successor-0"]}
    # The zombie cannot sneak a new transaction in either.
    with pytest.raises(KafkaException):
        zombie.begin_transaction()
        produce_txn(zombie, [(topic, 0, b"zombie-late")])
        zombie.commit_transaction(DEADLINE_S)
    assert b"zombie-late" not in values(read(bootstrap, topic, (0,), committed=False))[0]


def test_coordinator_aborts_a_transaction_past_its_timeout(broker: EmbeddedBroker,
                                                           topic: str) -> None:
    bootstrap = broker.bootstrap_servers
    transactional_id = unique_name("txn-timeout")
    p = txn_producer(bootstrap, transactional_id, transaction_timeout_ms=2000,
                     message_timeout_ms=2000, socket_timeout_ms=2000)
    p.begin_transaction()
    produce_txn(p, [(topic, 0, b"slow-0"), (topic, 0, b"slow-1")])
    with RawClient(broker.port) as client:
        assert list_offset(client, topic, 0, READ_COMMITTED) == 0
        # The coordinator aborts it on its own: an abort marker at offset 2 frees the LSO.
        wait_for_offset(client, topic, 0, READ_COMMITTED, 3)
        assert list_offset(client, topic, 0, READ_UNCOMMITTED) == 3
        assert describe(client, transactional_id)[transactional_id].transaction_state in (
            "PrepareAbort", "CompleteAbort")
    assert read(bootstrap, topic, (0,), committed=True) == {0: []}
    assert values(read(bootstrap, topic, (0,), committed=False)) == {0: [b"slow-0", b"slow-1"]}
    with pytest.raises(KafkaException) as failed:
        p.commit_transaction(DEADLINE_S)
    assert fatal_or_fenced(failed.value), failed.value.args[0]  # the abort bumped the epoch
    assert read(bootstrap, topic, (0,), committed=True) == {0: []}

    # The transactional id is usable again by a new producer.
    again = txn_producer(bootstrap, transactional_id)
    again.begin_transaction()
    produce_txn(again, [(topic, 0, b"after-timeout")])
    again.commit_transaction(DEADLINE_S)
    with RawClient(broker.port) as client:
        wait_for_offset(client, topic, 0, READ_COMMITTED, 5)
    assert read(bootstrap, topic, (0,), committed=True) == {0: [(3, b"after-timeout")]}


async def aiokafka_transactions(bootstrap: str, topic: str, transactional_id: str) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id,
                         enable_idempotence=True, request_timeout_ms=10000)
    await p.start()
    try:
        async with p.transaction():
            for i in range(4):
                await p.send(topic, value=f"commit-1-{i}".encode(), partition=i % 2)
        await p.begin_transaction()
        futures = [await p.send(topic, value=f"abort-{i}".encode(), partition=i % 2)
                   for i in range(4)]
        await asyncio.wait_for(asyncio.gather(*futures), DEADLINE_S)  # in the log, then aborted
        await p.abort_transaction()
        async with p.transaction():
            for i in range(4):
                await p.send(topic, value=f"commit-2-{i}".encode(), partition=i % 2)
    finally:
        await p.stop()


async def aiokafka_read(bootstrap: str, topic: str, level: str,
                        count: int) -> dict[int, list[bytes]]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", isolation_level=level,
                         fetch_max_wait_ms=100, request_timeout_ms=10000)
    await c.start()
    try:
        tps = [AioTopicPartition(topic, p) for p in (0, 1)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got: dict[int, list[bytes]] = defaultdict(list)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        while sum(map(len, got.values())) < count:
            assert loop.time() < deadline, f"only {dict(got)} of {count} arrived ({level})"
            for tp, batch in (await c.getmany(timeout_ms=200)).items():
                got[tp.partition].extend(r.value for r in batch)
        await asyncio.sleep(0.5)  # nothing more arrives (aborted records are filtered)
        for tp, batch in (await c.getmany(timeout_ms=200)).items():
            got[tp.partition].extend(r.value for r in batch)
        ends = await c.end_offsets(tps)
        assert all(ends[tp] == 9 for tp in tps), ends  # 3 transactions: 2 records + marker
        return dict(got)
    finally:
        await c.stop()


def test_aiokafka_transactional_producer(broker: EmbeddedBroker,
                                         new_topic: Callable[..., str]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = new_topic(partitions=2, prefix="txn-aio")
    asyncio.run(aiokafka_transactions(bootstrap, topic, unique_name("txn-aio")))

    def expected(*prefixes: str) -> dict[int, list[bytes]]:
        return {p: [f"{prefix}-{i}".encode() for prefix in prefixes for i in range(4)
                    if i % 2 == p] for p in (0, 1)}

    committed = asyncio.run(aiokafka_read(bootstrap, topic, "read_committed", 4))
    assert committed == expected("commit-1", "commit-2")
    uncommitted = asyncio.run(aiokafka_read(bootstrap, topic, "read_uncommitted", 6))
    assert uncommitted == expected("commit-1", "abort", "commit-2")
    # librdkafka agrees
    assert values(read(bootstrap, topic, (0, 1), committed=True)) == expected(
        "commit-1", "commit-2")


def test_transactions_across_a_broker_process_restart(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "broker.log"
    done_id, open_id = unique_name("txn-done"), unique_name("txn-open")
    topic = unique_name("txn-restart")
    with serve_process(data_dir, log) as (_, bootstrap):
        create_topic(bootstrap, topic, partitions=2)
        p = txn_producer(bootstrap, done_id)
        for name, commit in (("c1", True), ("a1", False), ("c2", True)):
            p.begin_transaction()
            produce_txn(p, [(topic, part, f"{name}-{part}".encode()) for part in (0, 1)])
            if commit:
                p.commit_transaction(DEADLINE_S)
            else:
                p.abort_transaction(DEADLINE_S)
        with RawClient(raw_port(bootstrap)) as client:
            wait_for_state(client, done_id, "CompleteCommit")
            before = describe(client, done_id)[done_id]
            # A transaction left open over the restart, on partition 1 only.
            init = raw_init(client, open_id)
            pid, epoch = int(init.producer_id), int(init.producer_epoch)
            assert raw_add_partitions(client, open_id, pid, epoch, {topic: [1]}) == {
                (topic, 1): ErrorCode.none}
            answer = raw_produce(client, topic, 1, txn_batch(pid, epoch, 0, [b"open-1"]), open_id)
            assert (answer.error_code, answer.base_offset) == (ErrorCode.none, 6)
            wait_for_offset(client, topic, 0, READ_COMMITTED, 6)
            assert list_offset(client, topic, 1, READ_COMMITTED) == 6
        del p

    with serve_process(data_dir, log) as (_, bootstrap):
        with RawClient(raw_port(bootstrap)) as client:
            after = describe(client, done_id)[done_id]
            assert (after.transaction_state, after.producer_id, after.producer_epoch) == (
                "CompleteCommit", before.producer_id, before.producer_epoch)
            still_open = describe(client, open_id)[open_id]
            assert (still_open.error_code, still_open.transaction_state) == (
                ErrorCode.none, "Ongoing")
            assert list_offset(client, topic, 1, READ_COMMITTED) == 6  # still held by it
            assert list_offset(client, topic, 1, READ_UNCOMMITTED) == 7
        committed_values = {0: [b"c1-0", b"c2-0"], 1: [b"c1-1", b"c2-1"]}
        assert values(read(bootstrap, topic, (0, 1), committed=True)) == committed_values

        # The same transactional.id carries on, with a bumped epoch.
        p = txn_producer(bootstrap, done_id)
        p.begin_transaction()
        produce_txn(p, [(topic, 0, b"c3-0")])
        with RawClient(raw_port(bootstrap)) as client:
            bumped = describe(client, done_id)[done_id]
            assert bumped.transaction_state == "Ongoing"
            assert bumped.producer_id == before.producer_id
            assert bumped.producer_epoch > before.producer_epoch
        p.commit_transaction(DEADLINE_S)

        # InitProducerId for the open transaction's id aborts it.
        with RawClient(raw_port(bootstrap)) as client:
            init = raw_init(client, open_id)
            assert init.error_code == ErrorCode.none
            assert int(init.producer_epoch) > epoch
            assert list_states(client)[open_id] == "Empty"
            wait_for_offset(client, topic, 1, READ_COMMITTED, 8)  # open-1, abort marker
            wait_for_offset(client, topic, 0, READ_COMMITTED, 8)  # c3-0, commit marker
        committed_values[0].append(b"c3-0")
        assert values(read(bootstrap, topic, (0, 1), committed=True)) == committed_values
        assert values(read(bootstrap, topic, (0, 1), committed=False)) == {
            0: [b"c1-0", b"a1-0", b"c2-0", b"c3-0"], 1: [b"c1-1", b"a1-1", b"c2-1", b"open-1"]}
