"""KIP-890 verification of a transactional produce when the transaction coordinator is on
another broker: one AddPartitionsToTxn v4+ (verify_only, one transaction) to the leader of the
transactional id's __transaction_state partition, its answers mapped as the local path maps
the local coordinator's (fenced -> INVALID_PRODUCER_EPOCH; coordinator not available, loading,
concurrent transactions, not coordinator, unreachable, no leader -> NOT_ENOUGH_REPLICAS), the
guard taken before the request still deciding the append; the local path does not suspend;
and the server side answers verify_only without changing anything."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from strom.broker.handlers.produce import append_partition
from strom.broker.handlers.transactions import handle_add_partitions_to_txn
from strom.broker.state import Broker, RequestContext
from strom.broker.txn_verification import answer_error, verify_in_transaction
from strom.coordinator.internal_topics import TXN_TOPIC
from strom.protocol.messages import ErrorCode, RequestBuilder, ResponseBuilder, encode_response
from strom.protocol.record_builder import build_batch
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

TOPIC = "data"
COORDINATOR = 2  # the node said to lead __transaction_state


def txn_batch(pid: int, epoch: int, seq: int = 0) -> bytes:
    return build_batch([(None, b"v", [], int(time.time() * 1000))], producer_id=pid,
                       producer_epoch=epoch, base_sequence=seq, transactional=True)


async def remote_coordinator(broker: Broker, engine: LocalEngine, answer: Any,
                             ) -> ScriptedPeers:
    await engine.create_topic(TOPIC, 1, {})
    peers = ScriptedPeers(broker.node_id, answer)
    use_peers(broker, peers)
    Leaders(engine).leaders[TXN_TOPIC] = COORDINATOR
    return peers


def test_a_verified_produce_is_appended(tmp_path: Path) -> None:
    async def body(broker: Broker, engine: LocalEngine) -> None:
        peers = await remote_coordinator(broker, engine, scripted())
        outcome = await append_partition(broker, TOPIC, 0, txn_batch(7, 1), 9, "tx")
        assert (outcome.error, outcome.base_offset) == (ErrorCode.none, 0)
        ((_at, node, request),) = peers.sent
        assert (node, type(request).__api_key__, type(request).__version__) == (COORDINATOR,
                                                                                24, 5)
        (txn,) = request.transactions
        assert (txn.transactional_id, txn.producer_id, txn.producer_epoch, txn.verify_only
                ) == ("tx", 7, 1, True)
        assert [(t.name, list(t.partitions)) for t in txn.topics] == [(TOPIC, [0])]
        # every transactional batch is verified, as on the local path
        outcome = await append_partition(broker, TOPIC, 0, txn_batch(7, 1, 1), 9, "tx")
        assert (outcome.error, outcome.base_offset) == (ErrorCode.none, 1)
        assert len(peers.sent) == 2

    run_broker(tmp_path, body)


@pytest.mark.parametrize("answer,expected", [
    (ErrorCode.producer_fenced, ErrorCode.invalid_producer_epoch),
    (ErrorCode.invalid_txn_state, ErrorCode.invalid_txn_state),
    (ErrorCode.invalid_producer_id_mapping, ErrorCode.invalid_producer_id_mapping),
    (ErrorCode.coordinator_not_available, ErrorCode.not_enough_replicas),
    (ErrorCode.coordinator_load_in_progress, ErrorCode.not_enough_replicas),
    (ErrorCode.concurrent_transactions, ErrorCode.not_enough_replicas),
    (ErrorCode.not_coordinator, ErrorCode.not_enough_replicas),
    (UNREACHABLE, ErrorCode.not_enough_replicas),
])
def test_a_refused_verification(tmp_path: Path, answer: Any, expected: ErrorCode) -> None:
    async def body(broker: Broker, engine: LocalEngine) -> None:
        peers = await remote_coordinator(broker, engine, scripted(answer))
        outcome = await append_partition(broker, TOPIC, 0, txn_batch(7, 1), 9, "tx")
        assert (outcome.error, outcome.base_offset) == (expected, -1)
        plog = engine.partition(TOPIC, 0)
        assert plog.log_end_offset == 0
        # the refusal released the guard; the retry is verified again and appended
        outcome = await append_partition(broker, TOPIC, 0, txn_batch(7, 1), 9, "tx")
        assert (outcome.error, outcome.base_offset) == (ErrorCode.none, 0)
        assert len(peers.sent) == 2

    run_broker(tmp_path, body)


def test_no_coordinator_leader_is_not_enough_replicas(tmp_path: Path) -> None:
    async def body(broker: Broker, engine: LocalEngine) -> None:
        peers = await remote_coordinator(broker, engine, scripted())
        Leaders(engine).leaders[TXN_TOPIC] = None
        outcome = await append_partition(broker, TOPIC, 0, txn_batch(7, 1), 9, "tx")
        assert outcome.error == ErrorCode.not_enough_replicas
        assert peers.sent == []

    run_broker(tmp_path, body)


def test_a_marker_during_the_verification_fails_the_append(tmp_path: Path) -> None:
    """The guard is taken before the request: an ABORT marker that lands while the
    coordinator is being asked (the transaction ended) keeps the late batch out, even though
    the coordinator's answer (from before the end) was NONE."""

    async def body(broker: Broker, engine: LocalEngine) -> None:
        plog = engine.partition  # bound below, once the topic exists

        async def marker_then_none(node_id: int, request: Any) -> Any:
            await plog(TOPIC, 0).append_marker(7, 1, False)
            return error_answer(request, ErrorCode.none)

        await remote_coordinator(broker, engine, marker_then_none)
        outcome = await append_partition(broker, TOPIC, 0, txn_batch(7, 1), 9, "tx")
        assert outcome.error == ErrorCode.invalid_txn_state
        assert plog(TOPIC, 0).log_end_offset == 1  # the marker only

    run_broker(tmp_path, body)


