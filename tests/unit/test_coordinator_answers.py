"""Handlers answer for a coordinator shard this broker does not serve (unloaded) or has not
loaded yet the way Kafka's coordinators do for each API: NOT_COORDINATOR and
COORDINATOR_LOAD_IN_PROGRESS in general, NONE for a Heartbeat while loading,
REBALANCE_IN_PROGRESS for a SyncGroup while loading, per group for DescribeGroups, the whole
answer for ListGroups, COORDINATOR_NOT_AVAILABLE from FindCoordinator for a shard not owned,
NOT_ENOUGH_REPLICAS for a produce whose transaction cannot be verified."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic
from kio.schema.sync_group.v5.request import SyncGroupRequest
from kio.schema.types import GroupId, TransactionalId
from kio.static.primitive import i8, i32

from strom.broker.coordinator_runtime import ShardStatus
from strom.broker.handlers.groups import (
    handle_describe_groups,
    handle_find_coordinator,
    handle_heartbeat,
    handle_list_groups,
    handle_sync_group,
)
from strom.broker.handlers.offsets import handle_offset_fetch
from strom.broker.handlers.produce import append_partition
from strom.broker.handlers.transactions import handle_describe_transactions
from strom.broker.state import Broker, RequestContext
from strom.coordinator.group.model import CommitRequest, OffsetCommit
from strom.coordinator.internal_topics import OFFSETS_TOPIC
from strom.protocol.messages import ErrorCode as E
from strom.protocol.messages import ResponseBuilder, encode_response
from strom.protocol.record_builder import build_batch
from tests.coordinator_harness import DATA, Clock, eventually, gate, key_on, run

Handler = Any


async def call(broker: Broker, handler: Handler, api_key: int, version: int,
               request: Any) -> Any:
    b = ResponseBuilder(api_key, version)
    response = await handler(broker, RequestContext("c", "h", version, 1), request, b)
    encode_response(api_key, version, 1, response)  # the answer fits its schema
    return response


def heartbeat(group_id: str) -> HeartbeatRequest:
    return HeartbeatRequest(group_id=GroupId(group_id), generation_id=i32(1), member_id="m",
                            group_instance_id=None)


def sync(group_id: str) -> SyncGroupRequest:
    return SyncGroupRequest(group_id=GroupId(group_id), generation_id=i32(1), member_id="m",
                            group_instance_id=None, protocol_type="consumer",
                            protocol_name="range", assignments=())


def offset_fetch(group_id: str) -> OffsetFetchRequest:
    return OffsetFetchRequest(group_id=GroupId(group_id), require_stable=False, topics=(
        OffsetFetchRequestTopic(name=DATA, partition_indexes=(i32(0),)),))


def test_group_apis_for_an_unloaded_shard(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        g0, g1 = key_on(0), key_on(1)
        request = CommitRequest(g1, -1, "", None, (OffsetCommit(DATA, 0, 4, -1, None),))
        await broker.groups.write(g1, lambda core, now: core.commit_offsets(request, now))
        assert broker.groups.runtime.unload(0)
        beat = await call(broker, handle_heartbeat, 12, 4, heartbeat(g0))
        assert beat.error_code == E.not_coordinator
        synced = await call(broker, handle_sync_group, 14, 5, sync(g0))
        assert synced.error_code == E.not_coordinator
        fetched = await call(broker, handle_offset_fetch, 9, 7, offset_fetch(g0))
        assert fetched.error_code == E.not_coordinator
        assert fetched.topics[0].partitions[0].error_code == E.not_coordinator
        fetched = await call(broker, handle_offset_fetch, 9, 7, offset_fetch(g1))
        assert fetched.error_code == E.none
        assert fetched.topics[0].partitions[0].committed_offset == 4
        described = await call(broker, handle_describe_groups, 15, 5, DescribeGroupsRequest(
            groups=(GroupId(g0), GroupId(g1)), include_authorized_operations=False))
        assert [(g.group_id, g.error_code) for g in described.groups] == [
            (g0, E.not_coordinator), (g1, E.none)]
        listed = await call(broker, handle_list_groups, 16, 4, ListGroupsRequest(
            states_filter=()))
        assert listed.error_code == E.none  # the shards not owned are left out
        assert [g.group_id for g in listed.groups] == [g1]
        found = await call(broker, handle_find_coordinator, 10, 4, FindCoordinatorRequest(
            key_type=i8(0), coordinator_keys=(g0, g1)))
        assert [(c.key, c.error_code, c.node_id) for c in found.coordinators] == [
            (g0, E.coordinator_not_available, -1), (g1, E.none, broker.node_id)]

    run(tmp_path, body)


def test_group_apis_for_a_loading_shard(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        runtime = broker.groups.runtime
        g0 = key_on(0)
        assert runtime.unload(0)
        opened = gate(broker.engine.partition(OFFSETS_TOPIC, 0), "offsets")  # replay's first
        loading = asyncio.ensure_future(runtime.load(0, epoch=1))
        await eventually(lambda: runtime.status(0) is ShardStatus.LOADING)
        beat = await call(broker, handle_heartbeat, 12, 4, heartbeat(g0))
        assert beat.error_code == E.none  # Kafka answers blindly while the group loads
        synced = await call(broker, handle_sync_group, 14, 5, sync(g0))
        assert synced.error_code == E.rebalance_in_progress
        fetched = await call(broker, handle_offset_fetch, 9, 7, offset_fetch(g0))
        assert fetched.error_code == E.coordinator_load_in_progress
        listed = await call(broker, handle_list_groups, 16, 4, ListGroupsRequest(
            states_filter=()))
        assert listed.error_code == E.coordinator_load_in_progress
        found = await call(broker, handle_find_coordinator, 10, 4, FindCoordinatorRequest(
            key_type=i8(0), coordinator_keys=(g0,)))
        assert found.coordinators[0].error_code == E.none  # it is this broker's, loading
        opened.set()
        assert await loading
        beat = await call(broker, handle_heartbeat, 12, 4, heartbeat(g0))
        assert beat.error_code == E.unknown_member_id  # served again

    run(tmp_path, body)


def test_transaction_apis_for_an_unloaded_shard(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        txns = broker.transactions
        await txns.own(create=True)
        t0, t1 = key_on(0, prefix="tx"), key_on(1, prefix="tx")
        first = await txns.write(t0, lambda core, now: core.init_producer_id(
            t0, 60_000, now_ms=now))
        await txns.write(t0, lambda core, now: core.add_partitions(
            t0, first.producer_id, first.producer_epoch, [(DATA, 0)], now))
        assert txns.runtime.unload(0)
        described = await call(broker, handle_describe_transactions, 65, 0,
                               DescribeTransactionsRequest(transactional_ids=(
                                   TransactionalId(t0), TransactionalId(t1))))
        assert [(s.transactional_id, s.error_code) for s in described.transaction_states] == [
            (t0, E.not_coordinator), (t1, E.transactional_id_not_found)]
        found = await call(broker, handle_find_coordinator, 10, 4, FindCoordinatorRequest(
            key_type=i8(1), coordinator_keys=(t0, t1)))
        assert [c.error_code for c in found.coordinators] == [
            E.coordinator_not_available, E.none]
        data = build_batch([(None, b"v", [], clock())], producer_id=first.producer_id,
                           producer_epoch=first.producer_epoch, base_sequence=0,
                           transactional=True)
        outcome = await append_partition(broker, DATA, 0, data, 1, t0)
        assert outcome.error == E.not_enough_replicas  # retriable, as Kafka's verification

    run(tmp_path, body)
