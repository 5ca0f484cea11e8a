"""The transaction coordinator's markers for partitions another broker leads: sent to that
leader in one WriteTxnMarkers (producer id/epoch, result, the shard's epoch as coordinator
epoch, one partition), with each answer handled as Kafka's
TransactionMarkerRequestCompletionHandler does (retry, drop, stop), retried while the
partition has no leader, written here once this broker leads it; and the WriteTxnMarkers
handler that writes a peer's markers (completing pending offsets on __consumer_offsets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from strom.broker import txn_runtime
from strom.broker.handlers.transactions import handle_write_txn_markers
from strom.broker.handlers.txn_offset_commit import handle_txn_offset_commit
from strom.broker.state import Broker, RequestContext
from strom.broker.txn_markers import MarkerOutcome, marker_outcome, partition_error
from strom.coordinator.internal_topics import OFFSETS_TOPIC
from strom.coordinator.transaction.model import TxnState
from strom.protocol.messages import ErrorCode, RequestBuilder, ResponseBuilder, encode_response
from strom.protocol.record_builder import build_batch
from strom.storage.api import AppendBatch, Rejected
from strom.storage.local.engine import LocalEngine
from tests.unit.peer_fakes import (
    UNREACHABLE,
    Leaders,
    ScriptedPeers,
    error_answer,
    run_broker,
    scripted,
    use_peers,
)
from tests.unit.test_group_txn_offsets import committed
from tests.unit.test_review_txn_runtime import batch_headers

TOPIC = "data"
OTHER = 2  # the node said to lead TOPIC


async def begin(broker: Broker, transactional_id: str) -> tuple[int, int]:
    """InitProducerId, AddPartitionsToTxn(data-0) and a transactional batch written there."""
    runtime = broker.transactions
    init = await runtime.write(transactional_id, lambda core, now: core.init_producer_id(
        transactional_id, 60_000, now_ms=now))
    pid, epoch = init.producer_id, init.producer_epoch
    added = await runtime.write(transactional_id, lambda core, now: core.add_partitions(
        transactional_id, pid, epoch, [(TOPIC, 0)], now))
    assert added.error == 0, added
    data = build_batch([(None, b"v", [], int(time.time() * 1000))], producer_id=pid,
                       producer_epoch=epoch, base_sequence=0, transactional=True)
    plog = broker.engine.partition(TOPIC, 0)
    guard = plog.producer_state.start_verification(pid)
    outcome = await plog.produce([AppendBatch(bytearray(data), 1, 0, 0)], guard)
    assert not isinstance(outcome, Rejected), outcome
    return pid, epoch


async def commit(broker: Broker, transactional_id: str, pid: int, epoch: int) -> None:
    ended = await broker.transactions.write(transactional_id, lambda core, now: core.end_txn(
        transactional_id, pid, epoch, True, now, bump_epoch=False))
    assert ended.error == 0, ended


def state(broker: Broker, transactional_id: str) -> TxnState:
    return broker.transactions.runtime.shard(0).core.snapshot()[transactional_id].state


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def remote_commit(tmp_path: Path, answer: Any,
                  check: Callable[[Broker, ScriptedPeers, Leaders, int, int], Awaitable[None]],
                  ) -> None:
    """A transaction on data-0, committed while node 2 leads data-0 and `answer` plays it."""

    async def body(broker: Broker, engine: LocalEngine) -> None:
        await engine.create_topic(TOPIC, 1, {})
        peers = ScriptedPeers(broker.node_id, answer)
        use_peers(broker, peers)
        pid, epoch = await begin(broker, "t")
        leaders = Leaders(engine)
        leaders.leaders[TOPIC] = OTHER
        await commit(broker, "t", pid, epoch)
        await check(broker, peers, leaders, pid, epoch)

    run_broker(tmp_path, body)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(txn_runtime, "MARKER_RETRY_S", (0.01, 0.3))


def test_the_marker_goes_to_the_partition_leader(tmp_path: Path) -> None:
    async def check(broker: Broker, peers: ScriptedPeers, leaders: Leaders, pid: int,
                    epoch: int) -> None:
        await wait_for(lambda: state(broker, "t") is TxnState.COMPLETE_COMMIT, "the commit")
        assert len(peers.sent) == 1
        _at, node, request = peers.sent[0]
        assert (node, type(request).__api_key__, type(request).__version__) == (OTHER, 27, 2)
        (marker,) = request.markers
        assert (marker.producer_id, marker.producer_epoch, marker.transaction_result,
                marker.coordinator_epoch) == (pid, epoch, True, 0)  # the shard's epoch
        assert [(t.name, list(t.partition_indexes)) for t in marker.topics] == [(TOPIC, [0])]
        plog = broker.engine.partition(TOPIC, 0)
        assert not [h for h in await batch_headers(plog) if h.is_control]  # not written here

    remote_commit(tmp_path, scripted(), check)


def test_retriable_answers_and_an_unreachable_leader_are_retried(tmp_path: Path) -> None:
    answers = (UNREACHABLE, ErrorCode.not_leader_or_follower, ErrorCode.kafka_storage_error,
               ErrorCode.unknown_topic_or_partition, ErrorCode.not_enough_replicas,
               ErrorCode.request_timed_out)

    async def check(broker: Broker, peers: ScriptedPeers, leaders: Leaders, pid: int,
                    epoch: int) -> None:
        await wait_for(lambda: state(broker, "t") is TxnState.COMPLETE_COMMIT, "the commit")
        assert len(peers.sent) == len(answers) + 1
        times = [at for at, _node, _request in peers.sent]
        assert times[1] - times[0] < 0.15  # the backoff starts short (and doubles)

    remote_commit(tmp_path, scripted(*answers), check)


@pytest.mark.parametrize("error", [ErrorCode.invalid_producer_epoch,
                                   ErrorCode.unsupported_for_message_format,
                                   ErrorCode.unsupported_version])
def test_answers_that_drop_the_marker(tmp_path: Path, error: ErrorCode) -> None:
    async def check(broker: Broker, peers: ScriptedPeers, leaders: Leaders, pid: int,
                    epoch: int) -> None:
        await wait_for(lambda: state(broker, "t") is TxnState.COMPLETE_COMMIT, "the commit")
        assert len(peers.sent) == 1

    remote_commit(tmp_path, scripted(error), check)


def test_a_fenced_coordinator_stops_writing_the_transactions_markers(tmp_path: Path) -> None:
    async def check(broker: Broker, peers: ScriptedPeers, leaders: Leaders, pid: int,
                    epoch: int) -> None:
        await wait_for(lambda: len(peers.sent) == 1, "the marker")
        await asyncio.sleep(0.5)
        assert len(peers.sent) == 1  # not retried
        assert state(broker, "t") is TxnState.PREPARE_COMMIT  # left to the new coordinator

    remote_commit(tmp_path, scripted(ErrorCode.transaction_coordinator_fenced), check)


def test_an_unexpected_answer_is_retried_after_the_longest_backoff(tmp_path: Path) -> None:
    async def check(broker: Broker, peers: ScriptedPeers, leaders: Leaders, pid: int,
                    epoch: int) -> None:
        await wait_for(lambda: state(broker, "t") is TxnState.COMPLETE_COMMIT, "the commit")
        first, second = (at for at, _node, _request in peers.sent)
        assert second - first >= 0.3

    remote_commit(tmp_path, scripted(ErrorCode.corrupt_message), check)


def test_no_leader_waits_and_a_leader_here_writes_the_marker_here(tmp_path: Path) -> None:
    async def no_leader_then_local(node_id: int, request: Any) -> Any:
        leaders.leaders[TOPIC] = None  # the lease is lost with the answer
        return error_answer(request, ErrorCode.not_leader_or_follower)

    leaders: Leaders

    async def check(broker: Broker, peers: ScriptedPeers, leaders_: Leaders, pid: int,
                    epoch: int) -> None:
        await wait_for(lambda: len(peers.sent) == 1, "the marker")
        await asyncio.sleep(0.2)
        assert len(peers.sent) == 1  # nobody to send it to
        assert state(broker, "t") is TxnState.PREPARE_COMMIT
        leaders_.leaders[TOPIC] = broker.node_id  # this broker took the lease
        await wait_for(lambda: state(broker, "t") is TxnState.COMPLETE_COMMIT, "the commit")
        plog = broker.engine.partition(TOPIC, 0)
        markers = [h for h in await batch_headers(plog) if h.is_control]
        assert [(h.producer_id, h.producer_epoch) for h in markers] == [(pid, epoch)]
        assert plog.last_stable_offset == plog.log_end_offset

    async def body(broker: Broker, engine: LocalEngine) -> None:
        nonlocal leaders
        await engine.create_topic(TOPIC, 1, {})
        peers = ScriptedPeers(broker.node_id, no_leader_then_local)
        use_peers(broker, peers)
        pid, epoch = await begin(broker, "t")
        leaders = Leaders(engine)
        leaders.leaders[TOPIC] = OTHER
        await commit(broker, "t", pid, epoch)
        await check(broker, peers, leaders, pid, epoch)

    run_broker(tmp_path, body)


def test_a_topic_deleted_while_its_leader_is_away_drops_the_marker(tmp_path: Path) -> None:
    async def check(broker: Broker, peers: ScriptedPeers, leaders: Leaders, pid: int,
                    epoch: int) -> None:
        await wait_for(lambda: len(peers.sent) >= 1, "the marker")
        del leaders.leaders[TOPIC]
        await broker.engine.delete_topic(TOPIC)
        await wait_for(lambda: state(broker, "t") is TxnState.COMPLETE_COMMIT, "the commit")

    remote_commit(tmp_path, scripted(*[ErrorCode.unknown_topic_or_partition] * 1000), check)


def test_marker_outcomes() -> None:
    assert marker_outcome(ErrorCode.none) is MarkerOutcome.DONE
    assert marker_outcome(ErrorCode.not_enough_replicas_after_append) is MarkerOutcome.RETRY
    assert marker_outcome(ErrorCode.invalid_producer_epoch) is MarkerOutcome.DONE
    assert marker_outcome(ErrorCode.transaction_coordinator_fenced) is MarkerOutcome.STOP
    for error in (ErrorCode.corrupt_message, ErrorCode.message_too_large,
                  ErrorCode.record_list_too_large, ErrorCode.invalid_required_acks,
                  ErrorCode.cluster_authorization_failed, ErrorCode.unknown_server_error):
        assert marker_outcome(error) is MarkerOutcome.RETRY_SLOWLY


def test_an_answer_that_leaves_the_partition_out() -> None:
    request = RequestBuilder(27, 1).make("WriteTxnMarkersRequest", markers=(
        RequestBuilder(27, 1).make(
            "WritableTxnMarker", producer_id=5, producer_epoch=0, transaction_result=True,
            coordinator_epoch=0, topics=(RequestBuilder(27, 1).make(
                "WritableTxnMarkerTopic", name="t", partition_indexes=(3,)),)),))
    answer = error_answer(request, ErrorCode.kafka_storage_error)
    assert partition_error(answer, 5, "t", 3) == ErrorCode.kafka_storage_error
    assert partition_error(answer, 5, "t", 4) == ErrorCode.unknown_server_error
    assert partition_error(answer, 6, "t", 3) == ErrorCode.unknown_server_error
    assert partition_error(answer, 5, "u", 3) == ErrorCode.unknown_server_error


# -- the handler: a peer's markers written here ------------------------------------------------

def markers_request(pid: int, epoch: int, commit: bool, partitions: dict[str, list[int]],
                    coordinator_epoch: int = 0) -> Any:
    b = RequestBuilder(27, 2)
    return b.make("WriteTxnMarkersRequest", markers=(b.make(
        "WritableTxnMarker", producer_id=pid, producer_epoch=epoch, transaction_result=commit,
        coordinator_epoch=coordinator_epoch,
        topics=tuple(b.make("WritableTxnMarkerTopic", name=t, partition_indexes=tuple(ps))
                     for t, ps in partitions.items())),))


async def write_markers(broker: Broker, request: Any,
                        client_id: str = "strom-broker-2") -> dict[tuple[str, int], int]:
    b = ResponseBuilder(27, 2)
    response = await handle_write_txn_markers(broker, RequestContext(client_id, "h", 2, 1),
                                              request, b)
    encode_response(27, 2, 1, response)  # the answer fits its schema
    return {(t.name, int(p.partition_index)): int(p.error_code)
            for m in response.markers for t in m.topics for p in t.partitions}


def test_the_handler_writes_a_peers_markers(tmp_path: Path) -> None:
    async def body(broker: Broker, engine: LocalEngine) -> None:
        await engine.create_topic(TOPIC, 2, {})
        await engine.create_topic("led-elsewhere", 1, {})
        pid, epoch = await begin(broker, "t")
        plog = engine.partition(TOPIC, 0)
        assert plog.last_stable_offset == 0
        leaders = Leaders(engine)
        leaders.leaders["led-elsewhere"] = OTHER
        request = markers_request(pid, epoch, True, {TOPIC: [0], "led-elsewhere": [0],
                                                     "missing": [0]})
        assert await write_markers(broker, request, client_id="admin-tool") == {
            (TOPIC, 0): ErrorCode.cluster_authorization_failed,
            ("led-elsewhere", 0): ErrorCode.cluster_authorization_failed,
            ("missing", 0): ErrorCode.cluster_authorization_failed}
        assert plog.last_stable_offset == 0
        assert await write_markers(broker, request) == {
            (TOPIC, 0): ErrorCode.none, ("led-elsewhere", 0): ErrorCode.not_leader_or_follower,
            ("missing", 0): ErrorCode.unknown_topic_or_partition}
        assert plog.last_stable_offset == plog.log_end_offset == 2
        assert not [h for h in await batch_headers(engine.partition("led-elsewhere", 0))]
        stale = markers_request(pid, epoch - 1, False, {TOPIC: [0]})
        assert await write_markers(broker, stale) == {(TOPIC, 0): ErrorCode.invalid_producer_epoch}
        assert plog.log_end_offset == 2

    run_broker(tmp_path, body)


def test_a_peers_marker_on_consumer_offsets_completes_pending_offsets(tmp_path: Path) -> None:
    """TxnOffsetCommit leaves the offsets pending; the COMMIT marker a peer coordinator sends
    to this broker's __consumer_offsets partition makes them count, as the local marker path
    does (GroupRuntime.complete_txn)."""

    async def body(broker: Broker, engine: LocalEngine) -> None:
        await engine.create_topic("t", 1, {})
        partition = broker.groups.partition_for("g")
        init = await broker.transactions.write("tx", lambda core, now: core.init_producer_id(
            "tx", 60_000, now_ms=now))
        pid, epoch = init.producer_id, init.producer_epoch
        added = await broker.transactions.write("tx", lambda core, now: core.add_offsets(
            "tx", pid, epoch, "g", now))
        assert added == 0
        b = RequestBuilder(28, 3)
        commit_request = b.make(
            "TxnOffsetCommitRequest", transactional_id="tx", group_id="g", producer_id=pid,
            producer_epoch=epoch, generation_id=-1, member_id="", group_instance_id=None,
            topics=(b.make("TxnOffsetCommitRequestTopic", name="t", partitions=(b.make(
                "TxnOffsetCommitRequestPartition", partition_index=0, committed_offset=7,
                committed_leader_epoch=-1, committed_metadata=""),)),))
        answer = await handle_txn_offset_commit(broker, RequestContext("c", "h", 3, 1),
                                                commit_request, ResponseBuilder(28, 3))
        assert [int(p.error_code) for t in answer.topics for p in t.partitions] == [0]
        assert committed(broker.groups.core("g")) == {}
        assert await write_markers(broker, markers_request(pid, epoch, True, {
            OFFSETS_TOPIC: [partition]})) == {(OFFSETS_TOPIC, partition): ErrorCode.none}
        assert committed(broker.groups.core("g")) == {("t", 0): 7}

    run_broker(tmp_path, body)
