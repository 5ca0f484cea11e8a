"""Transactions at the protocol level: wrong transactional requests get Kafka's error codes
(INVALID_PRODUCER_ID_MAPPING, INVALID_TXN_STATE, INVALID_PRODUCER_EPOCH / PRODUCER_FENCED,
INVALID_RECORD, UNKNOWN_TOPIC_OR_PARTITION + OPERATION_NOT_ATTEMPTED) without appending
anything, EndTxn v5 bumps the epoch (KIP-890) and v4 keeps it, the broker keeps serving and
committed data stays intact; DescribeTransactions and ListTransactions report states,
partitions and filters."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.errors import ErrorCode
from kio.schema.list_transactions.v1.request import ListTransactionsRequest
from kio.schema.types import ProducerId, TopicName, TransactionalId
from kio.schema.write_txn_markers.v1.request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from kio.static.primitive import i16, i32, i64

from strom.protocol.record_builder import build_batch
from strom.testing import EmbeddedBroker
from tests.integration.conftest import create_topic, unique_name
from tests.integration.raw_client import RawClient
from tests.integration.test_transactions import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    describe,
    list_offset,
    raw_add_partitions,
    raw_end_txn,
    raw_init,
    raw_produce,
    read,
    txn_batch,
    txn_producer,
    values,
    wait_for_offset,
    wait_for_state,
)

COMMITTED = [b"kept-0", b"kept-1", b"kept-2"]


@pytest.fixture(scope="module")
def committed_topic(broker: EmbeddedBroker) -> str:
    """A topic with one committed and one aborted transaction, checked after each bad request."""
    bootstrap = broker.bootstrap_servers
    topic = create_topic(bootstrap, unique_name("txn-kept"))
    p = txn_producer(bootstrap, unique_name("txn-kept"))
    for commit, records in ((True, COMMITTED), (False, [b"dropped"])):
        p.begin_transaction()
        for value in records:
            p.produce(topic, value=value, partition=0)
        assert p.flush(20) == 0
        if commit:
            p.commit_transaction(20)
        else:
            p.abort_transaction(20)
    with RawClient(broker.port) as client:
        wait_for_offset(client, topic, 0, READ_COMMITTED, 6)
    return topic


def assert_serving_and_intact(broker: EmbeddedBroker, committed_topic: str) -> None:
    """A plain produce still works and the committed transaction reads back unchanged."""
    scratch = create_topic(broker.bootstrap_servers, unique_name("txn-scratch"))
    with RawClient(broker.port) as client:
        plain = build_batch([(None, b"plain", [], int(time.time() * 1000))])
        answer = raw_produce(client, scratch, 0, plain, None)
        assert (answer.error_code, answer.base_offset) == (ErrorCode.none, 0)
        assert list_offset(client, committed_topic, 0, READ_COMMITTED) == 6
        assert list_offset(client, committed_topic, 0, READ_UNCOMMITTED) == 6
    assert values(read(broker.bootstrap_servers, scratch, (0,), committed=True)) == {
        0: [b"plain"]}
    assert values(read(broker.bootstrap_servers, committed_topic, (0,), committed=True)) == {
        0: COMMITTED}


@pytest.fixture
def client(broker: EmbeddedBroker, committed_topic: str) -> Iterator[RawClient]:
    with RawClient(broker.port) as c:
        yield c
    assert_serving_and_intact(broker, committed_topic)


def begin(client: RawClient, topic: str, partitions: tuple[int, ...] = (0,),
          timeout_ms: int = 60000) -> tuple[str, int, int]:
    """InitProducerId + AddPartitionsToTxn: (transactional id, producer id, epoch)."""
    transactional_id = unique_name("txn-raw")
    init = raw_init(client, transactional_id, timeout_ms)
    assert init.error_code == ErrorCode.none
    pid, epoch = int(init.producer_id), int(init.producer_epoch)
    assert set(raw_add_partitions(client, transactional_id, pid, epoch,
                                  {topic: partitions}).values()) == {ErrorCode.none}
    return transactional_id, pid, epoch


def test_end_txn_for_an_unknown_transactional_id(client: RawClient) -> None:
    for version in (4, 5):
        answer = raw_end_txn(client, unique_name("txn-nobody"), 4242, 0, True, version)
        assert answer.error_code == ErrorCode.invalid_producer_id_mapping


def test_end_txn_commit_without_an_ongoing_transaction(client: RawClient) -> None:
    transactional_id = unique_name("txn-empty")
    init = raw_init(client, transactional_id)
    assert init.error_code == ErrorCode.none
    pid, epoch = int(init.producer_id), int(init.producer_epoch)
    for version in (4, 5):
        answer = raw_end_txn(client, transactional_id, pid, epoch, True, version)
        assert answer.error_code == ErrorCode.invalid_txn_state
    # The transactional id still works.
    init = raw_init(client, transactional_id)
    assert (init.error_code, init.producer_id, init.producer_epoch) == (
        ErrorCode.none, pid, epoch + 1)


def test_transactional_produce_needs_the_partition_in_the_transaction(
        client: RawClient, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2, prefix="txn-verify")
    transactional_id, pid, epoch = begin(client, topic, (0,))
    outside = raw_produce(client, topic, 1, txn_batch(pid, epoch, 0, [b"outside"]),
                          transactional_id)
    assert outside.error_code == ErrorCode.invalid_txn_state
    no_id = raw_produce(client, topic, 0, txn_batch(pid, epoch, 0, [b"no-id"]), None)
    assert no_id.error_code == ErrorCode.invalid_txn_state
    other_id = raw_produce(client, topic, 0, txn_batch(pid, epoch, 0, [b"other-id"]),
                           unique_name("txn-other"))
    assert other_id.error_code != ErrorCode.none
    assert [list_offset(client, topic, p, READ_UNCOMMITTED) for p in (0, 1)] == [0, 0]

    inside = raw_produce(client, topic, 0, txn_batch(pid, epoch, 0, [b"inside"]),
                         transactional_id)
    assert (inside.error_code, inside.base_offset) == (ErrorCode.none, 0)
    assert raw_end_txn(client, transactional_id, pid, epoch, True).error_code == ErrorCode.none
    wait_for_offset(client, topic, 0, READ_COMMITTED, 2)
    assert list_offset(client, topic, 1, READ_UNCOMMITTED) == 0  # no marker: not in the txn
    assert read(client_bootstrap(client), topic, (0, 1), committed=False) == {
        0: [(0, b"inside")], 1: []}


def client_bootstrap(client: RawClient) -> str:
    host, port = client.sock.getpeername()[:2]
    return f"{host}:{port}"


def test_an_older_epoch_is_fenced_after_a_second_init(client: RawClient,
                                                      new_topic: Callable[..., str]) -> None:
    topic = new_topic(prefix="txn-fence")
    transactional_id, pid, old = begin(client, topic)
    first = raw_produce(client, topic, 0, txn_batch(pid, old, 0, [b"old-0"]), transactional_id)
    assert first.error_code == ErrorCode.none
    init = raw_init(client, transactional_id)  # aborts the ongoing transaction, bumps
    assert init.error_code == ErrorCode.none and init.producer_id == pid
    new = int(init.producer_epoch)
    assert new > old
    wait_for_offset(client, topic, 0, READ_COMMITTED, 2)  # old-0, abort marker

    stale = raw_produce(client, topic, 0, txn_batch(pid, old, 1, [b"old-1"]), transactional_id)
    assert stale.error_code == ErrorCode.invalid_producer_epoch  # Produce has no PRODUCER_FENCED
    added = raw_add_partitions(client, transactional_id, pid, old, {topic: [0]})
    assert added == {(topic, 0): ErrorCode.producer_fenced}
    for version in (4, 5):
        ended = raw_end_txn(client, transactional_id, pid, old, True, version)
        assert ended.error_code == ErrorCode.producer_fenced
    assert list_offset(client, topic, 0, READ_UNCOMMITTED) == 2

    assert raw_add_partitions(client, transactional_id, pid, new, {topic: [0]}) == {
        (topic, 0): ErrorCode.none}
    fresh = raw_produce(client, topic, 0, txn_batch(pid, new, 0, [b"new-0"]), transactional_id)
    assert (fresh.error_code, fresh.base_offset) == (ErrorCode.none, 2)
    assert raw_end_txn(client, transactional_id, pid, new, True).error_code == ErrorCode.none
    wait_for_offset(client, topic, 0, READ_COMMITTED, 4)
    assert read(client_bootstrap(client), topic, (0,), committed=True) == {0: [(2, b"new-0")]}


def control_batch(producer_id: int, epoch: int, transactional: bool) -> bytes:
    key = struct.pack(">hh", 0, 1)  # version 0, COMMIT
    value = struct.pack(">hi", 0, 0)  # version 0, coordinator epoch 0
    return build_batch([(key, value, [], int(time.time() * 1000))], producer_id=producer_id,
                       producer_epoch=epoch, base_sequence=0 if producer_id >= 0 else -1,
                       transactional=transactional, control=True)


def test_clients_cannot_write_control_batches(client: RawClient,
                                              new_topic: Callable[..., str]) -> None:
    topic = new_topic(prefix="txn-control")
    plain = raw_produce(client, topic, 0, control_batch(-1, -1, False), None)
    assert plain.error_code == ErrorCode.invalid_record
    transactional_id, pid, epoch = begin(client, topic)
    marker = raw_produce(client, topic, 0, control_batch(pid, epoch, True), transactional_id)
    assert marker.error_code == ErrorCode.invalid_record
    assert list_offset(client, topic, 0, READ_UNCOMMITTED) == 0
    # The transaction is unharmed: it can still write and commit.
    ok = raw_produce(client, topic, 0, txn_batch(pid, epoch, 0, [b"real"]), transactional_id)
    assert (ok.error_code, ok.base_offset) == (ErrorCode.none, 0)
    assert raw_end_txn(client, transactional_id, pid, epoch, True).error_code == ErrorCode.none
    wait_for_offset(client, topic, 0, READ_COMMITTED, 2)
    assert read(client_bootstrap(client), topic, (0,), committed=True) == {0: [(0, b"real")]}


def test_markers_from_a_client_are_refused(client: RawClient,
                                           new_topic: Callable[..., str]) -> None:
    """WriteTxnMarkers is inter-broker (ClusterAction in Kafka): a client's COMMIT marker for
    a partition, in the transaction or not, is refused and changes nothing."""
    topic = new_topic(prefix="txn-forged", partitions=2)
    transactional_id, pid, epoch = begin(client, topic, (0,))
    ok = raw_produce(client, topic, 0, txn_batch(pid, epoch, 0, [b"open"]), transactional_id)
    assert ok.error_code == ErrorCode.none
    answer = client.request(WriteTxnMarkersRequest(markers=(WritableTxnMarker(
        producer_id=ProducerId(pid), producer_epoch=i16(epoch), transaction_result=True,
        topics=(WritableTxnMarkerTopic(name=TopicName(topic),
                                       partition_indexes=(i32(0), i32(1))),),
        coordinator_epoch=i32(0)),)))
    errors = {int(p.partition_index): p.error_code
              for m in answer.markers for t in m.topics for p in t.partitions}
    assert errors == {0: ErrorCode.cluster_authorization_failed,
                      1: ErrorCode.cluster_authorization_failed}
    # Nothing was written: the transaction is still open and holds the LSO.
    assert list_offset(client, topic, 0, READ_UNCOMMITTED) == 1
    assert list_offset(client, topic, 0, READ_COMMITTED) == 0
    assert list_offset(client, topic, 1, READ_UNCOMMITTED) == 0
    assert describe(client, transactional_id)[transactional_id].transaction_state == "Ongoing"
    assert raw_end_txn(client, transactional_id, pid, epoch, False).error_code == ErrorCode.none
    wait_for_offset(client, topic, 0, READ_COMMITTED, 2)
    assert read(client_bootstrap(client), topic, (0,), committed=True) == {0: []}


def test_add_partitions_with_an_unknown_topic(client: RawClient,
                                              new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2, prefix="txn-add")
    missing = unique_name("txn-missing")
    transactional_id = unique_name("txn-add")
    init = raw_init(client, transactional_id)
    pid, epoch = int(init.producer_id), int(init.producer_epoch)
    answer = raw_add_partitions(client, transactional_id, pid, epoch,
                                {topic: [0, 1], missing: [0]})
    assert answer == {(topic, 0): ErrorCode.operation_not_attempted,
                      (topic, 1): ErrorCode.operation_not_attempted,
                      (missing, 0): ErrorCode.unknown_topic_or_partition}
    answer = raw_add_partitions(client, transactional_id, pid, epoch, {topic: [0, 7]})
    assert answer == {(topic, 0): ErrorCode.operation_not_attempted,
                      (topic, 7): ErrorCode.unknown_topic_or_partition}
    # Nothing was added: producing to the topic is refused, and the ends are unchanged.
    refused = raw_produce(client, topic, 0, txn_batch(pid, epoch, 0, [b"x"]), transactional_id)
    assert refused.error_code == ErrorCode.invalid_txn_state
    assert raw_end_txn(client, transactional_id, pid, epoch, True).error_code == (
        ErrorCode.invalid_txn_state)
    assert raw_add_partitions(client, transactional_id, pid, epoch, {topic: [1]}) == {
        (topic, 1): ErrorCode.none}
    ok = raw_produce(client, topic, 1, txn_batch(pid, epoch, 0, [b"y"]), transactional_id)
    assert ok.error_code == ErrorCode.none
    assert raw_end_txn(client, transactional_id, pid, epoch, True).error_code == ErrorCode.none
    wait_for_offset(client, topic, 1, READ_COMMITTED, 2)
    assert list_offset(client, topic, 0, READ_UNCOMMITTED) == 0


def test_end_txn_v5_bumps_the_epoch_and_v4_keeps_it(client: RawClient,
                                                    new_topic: Callable[..., str]) -> None:
    topic = new_topic(prefix="txn-bump")
    transactional_id, pid, epoch = begin(client, topic)
    assert raw_produce(client, topic, 0, txn_batch(pid, epoch, 0, [b"a"]),
                       transactional_id).error_code == ErrorCode.none
    ended = raw_end_txn(client, transactional_id, pid, epoch, True, version=5)
    assert (ended.error_code, ended.producer_id, ended.producer_epoch) == (
        ErrorCode.none, pid, epoch + 1)
    # A retry of the same EndTxn (its answer lost) gets the same answer.
    again = raw_end_txn(client, transactional_id, pid, epoch, True, version=5)
    assert (again.error_code, again.producer_id, again.producer_epoch) == (
        ErrorCode.none, pid, epoch + 1)
    wait_for_state(client, transactional_id, "CompleteCommit")
    # The old epoch is fenced now.
    assert raw_add_partitions(client, transactional_id, pid, epoch, {topic: [0]}) == {
        (topic, 0): ErrorCode.producer_fenced}
    assert raw_end_txn(client, transactional_id, pid, epoch, False, version=5).error_code in (
        ErrorCode.producer_fenced, ErrorCode.invalid_txn_state)
    bumped = epoch + 1
    assert raw_add_partitions(client, transactional_id, pid, bumped, {topic: [0]}) == {
        (topic, 0): ErrorCode.none}
    stale = raw_produce(client, topic, 0, txn_batch(pid, epoch, 1, [b"stale"]), transactional_id)
    assert stale.error_code == ErrorCode.invalid_producer_epoch
    b = raw_produce(client, topic, 0, txn_batch(pid, bumped, 0, [b"b"]), transactional_id)
    assert (b.error_code, b.base_offset) == (ErrorCode.none, 2)
    # v4 (transaction version 1, librdkafka): the epoch stays.
    assert raw_end_txn(client, transactional_id, pid, bumped, False).error_code == ErrorCode.none
    wait_for_state(client, transactional_id, "CompleteAbort")
    assert raw_add_partitions(client, transactional_id, pid, bumped, {topic: [0]}) == {
        (topic, 0): ErrorCode.none}
    c = raw_produce(client, topic, 0, txn_batch(pid, bumped, 1, [b"c"]), transactional_id)
    assert (c.error_code, c.base_offset) == (ErrorCode.none, 4)
    ended = raw_end_txn(client, transactional_id, pid, bumped, True, version=5)
    assert (ended.error_code, ended.producer_epoch) == (ErrorCode.none, bumped + 1)
    wait_for_offset(client, topic, 0, READ_COMMITTED, 6)
    assert read(client_bootstrap(client), topic, (0,), committed=True) == {
        0: [(0, b"a"), (4, b"c")]}


# -- DescribeTransactions / ListTransactions ----------------------------------------------------


def list_transactions(client: RawClient, states: tuple[str, ...] = (),
                      producer_ids: tuple[int, ...] = (), duration_ms: int = -1) -> Any:
    answer = client.request(ListTransactionsRequest(
        state_filters=states, producer_id_filters=tuple(ProducerId(p) for p in producer_ids),
        duration_filter=i64(duration_ms)))
    assert answer.error_code == ErrorCode.none
    return answer


def listed(answer: Any, ours: set[str]) -> dict[str, tuple[int, str]]:
    return {s.transactional_id: (int(s.producer_id), s.transaction_state)
            for s in answer.transaction_states if s.transactional_id in ours}


def test_describe_and_list_transactions(client: RawClient,
                                        new_topic: Callable[..., str]) -> None:
    topic, other = new_topic(partitions=3, prefix="txn-desc"), new_topic(prefix="txn-desc")
    ongoing, ongoing_pid, ongoing_epoch = begin(client, topic, (0, 2), timeout_ms=45000)
    assert raw_add_partitions(client, ongoing, ongoing_pid, ongoing_epoch, {other: [0]}) == {
        (other, 0): ErrorCode.none}
    finished = {}
    for commit in (True, False):
        tid, pid, epoch = begin(client, topic, (1,))
        assert raw_produce(client, topic, 1, txn_batch(pid, epoch, 0, [b"v"]),
                           tid).error_code == ErrorCode.none
        assert raw_end_txn(client, tid, pid, epoch, commit).error_code == ErrorCode.none
        finished[commit] = (tid, pid)
    (committed, committed_pid), (aborted, aborted_pid) = finished[True], finished[False]

    state = describe(client, ongoing)[ongoing]
    assert state.error_code == ErrorCode.none
    assert state.transaction_state == "Ongoing"
    assert (state.producer_id, state.producer_epoch) == (ongoing_pid, ongoing_epoch)
    assert state.transaction_timeout.total_seconds() == 45
    assert abs(state.transaction_start_time.timestamp() - time.time()) < 60
    assert sorted((t.topic, sorted(t.partitions)) for t in state.topics) == sorted(
        [(topic, [0, 2]), (other, [0])])
    assert wait_for_state(client, committed, "CompleteCommit").producer_id == committed_pid
    assert wait_for_state(client, aborted, "CompleteAbort").producer_id == aborted_pid
    several = describe(client, ongoing, committed, aborted)
    assert [several[t].transaction_state for t in (ongoing, committed, aborted)] == [
        "Ongoing", "CompleteCommit", "CompleteAbort"]

    ours = {ongoing, committed, aborted}
    assert listed(list_transactions(client), ours) == {
        ongoing: (ongoing_pid, "Ongoing"), committed: (committed_pid, "CompleteCommit"),
        aborted: (aborted_pid, "CompleteAbort")}
    assert listed(list_transactions(client, ("Ongoing",)), ours) == {
        ongoing: (ongoing_pid, "Ongoing")}
    assert set(listed(list_transactions(client, ("CompleteCommit", "CompleteAbort")),
                      ours)) == {committed, aborted}
    assert listed(list_transactions(client, producer_ids=(committed_pid,)), ours) == {
        committed: (committed_pid, "CompleteCommit")}
    unknown = list_transactions(client, ("Bogus", "Ongoing"))
    assert tuple(unknown.unknown_state_filters) == ("Bogus",)
    assert listed(unknown, ours) == {ongoing: (ongoing_pid, "Ongoing")}
    only_unknown = list_transactions(client, ("Bogus",))
    assert tuple(only_unknown.unknown_state_filters) == ("Bogus",)
    assert listed(only_unknown, ours) == {}
    # v1's duration filter: transactions running longer than that many milliseconds.
    time.sleep(0.05)
    assert set(listed(list_transactions(client, duration_ms=10), ours)) == {ongoing}
    assert listed(list_transactions(client, duration_ms=3_600_000), ours) == {}

    assert raw_end_txn(client, ongoing, ongoing_pid, ongoing_epoch, False).error_code == (
        ErrorCode.none)
    wait_for_state(client, ongoing, "CompleteAbort")
    assert listed(list_transactions(client, ("Ongoing",)), ours) == {}


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def describe_on_the_wire(client: RawClient, *ids: str) -> dict[str, tuple[int, str, int,
                                                                             int, int, int]]:
    """DescribeTransactions v0 decoded by hand: kio's reader refuses the -1 start time that
    Kafka (and strom) send for an id without a transaction. (error, state, start ms,
    producer id, epoch, topic count) per id."""
    client.send_raw(client.frame(DescribeTransactionsRequest(
        transactional_ids=tuple(TransactionalId(t) for t in ids))))
    frame = client.recv_frame()
    pos = 4 + 1 + 4  # correlation id, header tagged fields, throttle time
    count, pos = _uvarint(frame, pos)
    out = {}
    for _ in range(count - 1):
        error = struct.unpack_from(">h", frame, pos)[0]
        pos += 2
        texts = []
        for _ in range(2):
            length, pos = _uvarint(frame, pos)
            texts.append(frame[pos:pos + length - 1].decode())
            pos += length - 1
        _timeout, start, pid, epoch = struct.unpack_from(">iqqh", frame, pos)
        pos += 22
        topics, pos = _uvarint(frame, pos)
        assert topics == 1, "no topics expected here"
        tags, pos = _uvarint(frame, pos)
        assert tags == 0
        out[texts[0]] = (error, texts[1], start, pid, epoch, topics - 1)
    return out


def test_describe_empty_and_unknown_transactional_ids(client: RawClient) -> None:
    """An id with no transaction yet has no start time (Kafka sends -1); an unknown one gets
    TRANSACTIONAL_ID_NOT_FOUND."""
    empty, nobody = unique_name("txn-fresh"), unique_name("txn-nobody")
    init = raw_init(client, empty)
    assert init.error_code == ErrorCode.none
    found = describe_on_the_wire(client, empty, nobody)
    assert found[empty] == (ErrorCode.none, "Empty", -1, init.producer_id,
                            init.producer_epoch, 0)
    assert found[nobody][0] == ErrorCode.transactional_id_not_found
    assert found[nobody][2] == -1
