"""The data and admin handlers' authorization checks, called directly (no sockets) over a
MemoryEngine with a RequestContext that carries a principal and an authorizer: what each API
refuses, with Kafka's error codes (and messages), and that a refused request changes nothing.
Each answer is also encoded at its version."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kio.static.primitive import i16, i32Timedelta

from strom.broker.operations import CLUSTER_OPERATIONS, OPERATIONS_OMITTED, TOPIC_OPERATIONS
from strom.broker.registry import load_handlers
from strom.broker.state import Broker, RequestContext
from strom.config.broker import BrokerConfig
from strom.protocol.messages import ResponseBuilder, encode_response
from strom.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    Authorizer,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)
from strom.security.principal import KafkaPrincipal
from strom.security.session import SecurityProtocol, Session
from strom.storage.memory import MemoryEngine
from tests.unit.batch_factory import batch, make_batch
from tests.unit.test_handlers_admin import (
    TIMEOUT,
    E,
    alter_request,
    creatable,
    create,
    create_request,
    describe_request,
    list_offsets_request,
    produce,
    schema,
)
from tests.unit.test_handlers_replicas import elect_request, reassign_request

T = TypeVar("T")
PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS, OFFSET_FOR_LEADER_EPOCH = 19, 20, 21, 23
DESCRIBE_CONFIGS, ALTER_CONFIGS, ALTER_REPLICA_LOG_DIRS, DESCRIBE_LOG_DIRS = 32, 33, 34, 35
CREATE_PARTITIONS, ELECT_LEADERS, INCREMENTAL_ALTER_CONFIGS = 37, 43, 44
ALTER_REASSIGNMENTS, LIST_REASSIGNMENTS, DESCRIBE_QUORUM = 45, 46, 55
DESCRIBE_CLUSTER, DESCRIBE_PRODUCERS, LIST_CONFIG_RESOURCES, DESCRIBE_TOPIC_PARTITIONS = (
    60, 61, 74, 75)
ZERO_UUID = uuid.UUID(int=0)
ALICE = "User:alice"
TRANSACTIONAL = 0x10


def allow(rtype: ResourceType, name: str, op: Operation, principal: str = ALICE,
          pattern: PatternType = PatternType.LITERAL,
          permission: Permission = Permission.ALLOW) -> AclBinding:
    return AclBinding(rtype, name, pattern, principal, "*", op, permission)


def topic_acl(name: str, op: Operation, **kwargs: Any) -> AclBinding:
    return allow(ResourceType.TOPIC, name, op, **kwargs)


def cluster_acl(op: Operation) -> AclBinding:
    return allow(ResourceType.CLUSTER, CLUSTER_NAME, op)


def authorizer(*bindings: AclBinding) -> Authorizer:
    # A binding for someone else, so that no resource is "without ACLs" by accident.
    return Authorizer([*bindings, topic_acl("*", Operation.READ, principal="User:nobody")],
                      super_users=["User:admin"])


def run(tmp_path: Path, body: Callable[[Broker], Awaitable[T]]) -> T:
    async def main() -> T:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0, {}, "memory:")
        engine = MemoryEngine(config)
        await engine.open()
        try:
            broker = Broker(config, engine)
            await broker.register()
            return await body(broker)
        finally:
            await engine.close()

    return asyncio.run(main())


async def call(broker: Broker, key: int, version: int, request: Any,
               authz: Authorizer | None, principal: str = ALICE) -> Any:
    spec = load_handlers()[key]
    assert spec.serves(version)
    kind, _, name = principal.partition(":")
    session = Session("SASL_PLAINTEXT", SecurityProtocol.SASL_PLAINTEXT, "127.0.0.1",
                      principal=KafkaPrincipal(kind, name), authenticated=True)
    ctx = RequestContext("test-client", "127.0.0.1", version, 7, session, authz)
    response = await spec.handler(broker, ctx, request, ResponseBuilder(key, version))
    encode_response(key, version, 7, response)  # must serialize at this version
    return response


async def log_end(broker: Broker, topic: str, partition: int = 0) -> int:
    return (await broker.engine.partition(topic, partition).offsets()).log_end


# --- Metadata ------------------------------------------------------------------------------------


def metadata_request(version: int, names: Iterable[str] | None, auto_create: bool = True,
                     topic_ops: bool = False, cluster_ops: bool = False) -> Any:
    m = schema(METADATA, version)
    topics = None if names is None else tuple(
        m.MetadataRequestTopic(name=n, **({"topic_id": None} if version >= 10 else {}))
        for n in names)
    kwargs: dict[str, Any] = {}
    if version >= 4:
        kwargs["allow_auto_topic_creation"] = auto_create
    if version >= 8:
        kwargs["include_topic_authorized_operations"] = topic_ops
    if 8 <= version <= 10:
        kwargs["include_cluster_authorized_operations"] = cluster_ops
    return m.MetadataRequest(topics=topics, **kwargs)


def listed(response: Any) -> list[tuple[str | None, int]]:
    return [(t.name, t.error_code) for t in response.topics]


def test_metadata_lists_only_describable_topics(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("a-", Operation.DESCRIBE, pattern=PatternType.PREFIXED),
                       topic_acl("b-2", Operation.WRITE))  # WRITE implies DESCRIBE

    async def body(broker: Broker) -> list[Any]:
        for name in ("a-1", "a-2", "b-1", "b-2"):
            await create(broker, name)
        return [listed(await call(broker, METADATA, 12, metadata_request(12, None), a, p))
                for a, p in ((authz, ALICE), (authz, "User:admin"), (None, ALICE),
                             (authz, "User:mallory"))]

    alice, admin, open_broker, mallory = run(tmp_path, body)
    assert alice == [("a-1", E.none), ("a-2", E.none), ("b-2", E.none)]
    assert admin == open_broker == [(n, E.none) for n in ("a-1", "a-2", "b-1", "b-2")]
    assert mallory == []


@pytest.mark.parametrize("version", [1, 4, 9, 12, 13])
def test_metadata_refuses_named_topics_without_telling_whether_they_exist(
        tmp_path: Path, version: int) -> None:
    authz = authorizer(topic_acl("seen", Operation.DESCRIBE))

    async def body(broker: Broker) -> tuple[Any, bool]:
        await create(broker, "hidden")
        await create(broker, "seen")
        response = await call(broker, METADATA, version,
                              metadata_request(version, ["hidden", "nowhere", "seen"]), authz)
        return response, "nowhere" in broker.engine.topics()

    response, created = run(tmp_path, body)
    assert [t.name for t in response.topics] == ["hidden", "nowhere", "seen"]
    hidden, nowhere, seen = response.topics
    for refused in (hidden, nowhere):  # the same answer for a topic and for no topic
        assert (refused.error_code, getattr(refused, "is_internal", False),
                refused.partitions) == (E.topic_authorization_failed, False, ())
        assert getattr(refused, "topic_id", None) in (None, ZERO_UUID)
    assert (seen.name, seen.error_code, len(seen.partitions)) == ("seen", E.none, 1)
    assert not created


def test_metadata_by_topic_id_refuses_with_the_id_and_no_name(tmp_path: Path) -> None:
    authz = authorizer()

    async def body(broker: Broker) -> Any:
        topic_id = await create(broker, "secret")
        m = schema(METADATA, 12)
        request = m.MetadataRequest(topics=(m.MetadataRequestTopic(topic_id=topic_id,
                                                                   name=None),),
                                    allow_auto_topic_creation=False,
                                    include_topic_authorized_operations=False)
        return topic_id, await call(broker, METADATA, 12, request, authz)

    topic_id, response = run(tmp_path, body)
    [refused] = response.topics
    assert (refused.name, refused.topic_id, refused.error_code, refused.partitions) == (
        None, topic_id, E.topic_authorization_failed, ())


@pytest.mark.parametrize("grant", ["none", "topic", "prefix", "cluster"])
def test_metadata_auto_creation_needs_create_on_the_cluster_or_the_topic(
        tmp_path: Path, grant: str) -> None:
    bindings = [topic_acl("new", Operation.DESCRIBE)]
    if grant == "topic":
        bindings.append(topic_acl("new", Operation.CREATE))
    elif grant == "prefix":
        bindings.append(topic_acl("ne", Operation.CREATE, pattern=PatternType.PREFIXED))
    elif grant == "cluster":
        bindings.append(cluster_acl(Operation.CREATE))
    authz = authorizer(*bindings)

    async def body(broker: Broker) -> tuple[int, bool]:
        response = await call(broker, METADATA, 9, metadata_request(9, ["new"]), authz)
        return response.topics[0].error_code, "new" in broker.engine.topics()

    error, created = run(tmp_path, body)
    if grant == "none":
        assert (error, created) == (E.topic_authorization_failed, False)
    else:
        assert (error, created) == (E.none, True)


def test_metadata_without_auto_creation_needs_no_create(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("new", Operation.DESCRIBE))

    async def body(broker: Broker) -> tuple[int, bool]:
        response = await call(broker, METADATA, 9,
                              metadata_request(9, ["new"], auto_create=False), authz)
        return response.topics[0].error_code, "new" in broker.engine.topics()

    assert run(tmp_path, body) == (E.unknown_topic_or_partition, False)


def test_metadata_authorized_operations_come_from_the_authorizer(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("t", Operation.READ), topic_acl("t", Operation.ALTER_CONFIGS),
                       cluster_acl(Operation.DESCRIBE), cluster_acl(Operation.CREATE))
    bits = sum(1 << op for op in (Operation.READ, Operation.DESCRIBE, Operation.ALTER_CONFIGS,
                                  Operation.DESCRIBE_CONFIGS))

    async def body(broker: Broker) -> list[Any]:
        await create(broker, "t")
        request = metadata_request(10, ["t", "u"], auto_create=False, topic_ops=True,
                                   cluster_ops=True)
        return [await call(broker, METADATA, 10, request, a, p)
                for a, p in ((authz, ALICE), (authorizer(), ALICE), (None, ALICE))]

    alice, nobody, open_broker = run(tmp_path, body)
    t, u = alice.topics
    assert (t.error_code, t.topic_authorized_operations) == (E.none, bits)
    assert (u.error_code, u.topic_authorized_operations) == (E.topic_authorization_failed,
                                                              OPERATIONS_OMITTED)
    assert alice.cluster_authorized_operations == (1 << Operation.DESCRIBE) | (
        1 << Operation.CREATE)
    assert nobody.cluster_authorized_operations == 0  # no DESCRIBE on the cluster
    assert [x.topic_authorized_operations for x in open_broker.topics] == [TOPIC_OPERATIONS] * 2
    assert open_broker.cluster_authorized_operations == CLUSTER_OPERATIONS


def test_operations_without_an_authorizer_are_kafkas_supported_operations() -> None:
    # AclEntry.supportedOperations: CLUSTER has no token operations (those are USER's).
    assert sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12)) == CLUSTER_OPERATIONS
    assert sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11)) == TOPIC_OPERATIONS


# --- Produce -------------------------------------------------------------------------------------


def produce_request(topics: dict[str, int], transactional_id: str | None = None,
                    attributes: int = 0, producer_id: int = -1, acks: int = 1) -> Any:
    m = schema(PRODUCE, 9)
    records = bytes(make_batch(2, attributes=attributes, producer_id=producer_id,
                               producer_epoch=0 if producer_id >= 0 else -1,
                               base_sequence=0 if producer_id >= 0 else -1))
    return m.ProduceRequest(
        transactional_id=transactional_id, acks=i16(acks),
        timeout=i32Timedelta.parse(timedelta(seconds=5)),
        topic_data=tuple(m.TopicProduceData(name=name, partition_data=tuple(
            m.PartitionProduceData(index=i, records=records) for i in range(count)))
            for name, count in topics.items()))


def produced(response: Any) -> dict[tuple[str, int], int]:
    return {(t.name, p.index): p.error_code for t in response.responses
            for p in t.partition_responses}


def test_produce_needs_write_on_each_topic(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("open", Operation.WRITE),
                       topic_acl("shut", Operation.DESCRIBE))

    async def body(broker: Broker) -> tuple[dict[Any, int], list[int]]:
        await create(broker, "open")
        await create(broker, "shut", 2)
        response = await call(broker, PRODUCE, 9,
                              produce_request({"open": 1, "shut": 2, "nowhere": 1}), authz)
        return produced(response), [await log_end(broker, t, p)
                                    for t, p in (("open", 0), ("shut", 0), ("shut", 1))]

    errors, ends = run(tmp_path, body)
    assert errors == {("open", 0): E.none, ("shut", 0): E.topic_authorization_failed,
                      ("shut", 1): E.topic_authorization_failed,
                      ("nowhere", 0): E.topic_authorization_failed}
    assert ends == [2, 0, 0]  # nothing appended where refused


def test_idempotent_produce_needs_no_idempotent_write(tmp_path: Path) -> None:
    """Kafka checks IDEMPOTENT_WRITE in InitProducerId, not in Produce."""
    authz = authorizer(topic_acl("t", Operation.WRITE))

    async def body(broker: Broker) -> dict[Any, int]:
        await create(broker, "t")
        return produced(await call(broker, PRODUCE, 9,
                                   produce_request({"t": 1}, producer_id=7), authz))

    assert run(tmp_path, body) == {("t", 0): E.none}


@pytest.mark.parametrize("txn_id", [None, "other-txn"])
def test_transactional_produce_needs_write_on_the_transactional_id(
        tmp_path: Path, txn_id: str | None) -> None:
    authz = authorizer(topic_acl("t", Operation.WRITE),
                       allow(ResourceType.TRANSACTIONAL_ID, "my-txn", Operation.WRITE))

    async def body(broker: Broker) -> tuple[Any, int]:
        await create(broker, "t", 2)
        response = await call(broker, PRODUCE, 9, produce_request(
            {"t": 2}, transactional_id=txn_id, attributes=TRANSACTIONAL, producer_id=5), authz)
        return response, await log_end(broker, "t", 0) + await log_end(broker, "t", 1)

    response, appended = run(tmp_path, body)
    assert produced(response) == {("t", 0): E.transactional_id_authorization_failed,
                                  ("t", 1): E.transactional_id_authorization_failed}
    assert all(p.base_offset == -1 for t in response.responses for p in t.partition_responses)
    assert appended == 0


def test_a_transactional_id_allowed_passes_to_the_topic_check(tmp_path: Path) -> None:
    authz = authorizer(allow(ResourceType.TRANSACTIONAL_ID, "my-txn", Operation.WRITE))

    async def body(broker: Broker) -> dict[Any, int]:
        await create(broker, "t")
        return produced(await call(broker, PRODUCE, 9, produce_request(
            {"t": 1}, transactional_id="my-txn", attributes=TRANSACTIONAL, producer_id=5),
            authz))

    assert run(tmp_path, body) == {("t", 0): E.topic_authorization_failed}


# --- Fetch ---------------------------------------------------------------------------------------


def fetch_request(topics: dict[str, int], replica_id: int = -1, max_wait_ms: int = 5000) -> Any:
    m = schema(FETCH, 12)
    return m.FetchRequest(
        cluster_id=None, replica_id=replica_id, max_wait=timedelta(milliseconds=max_wait_ms),
        min_bytes=1_000_000, max_bytes=1_000_000, isolation_level=0, session_id=0,
        session_epoch=-1, forgotten_topics_data=(), rack_id="",
        topics=tuple(m.FetchTopic(topic=name, partitions=tuple(
            m.FetchPartition(partition=i, current_leader_epoch=-1, fetch_offset=0,
                             last_fetched_epoch=-1, log_start_offset=-1,
                             partition_max_bytes=1_000_000) for i in range(count)))
            for name, count in topics.items()))


def fetched(response: Any) -> dict[tuple[str, int], tuple[int, int]]:
    return {(t.topic, p.partition_index): (p.error_code, len(p.records or b""))
            for t in response.responses for p in t.partitions}


def test_fetch_needs_read_and_refused_topics_get_no_data(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("open", Operation.READ), topic_acl("shut", Operation.WRITE))

    async def body(broker: Broker) -> tuple[Any, float]:
        await create(broker, "open")
        await create(broker, "shut")
        await produce(broker, "open")
        await produce(broker, "shut")
        started = time.monotonic()
        response = await call(broker, FETCH, 12, fetch_request({"shut": 1}), authz)
        refused_s = time.monotonic() - started
        both = await call(broker, FETCH, 12, fetch_request({"open": 1, "shut": 1}, max_wait_ms=0),
                          authz)
        return (fetched(response), fetched(both)), refused_s

    (refused, both), refused_s = run(tmp_path, body)
    assert refused == {("shut", 0): (E.topic_authorization_failed, 0)}
    assert refused_s < 2  # nothing it may read: answered at once, not after max_wait
    (error, size) = both[("open", 0)]
    assert error == E.none and size > 0
    assert both[("shut", 0)] == (E.topic_authorization_failed, 0)


def test_a_follower_fetch_needs_cluster_action(tmp_path: Path) -> None:
    async def body(broker: Broker) -> list[Any]:
        await create(broker, "t")
        await produce(broker, "t")
        request = fetch_request({"t": 1}, replica_id=1, max_wait_ms=0)
        return [fetched(await call(broker, FETCH, 12, request, authz))
                for authz in (authorizer(topic_acl("t", Operation.READ)),
                              authorizer(cluster_acl(Operation.CLUSTER_ACTION)))]

    reader, replica = run(tmp_path, body)
    assert reader == {("t", 0): (E.topic_authorization_failed, 0)}
    assert replica[("t", 0)][0] == E.none and replica[("t", 0)][1] > 0


# --- ListOffsets, OffsetForLeaderEpoch, DeleteRecords, DescribeProducers ------------------------


def test_list_offsets_needs_describe(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("seen", Operation.DESCRIBE))

    async def body(broker: Broker) -> Any:
        for name in ("seen", "hidden"):
            await create(broker, name)
            await produce(broker, name)
        return await call(broker, LIST_OFFSETS, 7, list_offsets_request(
            7, {"seen": [(0, -1)], "hidden": [(0, -1)], "nowhere": [(0, -1)]}), authz)

    response = run(tmp_path, body)
    answers = {t.name: [(p.error_code, p.offset) for p in t.partitions] for t in response.topics}
    assert answers == {"seen": [(E.none, 3)], "hidden": [(E.topic_authorization_failed, -1)],
                       "nowhere": [(E.topic_authorization_failed, -1)]}


def epoch_request(topics: Iterable[str]) -> Any:
    m = schema(OFFSET_FOR_LEADER_EPOCH, 4)
    return m.OffsetForLeaderEpochRequest(replica_id=-1, topics=tuple(
        m.OffsetForLeaderTopic(topic=name, partitions=(m.OffsetForLeaderPartition(
            partition=0, current_leader_epoch=-1, leader_epoch=0),)) for name in topics))


def test_offset_for_leader_epoch_needs_describe_or_cluster_action(tmp_path: Path) -> None:
    async def body(broker: Broker) -> list[list[tuple[str, int]]]:
        for name in ("seen", "hidden"):
            await create(broker, name)
        answers = []
        for authz in (authorizer(topic_acl("seen", Operation.DESCRIBE)),
                      authorizer(cluster_acl(Operation.CLUSTER_ACTION))):
            response = await call(broker, OFFSET_FOR_LEADER_EPOCH, 4,
                                  epoch_request(["seen", "hidden"]), authz)
            answers.append([(t.topic, t.partitions[0].error_code) for t in response.topics])
        return answers

    consumer, replica = run(tmp_path, body)
    assert consumer == [("seen", E.none), ("hidden", E.topic_authorization_failed)]
    assert replica == [("seen", E.none), ("hidden", E.none)]


def test_delete_records_needs_delete_and_deletes_nothing_refused(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("mine", Operation.DELETE), topic_acl("yours", Operation.READ))

    async def body(broker: Broker) -> tuple[Any, list[int]]:
        for name in ("mine", "yours"):
            await create(broker, name)
            await produce(broker, name)
        m = schema(DELETE_RECORDS, 2)
        request = m.DeleteRecordsRequest(timeout=TIMEOUT, topics=tuple(
            m.DeleteRecordsTopic(name=n, partitions=(m.DeleteRecordsPartition(
                partition_index=0, offset=2),)) for n in ("mine", "yours")))
        response = await call(broker, DELETE_RECORDS, 2, request, authz)
        starts = [(await broker.engine.partition(n, 0).offsets()).log_start
                  for n in ("mine", "yours")]
        return response, starts

    response, starts = run(tmp_path, body)
    assert [(t.name, t.partitions[0].error_code, t.partitions[0].low_watermark)
            for t in response.topics] == [("mine", E.none, 2),
                                          ("yours", E.topic_authorization_failed, -1)]
    assert starts == [2, 0]


def test_describe_producers_needs_read(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("mine", Operation.READ))

    async def body(broker: Broker) -> Any:
        for name in ("mine", "yours"):
            await create(broker, name)
            await broker.engine.partition(name, 0).append([batch(1, producer_id=3,
                                                                 producer_epoch=0,
                                                                 base_sequence=0)])
        m = schema(DESCRIBE_PRODUCERS, 0)
        return await call(broker, DESCRIBE_PRODUCERS, 0, m.DescribeProducersRequest(topics=tuple(
            m.TopicRequest(name=n, partition_indexes=(0,)) for n in ("mine", "yours"))), authz)

    response = run(tmp_path, body)
    mine, yours = (t.partitions[0] for t in response.topics)
    assert mine.error_code == E.none
    assert (yours.error_code, yours.error_message, yours.active_producers) == (
        E.topic_authorization_failed, "Topic authorization failed.", ())


# --- CreateTopics, DeleteTopics, CreatePartitions ------------------------------------------------


def test_create_topics_needs_create_and_describe_configs_for_the_configs(
        tmp_path: Path) -> None:
    authz = authorizer(topic_acl("ok-", Operation.CREATE, pattern=PatternType.PREFIXED),
                       topic_acl("ok-seen", Operation.DESCRIBE_CONFIGS))
    m = schema(CREATE_TOPICS, 7)
    request = create_request(7, [creatable(m, "ok-seen", 2), creatable(m, "ok-blind", 3),
                                 creatable(m, "no"), creatable(m, "dup"), creatable(m, "dup")])

    async def body(broker: Broker) -> tuple[Any, set[str]]:
        response = await call(broker, CREATE_TOPICS, 7, request, authz)
        return response, set(broker.engine.topics())

    response, topics = run(tmp_path, body)
    results = {t.name: t for t in response.topics}
    seen, blind, no = results["ok-seen"], results["ok-blind"], results["no"]
    assert (seen.error_code, seen.num_partitions, seen.topic_config_error_code) == (
        E.none, 2, E.none)
    assert seen.configs
    assert (blind.error_code, blind.num_partitions, blind.replication_factor,
            blind.topic_config_error_code, blind.configs) == (
        E.none, -1, -1, E.topic_authorization_failed, ())
    assert blind.topic_id.int != 0
    assert (no.error_code, no.error_message) == (E.topic_authorization_failed,
                                                 "Authorization failed.")
    assert results["dup"].error_code == E.invalid_request
    assert topics == {"ok-seen", "ok-blind"}  # nothing else created


def test_create_topics_with_create_on_the_cluster(tmp_path: Path) -> None:
    authz = authorizer(cluster_acl(Operation.CREATE))
    m = schema(CREATE_TOPICS, 7)

    async def body(broker: Broker) -> tuple[Any, set[str]]:
        response = await call(broker, CREATE_TOPICS, 7,
                              create_request(7, [creatable(m, "any")]), authz)
        return response, set(broker.engine.topics())

    response, topics = run(tmp_path, body)
    [result] = response.topics
    # Created, but DESCRIBE_CONFIGS on the topic is not implied by CREATE on the cluster.
    assert (result.error_code, result.topic_config_error_code) == (
        E.none, E.topic_authorization_failed)
    assert topics == {"any"}


def delete_request(names: Iterable[str] = (), ids: Iterable[Any] = ()) -> Any:
    m = schema(DELETE_TOPICS, 6)
    return m.DeleteTopicsRequest(timeout=TIMEOUT, topics=tuple(
        [m.DeleteTopicState(name=n, topic_id=None) for n in names]
        + [m.DeleteTopicState(name=None, topic_id=i) for i in ids]))


def test_delete_topics_by_name(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("mine", Operation.DELETE),
                       topic_acl("seen", Operation.DESCRIBE),
                       topic_acl("seen-gone", Operation.DESCRIBE))

    async def body(broker: Broker) -> tuple[Any, set[str]]:
        for name in ("mine", "seen", "hidden"):
            await create(broker, name)
        response = await call(broker, DELETE_TOPICS, 6, delete_request(
            ["mine", "seen", "hidden", "hidden-gone", "seen-gone"]), authz)
        return response, set(broker.engine.topics())

    response, left = run(tmp_path, body)
    answers = {r.name: (r.error_code, r.error_message) for r in response.responses}
    refused = (E.topic_authorization_failed, "Topic authorization failed.")
    assert answers == {
        "mine": (E.none, None), "seen": refused,
        "hidden": refused, "hidden-gone": refused,  # no DESCRIBE: existence untold
        "seen-gone": (E.unknown_topic_or_partition,
                      "This server does not host this topic-partition.")}
    assert left == {"seen", "hidden"}


def test_delete_topics_by_id_names_the_topic_only_to_who_may_describe_it(
        tmp_path: Path) -> None:
    authz = authorizer(topic_acl("seen", Operation.DESCRIBE))

    async def body(broker: Broker) -> tuple[list[Any], Any, set[str]]:
        ids = [await create(broker, name) for name in ("seen", "hidden")]
        response = await call(broker, DELETE_TOPICS, 6, delete_request(ids=ids), authz)
        return ids, response, set(broker.engine.topics())

    (seen_id, hidden_id), response, left = run(tmp_path, body)
    answers = {r.topic_id: (r.name, r.error_code) for r in response.responses}
    assert answers == {seen_id: ("seen", E.topic_authorization_failed),
                       hidden_id: (None, E.topic_authorization_failed)}
    assert left == {"seen", "hidden"}


def test_create_partitions_needs_alter(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("mine", Operation.ALTER), topic_acl("yours", Operation.WRITE))

    async def body(broker: Broker) -> tuple[Any, list[int]]:
        for name in ("mine", "yours"):
            await create(broker, name)
        m = schema(CREATE_PARTITIONS, 3)
        request = m.CreatePartitionsRequest(timeout=TIMEOUT, validate_only=False, topics=tuple(
            m.CreatePartitionsTopic(name=n, count=3, assignments=None)
            for n in ("mine", "yours")))
        response = await call(broker, CREATE_PARTITIONS, 3, request, authz)
        return response, [broker.engine.topics()[n].partitions for n in ("mine", "yours")]

    response, counts = run(tmp_path, body)
    assert [(r.name, r.error_code, r.error_message) for r in response.results] == [
        ("mine", E.none, None), ("yours", E.topic_authorization_failed, None)]
    assert counts == [3, 1]


# --- configs -------------------------------------------------------------------------------------


def test_describe_configs_needs_describe_configs(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("mine", Operation.ALTER_CONFIGS))  # implies DESCRIBE_CONFIGS

    async def body(broker: Broker) -> Any:
        for name in ("mine", "yours"):
            await create(broker, name)
        return await call(broker, DESCRIBE_CONFIGS, 4, describe_request(
            4, [(2, "mine", None), (2, "yours", None), (4, "1", None)]), authz)

    mine, yours, node = run(tmp_path, body).results
    assert mine.error_code == E.none and mine.configs
    assert (yours.error_code, yours.error_message, yours.configs) == (
        E.topic_authorization_failed, "Topic authorization failed.", ())
    assert (node.error_code, node.error_message, node.configs) == (
        E.cluster_authorization_failed, "Cluster authorization failed.", ())


def test_alter_configs_need_alter_configs_and_change_nothing_refused(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("mine", Operation.ALTER_CONFIGS),
                       topic_acl("yours", Operation.DESCRIBE_CONFIGS))

    async def body(broker: Broker) -> tuple[Any, Any, dict[str, str]]:
        for name in ("mine", "yours"):
            await create(broker, name)
        legacy = await call(broker, ALTER_CONFIGS, 2, alter_request(2, [
            (2, "mine", {"retention.ms": "1000"}), (2, "yours", {"retention.ms": "1000"}),
            (4, "1", {"log.retention.ms": "5"})]), authz)
        m = schema(INCREMENTAL_ALTER_CONFIGS, 1)
        incremental = await call(broker, INCREMENTAL_ALTER_CONFIGS, 1,
                                 m.IncrementalAlterConfigsRequest(validate_only=False,
                                                                  resources=tuple(
            m.AlterConfigsResource(resource_type=2, resource_name=n, configs=(
                m.AlterableConfig(name="retention.ms", config_operation=0, value="2000"),))
            for n in ("mine", "yours"))), authz)
        return legacy, incremental, dict(broker.engine.topics()["yours"].configs)

    legacy, incremental, yours = run(tmp_path, body)
    assert [(r.resource_name, r.error_code, r.error_message) for r in legacy.responses] == [
        ("mine", E.none, None),
        ("yours", E.topic_authorization_failed, "Topic authorization failed."),
        ("1", E.cluster_authorization_failed, "Cluster authorization failed.")]
    assert [(r.resource_name, r.error_code) for r in incremental.responses] == [
        ("mine", E.none), ("yours", E.topic_authorization_failed)]
    assert yours == {}


def test_list_config_resources_needs_describe_configs_on_the_cluster(tmp_path: Path) -> None:
    async def body(broker: Broker) -> list[Any]:
        await create(broker, "t")
        m = schema(LIST_CONFIG_RESOURCES, 1)
        request = m.ListConfigResourcesRequest(resource_types=())
        return [await call(broker, LIST_CONFIG_RESOURCES, 1, request, a)
                for a in (authorizer(), authorizer(cluster_acl(Operation.DESCRIBE_CONFIGS)))]

    refused, allowed = run(tmp_path, body)
    assert (refused.error_code, refused.config_resources) == (E.cluster_authorization_failed, ())
    assert allowed.error_code == E.none and allowed.config_resources


# --- cluster APIs --------------------------------------------------------------------------------


def test_describe_cluster_answers_everyone_with_the_authorized_operations(
        tmp_path: Path) -> None:
    m = schema(DESCRIBE_CLUSTER, 1)
    request = m.DescribeClusterRequest(include_cluster_authorized_operations=True,
                                       endpoint_type=1)

    async def body(broker: Broker) -> list[Any]:
        return [await call(broker, DESCRIBE_CLUSTER, 1, request, a)
                for a in (authorizer(), authorizer(cluster_acl(Operation.ALTER)))]

    nobody, alterer = run(tmp_path, body)
    assert (nobody.error_code, nobody.cluster_authorized_operations) == (E.none, 0)
    assert len(nobody.brokers) == 1
    assert alterer.cluster_authorized_operations == (1 << Operation.ALTER) | (
        1 << Operation.DESCRIBE)


def test_describe_log_dirs_needs_describe_on_the_cluster(tmp_path: Path) -> None:
    m = schema(DESCRIBE_LOG_DIRS, 4)

    async def body(broker: Broker) -> list[Any]:
        await create(broker, "t")
        return [await call(broker, DESCRIBE_LOG_DIRS, 4, m.DescribeLogDirsRequest(topics=None),
                           a) for a in (authorizer(), authorizer(cluster_acl(Operation.DESCRIBE)))]

    refused, allowed = run(tmp_path, body)
    assert (refused.error_code, refused.results) == (E.cluster_authorization_failed, ())
    assert allowed.error_code == E.none and len(allowed.results) == 1


def test_describe_topic_partitions_shows_only_describable_topics(tmp_path: Path) -> None:
    authz = authorizer(topic_acl("a", Operation.READ))
    m = schema(DESCRIBE_TOPIC_PARTITIONS, 0)

    async def body(broker: Broker) -> list[Any]:
        for name in ("a", "b"):
            await create(broker, name)
        every = m.DescribeTopicPartitionsRequest(topics=(), response_partition_limit=100,
                                                 cursor=None)
        named = m.DescribeTopicPartitionsRequest(
            topics=tuple(m.TopicRequest(name=n) for n in ("b", "a", "c")),
            response_partition_limit=100, cursor=None)
        return [await call(broker, DESCRIBE_TOPIC_PARTITIONS, 0, r, authz)
                for r in (every, named)]

    every, named = run(tmp_path, body)
    read_ops = (1 << Operation.READ) | (1 << Operation.DESCRIBE)
    assert [(t.name, t.error_code, t.topic_authorized_operations) for t in every.topics] == [
        ("a", E.none, read_ops)]
    assert [(t.name, t.error_code, len(t.partitions)) for t in named.topics] == [
        ("a", E.none, 1), ("b", E.topic_authorization_failed, 0),
        ("c", E.topic_authorization_failed, 0)]


def test_replica_placement_and_quorum_apis_need_the_cluster(tmp_path: Path) -> None:
    async def body(broker: Broker) -> dict[str, Any]:
        await create(broker, "t")
        authz = authorizer(topic_acl("t", Operation.ALTER))  # not the cluster's
        lr = schema(LIST_REASSIGNMENTS, 0)
        rl = schema(ALTER_REPLICA_LOG_DIRS, 2)
        dq = schema(DESCRIBE_QUORUM, 2)
        return {
            "elect": await call(broker, ELECT_LEADERS, 2, elect_request(2, {"t": [0]}), authz),
            "reassign": await call(broker, ALTER_REASSIGNMENTS, 0,
                                   reassign_request(0, {("t", 0): [1]}), authz),
            "list": await call(broker, LIST_REASSIGNMENTS, 0, lr.ListPartitionReassignmentsRequest(
                timeout=TIMEOUT, topics=None), authz),
            "dirs": await call(broker, ALTER_REPLICA_LOG_DIRS, 2, rl.AlterReplicaLogDirsRequest(
                dirs=(rl.AlterReplicaLogDir(path=str(broker.config.log_dir), topics=(
                    rl.AlterReplicaLogDirTopic(name="t", partitions=(0,)),)),)), authz),
            "quorum": await call(broker, DESCRIBE_QUORUM, 2, dq.DescribeQuorumRequest(topics=(
                dq.TopicData(topic_name="__cluster_metadata", partitions=(
                    dq.PartitionData(partition_index=0),)),)), authz),
            "reassigned": broker.engine.assignment("t", 0).pinned,
        }

    got = run(tmp_path, body)
    cluster = E.cluster_authorization_failed
    elect = got["elect"]
    assert elect.error_code == cluster
    assert [(p.partition_id, p.error_code) for r in elect.replica_election_results
            for p in r.partition_result] == [(0, cluster)]
    reassign = got["reassign"]
    assert reassign.error_code == cluster and reassign.error_message
    assert [p.error_code for t in reassign.responses for p in t.partitions] == [cluster]
    assert got["reassigned"] is None  # nothing pinned
    assert (got["list"].error_code, got["list"].topics) == (cluster, ())
    assert [p.error_code for t in got["dirs"].results for p in t.partitions] == [cluster]
    assert (got["quorum"].error_code, got["quorum"].topics) == (cluster, ())
