"""The authorization checks of the group, offset, transaction, producer id and SCRAM handlers,
called directly with a principal and an authorizer (no sockets): Kafka's operations, order of
checks and error codes (KafkaApis), and that a refused request changes nothing."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest
from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest as AddPartitionsV3,
)
from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnTopic as AddTopicV3,
)
from kio.schema.add_partitions_to_txn.v5.request import (
    AddPartitionsToTxnRequest as AddPartitionsV5,
)
from kio.schema.add_partitions_to_txn.v5.request import (
    AddPartitionsToTxnTopic as AddTopicV5,
)
from kio.schema.add_partitions_to_txn.v5.request import AddPartitionsToTxnTransaction
from kio.schema.alter_user_scram_credentials.v0.request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialUpsertion,
)
from kio.schema.consumer_group_describe.v0.request import ConsumerGroupDescribeRequest
from kio.schema.consumer_group_heartbeat.v1.request import ConsumerGroupHeartbeatRequest
from kio.schema.delete_groups.v2.request import DeleteGroupsRequest
from kio.schema.describe_groups.v5.request import DescribeGroupsRequest
from kio.schema.describe_transactions.v0.request import DescribeTransactionsRequest
from kio.schema.describe_user_scram_credentials.v0.request import (
    DescribeUserScramCredentialsRequest,
    UserName,
)
from kio.schema.end_txn.v3.request import EndTxnRequest
from kio.schema.find_coordinator.v3.request import FindCoordinatorRequest as FindV3
from kio.schema.find_coordinator.v4.request import FindCoordinatorRequest as FindV4
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.join_group.v9.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.leave_group.v5.request import LeaveGroupRequest, MemberIdentity
from kio.schema.list_groups.v4.request import ListGroupsRequest
from kio.schema.list_transactions.v1.request import ListTransactionsRequest
from kio.schema.offset_commit.v8.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.offset_delete.v0.request import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
)
from kio.schema.offset_fetch.v1.request import OffsetFetchRequest as FetchV1
from kio.schema.offset_fetch.v1.request import OffsetFetchRequestTopic as FetchTopicV1
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest as FetchV7
from kio.schema.offset_fetch.v7.request import OffsetFetchRequestTopic as FetchTopicV7
from kio.schema.offset_fetch.v8.request import OffsetFetchRequest as FetchV8
from kio.schema.offset_fetch.v8.request import OffsetFetchRequestGroup, OffsetFetchRequestTopics
from kio.schema.sync_group.v5.request import SyncGroupRequest
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.schema.write_txn_markers.v1.request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)

from strom.broker.handlers.consumer_groups import (
    handle_consumer_group_describe,
    handle_consumer_group_heartbeat,
)
from strom.broker.handlers.groups import (
    GROUP_OPERATIONS,
    handle_delete_groups,
    handle_describe_groups,
    handle_find_coordinator,
    handle_heartbeat,
    handle_join_group,
    handle_leave_group,
    handle_list_groups,
    handle_sync_group,
)
from strom.broker.handlers.offsets import (
    handle_offset_commit,
    handle_offset_delete,
    handle_offset_fetch,
)
from strom.broker.handlers.producer_ids import handle_init_producer_id
from strom.broker.handlers.scram_users import (
    handle_alter_user_scram_credentials,
    handle_describe_user_scram_credentials,
)
from strom.broker.handlers.transactions import (
    handle_add_offsets_to_txn,
    handle_add_partitions_to_txn,
    handle_describe_transactions,
    handle_end_txn,
    handle_list_transactions,
    handle_write_txn_markers,
)
from strom.broker.handlers.txn_offset_commit import handle_txn_offset_commit
from strom.broker.operations import OPERATIONS_OMITTED
from strom.broker.sasl import read_credentials
from strom.broker.state import Broker, RequestContext
from strom.coordinator.group.model import CommitRequest, OffsetCommit
from strom.coordinator.internal_topics import OFFSETS_TOPIC, TXN_TOPIC
from strom.protocol.messages import ErrorCode as E
from strom.protocol.messages import ResponseBuilder, encode_response
from strom.security.acl import (
    AclBinding,
    Authorizer,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)
from strom.security.principal import KafkaPrincipal
from strom.security.session import Session
from tests.coordinator_harness import DATA, Clock, run

Handler = Any
ALICE = "User:alice"
SECRET = "secret"  # a topic alice may not touch
HOST = "10.0.0.7"

T, G, X, C = (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID,
              ResourceType.CLUSTER)
LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED


def allow(rtype: ResourceType, name: str, op: Operation, pattern: PatternType = LIT,
          principal: str = ALICE, host: str = "*") -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, host, op, Permission.ALLOW)


def deny(rtype: ResourceType, name: str, op: Operation, pattern: PatternType = LIT,
         principal: str = ALICE) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, "*", op, Permission.DENY)


def context(version: int, *acls: AclBinding, user: str = "alice",
            client_id: str = "c") -> RequestContext:
    session = dataclasses.replace(Session.plaintext(HOST),
                                  principal=KafkaPrincipal("User", user))
    return RequestContext(client_id, HOST, version, 1, session,
                          Authorizer(acls, super_users=["User:admin"]))


async def call(broker: Broker, handler: Handler, api_key: int, request: Any,
               ctx: RequestContext) -> Any:
    version = int(type(request).__version__)
    assert ctx.api_version == version
    b = ResponseBuilder(api_key, version)
    response = await handler(broker, ctx, request, b)
    encode_response(api_key, version, 1, response)  # the answer fits its schema
    return response


async def commit(broker: Broker, group: str, topic: str, offset: int) -> None:
    request = CommitRequest(group, -1, "", None, (OffsetCommit(topic, 0, offset, -1, None),))
    result = await broker.groups.write(group, lambda core, now: core.commit_offsets(request,
                                                                                    now))
    assert result.error == E.none


def committed(broker: Broker, group: str) -> dict[tuple[str, int], int]:
    _, offsets = broker.groups.core(group).fetch_offsets(group, None)
    return {tp: c.offset for tp, c in offsets.items()}


def group_exists(broker: Broker, group: str) -> bool:
    (described,) = broker.groups.core(group).describe([group])
    return described.error != E.group_id_not_found


# -- classic groups --------------------------------------------------------------------------

def test_find_coordinator_needs_describe_on_each_key(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        ctx = context(4, allow(G, "g-ok", Operation.DESCRIBE),
                      allow(X, "tx-ok", Operation.WRITE))
        found = await call(broker, handle_find_coordinator, 10, FindV4(
            key_type=0, coordinator_keys=("g-ok", "g-no")), ctx)
        assert [(c.key, c.error_code, c.node_id, c.error_message) for c in found.coordinators
                ] == [("g-ok", E.none, broker.node_id, None),
                      ("g-no", E.group_authorization_failed, -1, None)]
        found = await call(broker, handle_find_coordinator, 10, FindV4(
            key_type=1, coordinator_keys=("tx-no",)), ctx)
        assert found.coordinators[0].error_code == E.transactional_id_authorization_failed
        assert TXN_TOPIC not in broker.engine.topics()  # a refused lookup creates nothing
        found = await call(broker, handle_find_coordinator, 10, FindV4(
            key_type=1, coordinator_keys=("tx-ok",)), ctx)  # WRITE implies DESCRIBE
        assert found.coordinators[0].error_code == E.none
        old = await call(broker, handle_find_coordinator, 10, FindV3(key="g-no", key_type=0),
                         context(3))
        assert (old.error_code, old.error_message, old.node_id, old.host, old.port) == (
            E.group_authorization_failed, "Group authorization failed.", -1, "", -1)

    run(tmp_path, body)


def join(group: str) -> JoinGroupRequest:
    return JoinGroupRequest(group_id=group, session_timeout=timedelta(seconds=10),
                            rebalance_timeout=timedelta(seconds=10), member_id="",
                            group_instance_id=None, protocol_type="consumer",
                            protocols=(JoinGroupRequestProtocol(name="range", metadata=b""),))


def test_membership_needs_read_on_the_group(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        ctx = context(9, allow(G, "g", Operation.DESCRIBE))  # DESCRIBE is not READ
        joined = await call(broker, handle_join_group, 11, join("g"), ctx)
        assert (joined.error_code, joined.member_id, joined.generation_id) == (
            E.group_authorization_failed, "", -1)
        assert not group_exists(broker, "g")
        synced = await call(broker, handle_sync_group, 14, SyncGroupRequest(
            group_id="g", generation_id=1, member_id="m", group_instance_id=None,
            protocol_type="consumer", protocol_name="range", assignments=()), context(5))
        assert synced.error_code == E.group_authorization_failed
        beat = await call(broker, handle_heartbeat, 12, HeartbeatRequest(
            group_id="g", generation_id=1, member_id="m", group_instance_id=None), context(4))
        assert beat.error_code == E.group_authorization_failed
        left = await call(broker, handle_leave_group, 13, LeaveGroupRequest(
            group_id="g", members=(MemberIdentity(member_id="m", group_instance_id=None),)),
            context(5))
        assert (left.error_code, left.members) == (E.group_authorization_failed, ())
        # READ lets the member in (a PREFIXED ACL here)
        joined = await call(broker, handle_join_group, 11, join("g"),
                            context(9, allow(G, "g", Operation.READ, PRE)))
        assert joined.error_code == E.member_id_required

    run(tmp_path, body)


def test_describe_list_and_delete_groups(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        for group in ("team-a", "team-b", "other"):
            await commit(broker, group, DATA, 1)
        acls = (allow(G, "team-", Operation.READ, PRE), deny(G, "team-b", Operation.DELETE))
        described = await call(broker, handle_describe_groups, 15, DescribeGroupsRequest(
            groups=("team-a", "other"), include_authorized_operations=True), context(5, *acls))
        a, other = described.groups
        assert (a.error_code, a.group_state) == (E.none, "Empty")
        assert a.authorized_operations == (1 << Operation.READ) | (1 << Operation.DESCRIBE)
        assert (other.error_code, other.group_state, other.authorized_operations) == (
            E.group_authorization_failed, "", OPERATIONS_OMITTED)
        listed = await call(broker, handle_list_groups, 16, ListGroupsRequest(states_filter=()),
                            context(4, *acls))
        assert sorted(g.group_id for g in listed.groups) == ["team-a", "team-b"]
        listed = await call(broker, handle_list_groups, 16, ListGroupsRequest(states_filter=()),
                            context(4, *acls, allow(C, "kafka-cluster", Operation.DESCRIBE)))
        assert {"team-a", "team-b", "other"} <= {g.group_id for g in listed.groups}
        deleted = await call(broker, handle_delete_groups, 42, DeleteGroupsRequest(
            groups_names=("team-a", "team-b", "team-a")),
            context(2, *acls, allow(G, "team-", Operation.DELETE, PRE)))
        assert [(r.group_id, r.error_code) for r in deleted.results] == [
            ("team-a", E.none), ("team-b", E.group_authorization_failed)]
        assert not group_exists(broker, "team-a") and group_exists(broker, "team-b")
        # without an authorizer: every operation, as before
        plain = RequestContext("c", "h", 5, 1)
        described = await call(broker, handle_describe_groups, 15, DescribeGroupsRequest(
            groups=("other",), include_authorized_operations=True), plain)
        assert described.groups[0].authorized_operations == GROUP_OPERATIONS

    run(tmp_path, body)


# -- offsets ---------------------------------------------------------------------------------

def commit_request(group: str, *topics: str) -> OffsetCommitRequest:
    return OffsetCommitRequest(
        group_id=group, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
        topics=tuple(OffsetCommitRequestTopic(name=t, partitions=(OffsetCommitRequestPartition(
            partition_index=0, committed_offset=7, committed_leader_epoch=-1,
            committed_metadata=None),)) for t in topics))


def errors_of(response: Any) -> dict[str, int]:
    return {t.name: p.error_code for t in response.topics for p in t.partitions}


def test_offset_commit_needs_read_on_group_and_topics(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        await broker.engine.create_topic(SECRET, 1, {})
        refused = await call(broker, handle_offset_commit, 8, commit_request("g", DATA),
                             context(8, allow(T, DATA, Operation.READ)))
        assert errors_of(refused) == {DATA: E.group_authorization_failed}
        assert not group_exists(broker, "g")
        acls = (allow(G, "g", Operation.READ), allow(T, DATA, Operation.READ),
                allow(T, "missing", Operation.READ))
        answer = await call(broker, handle_offset_commit, 8, commit_request(
            "g", DATA, SECRET, "missing", "missing-secret"), context(8, *acls))
        assert errors_of(answer) == {DATA: E.none, SECRET: E.topic_authorization_failed,
                                     "missing": E.unknown_topic_or_partition,
                                     "missing-secret": E.topic_authorization_failed}
        assert committed(broker, "g") == {(DATA, 0): 7}

    run(tmp_path, body)


def test_offset_fetch_needs_describe_on_group_and_topics(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        await broker.engine.create_topic(SECRET, 1, {})
        await commit(broker, "g", DATA, 3)
        await commit(broker, "g", SECRET, 4)
        topics_v7 = (FetchTopicV7(name=DATA, partition_indexes=(0,)),
                     FetchTopicV7(name=SECRET, partition_indexes=(0,)))
        refused = await call(broker, handle_offset_fetch, 9, FetchV7(
            group_id="g", topics=topics_v7, require_stable=False), context(7))
        assert (refused.error_code, refused.topics) == (E.group_authorization_failed, ())
        v1 = await call(broker, handle_offset_fetch, 9, FetchV1(group_id="g", topics=(
            FetchTopicV1(name=DATA, partition_indexes=(0,)),)), context(1))
        assert [(p.error_code, p.committed_offset) for p in v1.topics[0].partitions] == [
            (E.group_authorization_failed, -1)]  # v1: on the partitions too
        acls = (allow(G, "g", Operation.DESCRIBE), allow(T, DATA, Operation.DESCRIBE))
        named = await call(broker, handle_offset_fetch, 9, FetchV7(
            group_id="g", topics=topics_v7, require_stable=False), context(7, *acls))
        assert named.error_code == E.none
        assert {t.name: [(p.error_code, p.committed_offset) for p in t.partitions]
                for t in named.topics} == {DATA: [(E.none, 3)],
                                           SECRET: [(E.topic_authorization_failed, -1)]}
        every = await call(broker, handle_offset_fetch, 9, FetchV8(groups=(
            OffsetFetchRequestGroup(group_id="g", topics=None),
            OffsetFetchRequestGroup(group_id="h", topics=(OffsetFetchRequestTopics(
                name=DATA, partition_indexes=(0,)),))), require_stable=False),
            context(8, *acls))
        mine, other = every.groups
        assert [(t.name, [p.committed_offset for p in t.partitions]) for t in mine.topics] == [
            (DATA, [3])]  # SECRET's offset is not shown
        assert (other.error_code, other.topics) == (E.group_authorization_failed, ())

    run(tmp_path, body)


def test_offset_delete_needs_delete_on_group_and_read_on_topics(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        await broker.engine.create_topic(SECRET, 1, {})
        await commit(broker, "g", DATA, 3)
        await commit(broker, "g", SECRET, 4)
        request = OffsetDeleteRequest(group_id="g", topics=tuple(
            OffsetDeleteRequestTopic(name=t, partitions=(OffsetDeleteRequestPartition(
                partition_index=0),)) for t in (DATA, SECRET)))
        refused = await call(broker, handle_offset_delete, 47, request,
                             context(0, allow(G, "g", Operation.READ),
                                     allow(T, "*", Operation.READ)))
        assert (refused.error_code, refused.topics) == (E.group_authorization_failed, ())
        answer = await call(broker, handle_offset_delete, 47, request, context(
            0, allow(G, "g", Operation.DELETE), allow(T, DATA, Operation.READ)))
        assert answer.error_code == E.none
        assert errors_of(answer) == {DATA: E.none, SECRET: E.topic_authorization_failed}
        assert committed(broker, "g") == {(SECRET, 0): 4}

    run(tmp_path, body)


def txn_commit(transactional_id: str, group: str, *topics: str) -> TxnOffsetCommitRequest:
    return TxnOffsetCommitRequest(
        transactional_id=transactional_id, group_id=group, producer_id=5, producer_epoch=0,
        generation_id=-1, member_id="", group_instance_id=None, topics=tuple(
            TxnOffsetCommitRequestTopic(name=t, partitions=(TxnOffsetCommitRequestPartition(
                partition_index=0, committed_offset=9, committed_leader_epoch=-1,
                committed_metadata=None),)) for t in topics))


def test_txn_offset_commit_checks_in_kafkas_order(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        await broker.engine.create_topic(SECRET, 1, {})
        request = txn_commit("tx", "g", DATA, SECRET)
        answer = await call(broker, handle_txn_offset_commit, 28, request, context(3))
        assert errors_of(answer) == dict.fromkeys((DATA, SECRET),
                                                  E.transactional_id_authorization_failed)
        answer = await call(broker, handle_txn_offset_commit, 28, request,
                            context(3, allow(X, "tx", Operation.WRITE)))
        assert errors_of(answer) == dict.fromkeys((DATA, SECRET), E.group_authorization_failed)
        answer = await call(broker, handle_txn_offset_commit, 28, request, context(
            3, allow(X, "tx", Operation.WRITE), allow(G, "g", Operation.READ),
            allow(T, DATA, Operation.READ)))
        # past authorization, the transaction check answers (no transaction here)
        assert errors_of(answer)[SECRET] == E.topic_authorization_failed
        assert errors_of(answer)[DATA] not in (E.none, E.topic_authorization_failed)
        assert not group_exists(broker, "g")

    run(tmp_path, body)


# -- KIP-848 groups --------------------------------------------------------------------------

def consumer_beat(group: str, names: tuple[str, ...] | None = None,
                  regex: str | None = None) -> ConsumerGroupHeartbeatRequest:
    return ConsumerGroupHeartbeatRequest(
        group_id=group, member_id="m-1", member_epoch=0, instance_id=None, rack_id=None,
        rebalance_timeout=timedelta(seconds=30), subscribed_topic_names=names,
        subscribed_topic_regex=regex, server_assignor=None, topic_partitions=())


def assigned_names(broker: Broker, answer: Any) -> set[str]:
    ids = {t.topic_id for t in answer.assignment.topic_partitions}
    return {info.name for info in map(broker.engine.topic_by_id, ids) if info is not None}


def test_consumer_group_heartbeat(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        for name in ("orders-eu", "orders-us"):
            await broker.engine.create_topic(name, 1, {})
        refused = await call(broker, handle_consumer_group_heartbeat, 68,
                             consumer_beat("g", (DATA,)),
                             context(1, allow(T, DATA, Operation.READ)))
        assert (refused.error_code, refused.member_id, refused.assignment) == (
            E.group_authorization_failed, None, None)
        reader = (allow(G, "g", Operation.READ), allow(T, "orders-eu", Operation.DESCRIBE))
        refused = await call(broker, handle_consumer_group_heartbeat, 68,
                             consumer_beat("g", ("orders-eu", "orders-us")), context(1, *reader))
        assert refused.error_code == E.topic_authorization_failed
        assert not group_exists(broker, "g")  # the member was not admitted
        joined = await call(broker, handle_consumer_group_heartbeat, 68,
                            consumer_beat("g", regex="orders-.*"), context(1, *reader))
        assert joined.error_code == E.none
        assert assigned_names(broker, joined) == {"orders-eu"}  # orders-us is hidden from it

    run(tmp_path, body)


def test_consumer_group_describe(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        await broker.engine.create_topic("orders-us", 1, {})
        for group, topic in (("g1", DATA), ("g2", "orders-us")):
            joined = await call(broker, handle_consumer_group_heartbeat, 68,
                                consumer_beat(group, (topic,)), context(1, allow(
                                    G, "*", Operation.READ), allow(T, "*", Operation.READ)))
            assert joined.error_code == E.none
        acls = (allow(G, "g", Operation.DESCRIBE, PRE), allow(T, DATA, Operation.DESCRIBE))
        described = await call(broker, handle_consumer_group_describe, 69,
                               ConsumerGroupDescribeRequest(
                                   group_ids=("g1", "g2", "h"),
                                   include_authorized_operations=True), context(0, *acls))
        g1, g2, h = described.groups
        assert (g1.error_code, len(g1.members)) == (E.none, 1)
        assert g1.authorized_operations == 1 << Operation.DESCRIBE
        assert (g2.error_code, g2.members, g2.error_message) == (
            E.topic_authorization_failed, (),
            "The group has described topic(s) that the client is not authorized to describe.")
        assert (h.error_code, h.authorized_operations) == (E.group_authorization_failed,
                                                           OPERATIONS_OMITTED)

    run(tmp_path, body)


# -- producer ids and transactions -----------------------------------------------------------

def init_pid(transactional_id: str | None) -> InitProducerIdRequest:
    return InitProducerIdRequest(transactional_id=transactional_id,
                                 transaction_timeout=timedelta(seconds=60))


@pytest.mark.parametrize("acls,allowed", [
    ((), False),
    ((allow(C, "kafka-cluster", Operation.IDEMPOTENT_WRITE),), True),
    ((allow(T, "out-", Operation.WRITE, PRE),), True),  # KIP-679: WRITE on some topic
    ((allow(T, "out-1", Operation.WRITE, host="10.9.9.9"),), False),  # another host's
    ((allow(T, "out-", Operation.READ, PRE),), False),  # READ is not WRITE
    ((allow(T, "out-1", Operation.ALL, principal="User:*"),), True),
    ((allow(T, "out-1", Operation.WRITE), deny(T, "out-1", Operation.WRITE)), False),
    ((allow(T, "out-1", Operation.WRITE), deny(T, "out", Operation.ALL, PRE)), False),
    ((allow(T, "out-1", Operation.WRITE), allow(T, "other", Operation.WRITE, PRE),
      deny(T, "out", Operation.ALL, PRE)), True),
    ((allow(T, "*", Operation.WRITE), deny(T, "out", Operation.WRITE, PRE)), True),
    ((allow(T, "*", Operation.WRITE), deny(T, "*", Operation.WRITE)), False),
    ((allow(T, "out-1", Operation.WRITE),
      deny(T, "out-1", Operation.WRITE, principal="User:bob")), True),
])
def test_an_idempotent_producer_needs_idempotent_write_or_some_topic_write(
        tmp_path: Path, acls: tuple[AclBinding, ...], allowed: bool) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        answer = await call(broker, handle_init_producer_id, 22, init_pid(None),
                            context(4, *acls))
        if allowed:
            assert (answer.error_code, answer.producer_epoch) == (E.none, 0)
            assert answer.producer_id >= 0
        else:
            assert (answer.error_code, answer.producer_id, answer.producer_epoch) == (
                E.cluster_authorization_failed, -1, -1)

    run(tmp_path, body)


def test_init_producer_id_for_a_transactional_id_and_super_users(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        refused = await call(broker, handle_init_producer_id, 22, init_pid("tx"),
                             context(4, allow(X, "tx", Operation.DESCRIBE)))
        assert (refused.error_code, refused.producer_id) == (
            E.transactional_id_authorization_failed, -1)
        assert TXN_TOPIC not in broker.engine.topics()
        answer = await call(broker, handle_init_producer_id, 22, init_pid("tx"),
                            context(4, allow(X, "tx", Operation.WRITE)))
        assert answer.error_code == E.none
        for request in (init_pid("tx-2"), init_pid(None)):  # a super user needs no ACL
            answer = await call(broker, handle_init_producer_id, 22, request,
                                context(4, deny(C, "kafka-cluster", Operation.ALL,
                                                principal="User:admin"), user="admin"))
            assert answer.error_code == E.none

    run(tmp_path, body)


def add_v3(transactional_id: str, pid: int, epoch: int,
           topics: dict[str, list[int]]) -> AddPartitionsV3:
    return AddPartitionsV3(v3_and_below_transactional_id=transactional_id,
                           v3_and_below_producer_id=pid, v3_and_below_producer_epoch=epoch,
                           v3_and_below_topics=tuple(AddTopicV3(name=t, partitions=tuple(ps))
                                                     for t, ps in topics.items()))


def partition_errors(answer: Any) -> dict[tuple[str, int], int]:
    return {(t.name, int(p.partition_index)): p.partition_error_code
            for t in answer.results_by_topic_v3_and_below for p in t.results_by_partition}


def test_transaction_apis(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        await broker.engine.create_topic(SECRET, 1, {})
        writer = (allow(X, "tx", Operation.WRITE), allow(T, DATA, Operation.WRITE))
        init = await call(broker, handle_init_producer_id, 22, init_pid("tx"),
                          context(4, *writer))
        pid, epoch = init.producer_id, init.producer_epoch
        refused = await call(broker, handle_add_partitions_to_txn, 24,
                             add_v3("tx", pid, epoch, {DATA: [0]}),
                             context(3, allow(T, DATA, Operation.WRITE)))
        assert partition_errors(refused) == {(DATA, 0): E.transactional_id_authorization_failed}
        refused = await call(broker, handle_add_partitions_to_txn, 24, add_v3(
            "tx", pid, epoch, {DATA: [0], SECRET: [0], "gone": [0], OFFSETS_TOPIC: [0]}),
            context(3, *writer, allow(T, "gone", Operation.WRITE),
                    allow(T, "__", Operation.WRITE, PRE)))
        assert partition_errors(refused) == {
            (DATA, 0): E.operation_not_attempted, (SECRET, 0): E.topic_authorization_failed,
            ("gone", 0): E.unknown_topic_or_partition,
            (OFFSETS_TOPIC, 0): E.topic_authorization_failed}  # never an internal topic
        added = await call(broker, handle_add_partitions_to_txn, 24,
                           add_v3("tx", pid, epoch, {DATA: [0]}), context(3, *writer))
        assert partition_errors(added) == {(DATA, 0): E.none}
        offsets = AddOffsetsToTxnRequest(transactional_id="tx", producer_id=pid,
                                         producer_epoch=epoch, group_id="g")
        answer = await call(broker, handle_add_offsets_to_txn, 25, offsets, context(
            3, allow(G, "g", Operation.READ)))
        assert answer.error_code == E.transactional_id_authorization_failed
        answer = await call(broker, handle_add_offsets_to_txn, 25, offsets, context(3, *writer))
        assert answer.error_code == E.group_authorization_failed
        # DescribeTransactions: DESCRIBE on the id; only the topics the principal may describe
        describe = DescribeTransactionsRequest(transactional_ids=("tx",))
        refused = await call(broker, handle_describe_transactions, 65, describe, context(0))
        assert [(s.error_code, s.topics) for s in refused.transaction_states] == [
            (E.transactional_id_authorization_failed, ())]
        seen = await call(broker, handle_describe_transactions, 65, describe,
                          context(0, allow(X, "tx", Operation.DESCRIBE)))
        assert [(s.error_code, s.transaction_state, s.topics)
                for s in seen.transaction_states] == [(E.none, "Ongoing", ())]
        seen = await call(broker, handle_describe_transactions, 65, describe, context(0, *writer))
        assert [t.topic for t in seen.transaction_states[0].topics] == [DATA]
        listing = ListTransactionsRequest(state_filters=(), producer_id_filters=())
        listed = await call(broker, handle_list_transactions, 66, listing, context(1))
        assert listed.transaction_states == ()
        listed = await call(broker, handle_list_transactions, 66, listing, context(1, *writer))
        assert [t.transactional_id for t in listed.transaction_states] == ["tx"]
        end = EndTxnRequest(transactional_id="tx", producer_id=pid, producer_epoch=epoch,
                            committed=True)
        refused = await call(broker, handle_end_txn, 26, end,
                             context(3, allow(X, "tx", Operation.DESCRIBE)))
        assert refused.error_code == E.transactional_id_authorization_failed
        still = await call(broker, handle_describe_transactions, 65, describe, context(0, *writer))
        assert still.transaction_states[0].transaction_state == "Ongoing"
        ended = await call(broker, handle_end_txn, 26, end, context(3, *writer))
        assert ended.error_code == E.none

    run(tmp_path, body)


def test_broker_to_broker_apis_need_cluster_rights(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        verify = AddPartitionsV5(transactions=(AddPartitionsToTxnTransaction(
            transactional_id="tx", producer_id=1, producer_epoch=0, verify_only=True,
            topics=(AddTopicV5(name=DATA, partitions=(0,)),)),))
        peer = "strom-broker-2"
        refused = await call(broker, handle_add_partitions_to_txn, 24, verify,
                             context(5, allow(X, "tx", Operation.WRITE), client_id=peer))
        assert (refused.error_code, refused.results_by_transaction) == (
            E.cluster_authorization_failed, ())
        answer = await call(broker, handle_add_partitions_to_txn, 24, verify, context(
            5, allow(C, "kafka-cluster", Operation.CLUSTER_ACTION), client_id=peer))
        assert answer.error_code == E.none
        markers = WriteTxnMarkersRequest(markers=(WritableTxnMarker(
            producer_id=1, producer_epoch=0, transaction_result=False, topics=(
                WritableTxnMarkerTopic(name=DATA, partition_indexes=(0,)),),
            coordinator_epoch=0),))
        refused = await call(broker, handle_write_txn_markers, 27, markers,
                             context(1, client_id=peer))  # a peer's client id is not enough
        assert refused.markers[0].topics[0].partitions[0].error_code == (
            E.cluster_authorization_failed)
        for right in (Operation.ALTER, Operation.CLUSTER_ACTION):
            answer = await call(broker, handle_write_txn_markers, 27, markers, context(
                1, allow(C, "kafka-cluster", right), client_id="tool"))
            assert answer.markers[0].topics[0].partitions[0].error_code == E.none

    run(tmp_path, body)


# -- SCRAM users -----------------------------------------------------------------------------

def test_scram_credentials_need_cluster_describe_and_alter(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        described = await call(broker, handle_describe_user_scram_credentials, 50,
                               DescribeUserScramCredentialsRequest(users=(UserName(name="bob"),)),
                               context(0, allow(C, "kafka-cluster", Operation.ALTER_CONFIGS)))
        assert (described.error_code, described.error_message) == (
            E.cluster_authorization_failed, "Cluster authorization failed.")
        assert [(r.user, r.error_code) for r in described.results] == [
            ("bob", E.cluster_authorization_failed)]
        upsert = AlterUserScramCredentialsRequest(deletions=(), upsertions=tuple(
            ScramCredentialUpsertion(name=name, mechanism=1, iterations=4096, salt=b"salt",
                                     salted_password=b"x" * 32) for name in ("zed", "bob")))
        refused = await call(broker, handle_alter_user_scram_credentials, 51, upsert,
                             context(0, allow(C, "kafka-cluster", Operation.DESCRIBE)))
        assert [(r.user, r.error_code, r.error_message) for r in refused.results] == [
            ("bob", E.cluster_authorization_failed, "Cluster authorization failed."),
            ("zed", E.cluster_authorization_failed, "Cluster authorization failed.")]
        assert await read_credentials(broker.engine) == {}
        altered = await call(broker, handle_alter_user_scram_credentials, 51, upsert,
                             context(0, allow(C, "kafka-cluster", Operation.ALTER)))
        assert [r.error_code for r in altered.results] == [E.none, E.none]
        described = await call(broker, handle_describe_user_scram_credentials, 50,
                               DescribeUserScramCredentialsRequest(users=None),
                               context(0, allow(C, "kafka-cluster", Operation.ALTER)))
        assert sorted(r.user for r in described.results) == ["bob", "zed"]  # ALTER implies it

    run(tmp_path, body)