def test_a_local_coordinator_answers_without_suspending(tmp_path: Path) -> None:
    async def body(broker: Broker, engine: LocalEngine) -> None:
        await engine.create_topic(TOPIC, 1, {})
        await broker.transactions.own(create=True)
        coroutine = verify_in_transaction(broker, "tx", 7, 1, [(TOPIC, 0)])
        with pytest.raises(StopIteration) as done:
            coroutine.send(None)  # one step: no await suspended it
        assert done.value.value == ErrorCode.invalid_producer_id_mapping

    run_broker(tmp_path, body)


def test_answer_errors() -> None:
    b = RequestBuilder(24, 5)
    request = b.make("AddPartitionsToTxnRequest", transactions=(b.make(
        "AddPartitionsToTxnTransaction", transactional_id="tx", producer_id=7,
        producer_epoch=1, verify_only=True, topics=(
            b.make("AddPartitionsToTxnTopic", name="a", partitions=(0, 1)),)),))
    ok = error_answer(request, ErrorCode.none)
    assert answer_error(ok, "tx", [("a", 0), ("a", 1)]) == 0
    assert answer_error(ok, "tx", [("a", 2)]) == ErrorCode.unknown_server_error
    assert answer_error(ok, "other", [("a", 0)]) == ErrorCode.unknown_server_error
    refused = ResponseBuilder(24, 5).make(
        "AddPartitionsToTxnResponse", throttle_time=0,
        error_code=ErrorCode.cluster_authorization_failed, results_by_transaction=())
    assert answer_error(refused, "tx", [("a", 0)]) == ErrorCode.invalid_txn_state


# -- the coordinator's side: AddPartitionsToTxn v4+ with verify_only --------------------------

# (transactional id, producer id, producer epoch, verify_only, {topic: partitions})
Transaction = tuple[str, int, int, bool, dict[str, list[int]]]


def add_partitions_request(version: int, *transactions: Transaction) -> Any:
    b = RequestBuilder(24, version)
    return b.make("AddPartitionsToTxnRequest", transactions=tuple(b.make(
        "AddPartitionsToTxnTransaction", transactional_id=tid, producer_id=pid,
        producer_epoch=epoch, verify_only=verify, topics=tuple(
            b.make("AddPartitionsToTxnTopic", name=t, partitions=tuple(ps))
            for t, ps in topics.items()))
        for tid, pid, epoch, verify, topics in transactions))


async def add_partitions(broker: Broker, request: Any) -> dict[tuple[str, str, int], int]:
    version = int(type(request).__version__)
    b = ResponseBuilder(24, version)
    response = await handle_add_partitions_to_txn(
        broker, RequestContext("strom-broker-2", "h", version, 1), request, b)
    encode_response(24, version, 1, response)
    assert response.error_code == ErrorCode.none
    return {(r.transactional_id, t.name, int(p.partition_index)): int(p.partition_error_code)
            for r in response.results_by_transaction for t in r.topic_results
            for p in t.results_by_partition}


def test_the_coordinator_answers_verify_only_without_changing_anything(tmp_path: Path) -> None:
    async def body(broker: Broker, engine: LocalEngine) -> None:
        await engine.create_topic(TOPIC, 2, {})
        init = await broker.transactions.write("tx", lambda core, now: core.init_producer_id(
            "tx", 60_000, now_ms=now))
        pid, epoch = init.producer_id, init.producer_epoch
        assert await add_partitions(broker, add_partitions_request(
            5, ("tx", pid, epoch, False, {TOPIC: [0]}))) == {("tx", TOPIC, 0): 0}
        for version in (4, 5):
            answer = await add_partitions(broker, add_partitions_request(
                version, ("tx", pid, epoch, True, {TOPIC: [0, 1]}),
                ("tx-unknown", 3, 0, True, {TOPIC: [0]})))
            assert answer == {("tx", TOPIC, 0): ErrorCode.none,
                              ("tx", TOPIC, 1): ErrorCode.invalid_txn_state,
                              ("tx-unknown", TOPIC, 0): ErrorCode.invalid_producer_id_mapping}
            answer = await add_partitions(broker, add_partitions_request(
                version, ("tx", pid, epoch + 1, True, {TOPIC: [0]})))
            assert answer == {("tx", TOPIC, 0): ErrorCode.producer_fenced}
            answer = await add_partitions(broker, add_partitions_request(
                version, ("tx", pid, epoch, True, {TOPIC: [0, 1], "missing": [0]})))
            assert answer == {("tx", TOPIC, 0): ErrorCode.operation_not_attempted,
                              ("tx", TOPIC, 1): ErrorCode.operation_not_attempted,
                              ("tx", "missing", 0): ErrorCode.unknown_topic_or_partition}
        # nothing was added by the verifications
        answer = await add_partitions(broker, add_partitions_request(
            5, ("tx", pid, epoch, True, {TOPIC: [0, 1]})))
        assert answer == {("tx", TOPIC, 0): 0, ("tx", TOPIC, 1): ErrorCode.invalid_txn_state}

    run_broker(tmp_path, body)


def test_verify_only_for_a_shard_not_served_here(tmp_path: Path) -> None:
    async def body(broker: Broker, engine: LocalEngine) -> None:
        await engine.create_topic(TOPIC, 1, {})
        await broker.transactions.own(create=True)
        broker.transactions.runtime.unload(0)
        answer = await add_partitions(broker, add_partitions_request(
            5, ("tx", 7, 1, True, {TOPIC: [0]})))
        assert answer == {("tx", TOPIC, 0): ErrorCode.not_coordinator}

    run_broker(tmp_path, body)


@pytest.mark.parametrize("answer,expected", [
    (ErrorCode.none, ErrorCode.none),
    (ErrorCode.not_coordinator, ErrorCode.coordinator_not_available),
    (UNREACHABLE, ErrorCode.coordinator_not_available),
    (ErrorCode.invalid_txn_state, ErrorCode.invalid_txn_state),
])
def test_a_txn_offset_commit_verified_remotely(tmp_path: Path, answer: Any,
                                               expected: ErrorCode) -> None:
    """TxnOffsetCommit checks the group's __consumer_offsets partition with the coordinator
    on another broker too, and gets what the local coordinator would answer (a shard not
    served or unreachable: COORDINATOR_NOT_AVAILABLE, which the client retries)."""
    from strom.broker.handlers.txn_offset_commit import handle_txn_offset_commit
    from strom.coordinator.internal_topics import OFFSETS_TOPIC

    async def body(broker: Broker, engine: LocalEngine) -> None:
        peers = await remote_coordinator(broker, engine, scripted(answer))
        b = RequestBuilder(28, 3)
        request = b.make(
            "TxnOffsetCommitRequest", transactional_id="tx", group_id="g", producer_id=7,
            producer_epoch=1, generation_id=-1, member_id="", group_instance_id=None,
            topics=(b.make("TxnOffsetCommitRequestTopic", name=TOPIC, partitions=(b.make(
                "TxnOffsetCommitRequestPartition", partition_index=0, committed_offset=3,
                committed_leader_epoch=-1, committed_metadata=""),)),))
        response = await handle_txn_offset_commit(broker, RequestContext("c", "h", 3, 1),
                                                  request, ResponseBuilder(28, 3))
        assert [p.error_code for t in response.topics for p in t.partitions] == [expected]
        ((_at, node, sent),) = peers.sent
        assert node == COORDINATOR
        assert [(t.name, list(t.partitions)) for t in sent.transactions[0].topics] == [
            (OFFSETS_TOPIC, [broker.groups.partition_for("g")])]

    run_broker(tmp_path, body)
