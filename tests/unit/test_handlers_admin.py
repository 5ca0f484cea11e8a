"""The admin handlers called directly (no sockets) over a real LocalEngine, for several versions.

Every response is also encoded with the version's schema, so a field of the wrong type or a
missing field fails here rather than on the wire.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from kio.index import load_payload_module
from kio.static.constants import EntityType

from strom.broker.registry import load_handlers
from strom.broker.state import Broker, RequestContext
from strom.config.broker import BrokerConfig
from strom.config.topic import TOPIC_CONFIGS
from strom.protocol.messages import ErrorCode, ResponseBuilder, encode_response
from strom.storage.local.engine import LocalEngine
from strom.storage.local.meta_properties import load_or_create_cluster_id
from tests.unit.batch_factory import batch

T = TypeVar("T")
E = ErrorCode
TIMEOUT = timedelta(seconds=30)
NODE = 1

LIST_OFFSETS, CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS = 2, 19, 20, 21
OFFSET_FOR_LEADER_EPOCH, DESCRIBE_CONFIGS, ALTER_CONFIGS = 23, 32, 33
DESCRIBE_LOG_DIRS, CREATE_PARTITIONS, INCREMENTAL_ALTER_CONFIGS = 35, 37, 44
DESCRIBE_CLUSTER, DESCRIBE_TOPIC_PARTITIONS = 60, 75


def run(tmp_path: Path, body: Callable[[Broker], Awaitable[T]],
        settings: Mapping[str, str] | None = None) -> T:
    """Runs `body` with a Broker over a fresh LocalEngine in tmp_path, then closes the engine."""

    async def main() -> T:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0, dict(settings or {}))
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        try:
            broker = Broker(config, engine)
            await broker.register()
            return await body(broker)
        finally:
            await engine.close()

    return asyncio.run(main())


def schema(key: int, version: int) -> ModuleType:
    """The request classes of one API version."""
    return load_payload_module(key, version, EntityType.request)


async def call(broker: Broker, key: int, version: int, request: Any) -> Any:
    spec = load_handlers()[key]
    assert spec.serves(version)
    ctx = RequestContext("test-client", "127.0.0.1", version, 7)
    response = await spec.handler(broker, ctx, request, ResponseBuilder(key, version))
    encode_response(key, version, 7, response)  # must serialize at this version
    return response


async def create(broker: Broker, name: str, partitions: int = 1,
                 configs: Mapping[str, str] | None = None) -> uuid.UUID:
    info = await broker.engine.create_topic(name, partitions, dict(configs or {}))
    return info.topic_id


async def produce(broker: Broker, name: str, partition: int = 0, count: int = 3,
                  timestamps: list[int] | None = None) -> None:
    plog = broker.engine.partition(name, partition)
    await plog.append([batch(count, base_timestamp=1000, timestamps=timestamps)])


# --- registry ------------------------------------------------------------------------------------


def test_registered_versions() -> None:
    registry = load_handlers()
    expected = {
        LIST_OFFSETS: (1, 11), CREATE_TOPICS: (2, 7), DELETE_TOPICS: (1, 6),
        DELETE_RECORDS: (0, 2), OFFSET_FOR_LEADER_EPOCH: (2, 4), DESCRIBE_CONFIGS: (1, 4),
        ALTER_CONFIGS: (0, 2), DESCRIBE_LOG_DIRS: (1, 5), CREATE_PARTITIONS: (0, 3),
        INCREMENTAL_ALTER_CONFIGS: (0, 1), DESCRIBE_CLUSTER: (0, 2),
        DESCRIBE_TOPIC_PARTITIONS: (0, 0),
    }
    for key, (low, high) in expected.items():
        spec = registry[key]
        assert (spec.min_version, spec.max_version) == (low, high), spec.name
        for version in range(low, high + 1):
            load_payload_module(key, version, EntityType.request)  # kio has every version


# --- ListOffsets ---------------------------------------------------------------------------------


def list_offsets_request(version: int, topics: Mapping[str, list[tuple[int, int]]],
                         replica_id: int = -1, epoch: int = -1) -> Any:
    m = schema(LIST_OFFSETS, version)
    parts = {name: tuple(m.ListOffsetsPartition(partition_index=p, timestamp=ts,
                                                current_leader_epoch=epoch)
                         if version >= 4 else m.ListOffsetsPartition(partition_index=p,
                                                                     timestamp=ts)
                         for p, ts in entries)
             for name, entries in topics.items()}
    kwargs: dict[str, Any] = {"replica_id": replica_id}
    if version >= 2:
        kwargs["isolation_level"] = 1
    if version >= 10:
        kwargs["timeout"] = TIMEOUT
    return m.ListOffsetsRequest(
        topics=tuple(m.ListOffsetsTopic(name=n, partitions=p) for n, p in parts.items()),
        **kwargs)


def offsets_of(response: Any) -> dict[tuple[str, int], tuple[int, int, int, int]]:
    """(topic, partition) -> (error, offset, timestamp, leader_epoch or None)."""
    return {(t.name, p.partition_index): (p.error_code, p.offset, p.timestamp,
                                          getattr(p, "leader_epoch", None))
            for t in response.topics for p in t.partitions}


@pytest.mark.parametrize("version", [1, 4, 6, 9, 11])
def test_list_offsets_earliest_latest_and_by_time(tmp_path: Path, version: int) -> None:
    async def body(broker: Broker) -> dict[Any, Any]:
        await create(broker, "t", 2)
        await produce(broker, "t", 0, 3, timestamps=[1000, 3000, 2000])
        request = list_offsets_request(version, {"t": [(0, -2), (1, -1)],
                                                 "u": [(0, -1)]})
        first = offsets_of(await call(broker, LIST_OFFSETS, version, request))
        request = list_offsets_request(version, {"t": [(0, 1500)]})
        second = offsets_of(await call(broker, LIST_OFFSETS, version, request))
        request = list_offsets_request(version, {"t": [(0, 3001), (1, 0)]})
        third = offsets_of(await call(broker, LIST_OFFSETS, version, request))
        return {**first, **{("by", k): v for k, v in second.items()},
                **{("none", k): v for k, v in third.items()}}

    got = run(tmp_path, body)
    epoch = 0 if version >= 4 else None
    unknown_epoch = -1 if version >= 4 else None
    assert got[("t", 0)] == (E.none, 0, -1, epoch)
    assert got[("t", 1)] == (E.none, 0, -1, epoch)
    assert got[("u", 0)] == (E.unknown_topic_or_partition, -1, -1, unknown_epoch)
    assert got[("by", ("t", 0))] == (E.none, 1, 3000, epoch)  # first record at or after 1500
    assert got[("none", ("t", 0))] == (E.none, -1, -1, unknown_epoch)
    assert got[("none", ("t", 1))] == (E.none, -1, -1, unknown_epoch)  # empty partition


def test_list_offsets_special_timestamps_need_their_versions(tmp_path: Path) -> None:
    async def body(broker: Broker) -> list[Any]:
        await create(broker, "t")
        await produce(broker, "t", 0, 4, timestamps=[10, 40, 30, 20])
        await broker.engine.partition("t", 0).delete_records_before(1)
        results = []
        for version, ts in [(6, -3), (7, -3), (7, -4), (8, -4), (8, -5), (9, -5), (10, -6),
                            (11, -6), (11, -7), (11, -1), (11, -2)]:
            request = list_offsets_request(version, {"t": [(0, ts)]})
            response = offsets_of(await call(broker, LIST_OFFSETS, version, request))
            results.append(response[("t", 0)])
        return results

    got = run(tmp_path, body)
    assert got == [
        (E.unsupported_version, -1, -1, -1),  # max timestamp needs v7
        (E.none, 1, 40, 0),                   # -3: the record with the largest timestamp
        (E.unsupported_version, -1, -1, -1),  # earliest-local needs v8
        (E.none, 1, -1, 0),                   # -4: the log start offset
        (E.unsupported_version, -1, -1, -1),  # latest-tiered needs v9
        (E.none, -1, -1, -1),                 # -5: nothing is tiered
        (E.unsupported_version, -1, -1, -1),  # earliest-pending-upload needs v11
        (E.none, -1, -1, -1),                 # -6: nothing is tiered
        (E.unsupported_version, -1, -1, -1),  # not a special timestamp
        (E.none, 4, -1, 0),
        (E.none, 1, -1, 0),
    ]


def test_list_offsets_duplicates_and_leader_epochs(tmp_path: Path) -> None:
    async def body(broker: Broker) -> tuple[Any, Any, Any, Any]:
        await create(broker, "t", 2)
        dup = await call(broker, LIST_OFFSETS, 5,
                         list_offsets_request(5, {"t": [(0, -1), (0, -2), (1, -1)]}))
        ahead = await call(broker, LIST_OFFSETS, 5, list_offsets_request(5, {"t": [(0, -1)]},
                                                                         epoch=3))
        current = await call(broker, LIST_OFFSETS, 5, list_offsets_request(5, {"t": [(0, -1)]},
                                                                           epoch=0))
        replica = await call(broker, LIST_OFFSETS, 5,
                             list_offsets_request(5, {"t": [(1, -1)]}, replica_id=-2))
        return dup, ahead, current, replica

    dup, ahead, current, replica = run(tmp_path, body)
    assert [(p.partition_index, p.error_code) for p in dup.topics[0].partitions] == [
        (0, E.invalid_request), (1, E.none)]
    assert ahead.topics[0].partitions[0].error_code == E.unknown_leader_epoch
    assert current.topics[0].partitions[0].error_code == E.none
    assert replica.topics[0].partitions[0].offset == 0


# --- OffsetForLeaderEpoch ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3, 4])
def test_offset_for_leader_epoch(tmp_path: Path, version: int) -> None:
    async def body(broker: Broker) -> Any:
        await create(broker, "t")
        await produce(broker, "t", 0, 5)
        await broker.engine.partition("t", 0).delete_records_before(2)
        m = schema(OFFSET_FOR_LEADER_EPOCH, version)
        parts = tuple(m.OffsetForLeaderPartition(partition=p, current_leader_epoch=current,
                                                 leader_epoch=epoch)
                      for p, current, epoch in [(0, -1, 0), (0, 0, -1), (0, -1, 1),
                                                (0, -1, -2), (0, 1, 0), (3, -1, 0)])
        kwargs = {"replica_id": -1} if version >= 3 else {}
        request = m.OffsetForLeaderEpochRequest(
            topics=(m.OffsetForLeaderTopic(topic="t", partitions=parts),
                    m.OffsetForLeaderTopic(topic="missing", partitions=parts[:1])), **kwargs)
        return await call(broker, OFFSET_FOR_LEADER_EPOCH, version, request)

    response = run(tmp_path, body)
    got = [(p.error_code, p.leader_epoch, p.end_offset) for t in response.topics
           for p in t.partitions]
    assert got == [
        (E.none, 0, 5),                          # the current epoch ends at the log end offset
        (E.none, -1, -1),                        # undefined epoch
        (E.none, -1, -1),                        # a later epoch than ours
        (E.none, -2, 2),                         # before the first epoch: its start offset
        (E.unknown_leader_epoch, -1, -1),        # the client knows a later leader epoch
        (E.unknown_topic_or_partition, -1, -1),
        (E.unknown_topic_or_partition, -1, -1),
    ]


# --- CreateTopics --------------------------------------------------------------------------------


def creatable(m: ModuleType, name: str, partitions: int = 1, rf: int = 1,
              configs: Mapping[str, str | None] | None = None,
              assignments: list[tuple[int, list[int]]] | None = None) -> Any:
    return m.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=rf,
        assignments=tuple(m.CreatableReplicaAssignment(partition_index=i, broker_ids=tuple(ids))
                          for i, ids in (assignments or [])),
        configs=tuple(m.CreatableTopicConfig(name=k, value=v)
                      for k, v in (configs or {}).items()))


def create_request(version: int, topics: list[Any], validate_only: bool = False) -> Any:
    m = schema(CREATE_TOPICS, version)
    return m.CreateTopicsRequest(topics=tuple(topics), timeout=TIMEOUT,
                                 validate_only=validate_only)


def results_by_name(response: Any) -> dict[str, Any]:
    return {t.name: t for t in response.topics}


@pytest.mark.parametrize("version", [2, 4, 5, 7])
def test_create_topics_checks(tmp_path: Path, version: int) -> None:
    m = schema(CREATE_TOPICS, version)
    topics = [
        creatable(m, "ok", 2),
        creatable(m, "defaults", -1, -1),
        creatable(m, "bad name!"),
        creatable(m, "zero", 0),
        creatable(m, "negative", -2),
        creatable(m, "rf2", 1, 2),
        creatable(m, "rf0", 1, 0),
        creatable(m, "badconfig", configs={"retention.ms": "soon"}),
        creatable(m, "unknownconfig", configs={"no.such.config": "1"}),
        creatable(m, "nullconfig", configs={"retention.ms": None}),
        creatable(m, "exists"),
        creatable(m, "dup"),
        creatable(m, "dup", 3),
        creatable(m, "__cluster_metadata"),
        creatable(m, "a_b"),
    ]

    async def body(broker: Broker) -> tuple[Any, dict[str, int]]:
        await create(broker, "exists")
        await create(broker, "a.b")
        response = await call(broker, CREATE_TOPICS, version, create_request(version, topics))
        return response, {n: i.partitions for n, i in broker.engine.topics().items()}

    response, existing = run(tmp_path, body, {"num.partitions": "3"})
    got = results_by_name(response)
    assert len(response.topics) == len(topics) - 1  # one answer for the duplicated name
    codes = {name: r.error_code for name, r in got.items()}
    assert codes == {
        "ok": E.none, "defaults": E.none, "bad name!": E.invalid_topic_exception,
        "zero": E.invalid_partitions, "negative": E.invalid_partitions,
        "rf2": E.invalid_replication_factor, "rf0": E.invalid_replication_factor,
        "badconfig": E.invalid_config, "unknownconfig": E.invalid_config,
        "nullconfig": E.invalid_config, "exists": E.topic_already_exists,
        "dup": E.invalid_request, "__cluster_metadata": E.invalid_request,
        "a_b": E.invalid_topic_exception,
    }
    assert got["dup"].error_message == "Duplicate topic name."
    assert got["exists"].error_message == "Topic 'exists' already exists."
    assert "a.b" in got["a_b"].error_message
    assert "Unknown topic config name: no.such.config" in got["unknownconfig"].error_message
    assert existing == {"exists": 1, "a.b": 1, "ok": 2, "defaults": 3}
    if version >= 5:
        assert (got["ok"].num_partitions, got["ok"].replication_factor) == (2, 1)
        assert (got["defaults"].num_partitions, got["defaults"].replication_factor) == (3, 1)
        assert (got["zero"].num_partitions, got["zero"].configs) == (-1, ())
    if version >= 7:
        assert got["ok"].topic_id != uuid.UUID(int=0)
        assert got["zero"].topic_id == uuid.UUID(int=0)


def test_create_topics_returns_effective_configs(tmp_path: Path) -> None:
    m = schema(CREATE_TOPICS, 7)
    request = create_request(7, [creatable(m, "c", 1, -1, {"cleanup.policy": "compact"})])

    async def body(broker: Broker) -> tuple[Any, uuid.UUID]:
        response = await call(broker, CREATE_TOPICS, 7, request)
        return response, broker.engine.topics()["c"].topic_id

    response, topic_id = run(tmp_path, body, {"log.retention.ms": "1000"})
    result = response.topics[0]
    assert result.error_code == E.none and result.topic_id == topic_id
    configs = {c.name: (c.value, c.config_source, c.read_only, c.is_sensitive)
               for c in result.configs}
    assert set(configs) == set(TOPIC_CONFIGS)
    assert configs["cleanup.policy"] == ("compact", 1, False, False)
    assert configs["retention.ms"] == ("1000", 4, False, False)
    assert configs["segment.bytes"] == (TOPIC_CONFIGS["segment.bytes"].default, 5, False, False)
    assert [c.name for c in result.configs] == sorted(configs)


def test_create_topics_validate_only_creates_nothing(tmp_path: Path) -> None:
    m = schema(CREATE_TOPICS, 6)
    request = create_request(6, [creatable(m, "v", 4), creatable(m, "w", 0)],
                             validate_only=True)

    async def body(broker: Broker) -> tuple[Any, list[str]]:
        response = await call(broker, CREATE_TOPICS, 6, request)
        return response, list(broker.engine.topics())

    response, topics = run(tmp_path, body)
    assert [(t.name, t.error_code, t.num_partitions) for t in response.topics] == [
        ("v", E.none, 4), ("w", E.invalid_partitions, -1)]
    assert topics == []


def test_create_topics_manual_assignments(tmp_path: Path) -> None:
    m = schema(CREATE_TOPICS, 7)
    topics = [
        creatable(m, "good", -1, -1, assignments=[(1, [NODE]), (0, [NODE])]),
        creatable(m, "other-broker", -1, -1, assignments=[(0, [2])]),
        creatable(m, "twice", -1, -1, assignments=[(0, [NODE, NODE])]),
        creatable(m, "empty", -1, -1, assignments=[(0, [])]),
        creatable(m, "gap", -1, -1, assignments=[(0, [NODE]), (2, [NODE])]),
        creatable(m, "repeat", -1, -1, assignments=[(0, [NODE]), (0, [NODE])]),
        creatable(m, "with-count", 1, -1, assignments=[(0, [NODE])]),
        creatable(m, "with-rf", -1, 1, assignments=[(0, [NODE])]),
    ]

    async def body(broker: Broker) -> tuple[Any, dict[str, int]]:
        response = await call(broker, CREATE_TOPICS, 7, create_request(7, topics))
        return response, {n: i.partitions for n, i in broker.engine.topics().items()}

    response, existing = run(tmp_path, body)
    codes = {t.name: t.error_code for t in response.topics}
    assert codes == {
        "good": E.none, "other-broker": E.invalid_replica_assignment,
        "twice": E.invalid_replica_assignment, "empty": E.invalid_replica_assignment,
        "gap": E.invalid_replica_assignment, "repeat": E.invalid_replica_assignment,
        "with-count": E.invalid_request, "with-rf": E.invalid_request,
    }
    assert existing == {"good": 2}


def test_create_topics_too_many_partitions_is_a_policy_violation(tmp_path: Path) -> None:
    m = schema(CREATE_TOPICS, 7)
    request = create_request(7, [creatable(m, "big", 6000), creatable(m, "bigger", 6000)])

    async def body(broker: Broker) -> tuple[Any, int]:
        response = await call(broker, CREATE_TOPICS, 7, request)
        return response, len(broker.engine.topics())

    response, count = run(tmp_path, body)
    assert {t.error_code for t in response.topics} == {E.policy_violation}
    assert count == 0


# --- DeleteTopics --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 5])
def test_delete_topics_by_name(tmp_path: Path, version: int) -> None:
    m = schema(DELETE_TOPICS, version)
    request = m.DeleteTopicsRequest(topic_names=("a", "missing", "b", "b"), timeout=TIMEOUT)

    async def body(broker: Broker) -> tuple[Any, list[str]]:
        await create(broker, "a")
        await create(broker, "b")
        await create(broker, "__consumer_offsets")
        response = await call(broker, DELETE_TOPICS, version, request)
        internal = await call(broker, DELETE_TOPICS, version,
                              m.DeleteTopicsRequest(topic_names=("__consumer_offsets",),
                                                    timeout=TIMEOUT))
        # Its coordinator owns it (coordinator/internal_topics.py): never deleted.
        assert internal.responses[0].error_code == E.invalid_topic_exception
        return response, sorted(broker.engine.topics())

    response, left = run(tmp_path, body)
    assert [(r.name, r.error_code) for r in response.responses] == [
        ("a", E.none), ("missing", E.unknown_topic_or_partition), ("b", E.invalid_request)]
    assert left == ["__consumer_offsets", "b"]


def test_delete_topics_by_id(tmp_path: Path) -> None:
    m = schema(DELETE_TOPICS, 6)
    unknown = uuid.uuid4()
    zero = uuid.UUID(int=0)

    async def body(broker: Broker) -> tuple[Any, list[str], uuid.UUID]:
        a = await create(broker, "a")
        b = await create(broker, "b")
        c = await create(broker, "c")
        states = [(None, a), ("b", zero), (None, unknown), (None, zero), ("c", c),
                  (None, c), ("c", zero)]
        request = m.DeleteTopicsRequest(
            topics=tuple(m.DeleteTopicState(name=n, topic_id=i) for n, i in states),
            timeout=TIMEOUT)
        response = await call(broker, DELETE_TOPICS, 6, request)
        return response, sorted(broker.engine.topics()), b

    response, left, b_id = run(tmp_path, body)
    got = [(r.name, r.error_code) for r in response.responses]
    assert got[:5] == [("a", E.none), ("b", E.none), (None, E.unknown_topic_id),
                       (None, E.invalid_request), ("c", E.invalid_request)]
    assert response.responses[1].topic_id == b_id
    # Topic c was named and given by id: Kafka refuses the ambiguous pair.
    assert {code for _, code in got[5:]} == {E.invalid_request}
    assert left == ["c"]


# --- CreatePartitions ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 3])
def test_create_partitions(tmp_path: Path, version: int) -> None:
    m = schema(CREATE_PARTITIONS, version)

    def grow(name: str, count: int, assignments: list[list[int]] | None = None) -> Any:
        return m.CreatePartitionsTopic(
            name=name, count=count,
            assignments=None if assignments is None else tuple(
                m.CreatePartitionsAssignment(broker_ids=tuple(a)) for a in assignments))

    async def body(broker: Broker) -> tuple[Any, Any, dict[str, int]]:
        for name in ("grow", "same", "shrink", "dry", "assigned", "miscount", "elsewhere"):
            await create(broker, name, 2)
        request = m.CreatePartitionsRequest(topics=(
            grow("grow", 4), grow("same", 2), grow("shrink", 1), grow("missing", 3),
            grow("assigned", 3, [[NODE]]), grow("miscount", 4, [[NODE]]),
            grow("elsewhere", 3, [[NODE + 1]]), grow("twice", 3), grow("twice", 5)),
            timeout=TIMEOUT, validate_only=False)
        response = await call(broker, CREATE_PARTITIONS, version, request)
        dry = await call(broker, CREATE_PARTITIONS, version, m.CreatePartitionsRequest(
            topics=(grow("dry", 5),), timeout=TIMEOUT, validate_only=True))
        return response, dry, {n: i.partitions for n, i in broker.engine.topics().items()}

    response, dry, counts = run(tmp_path, body)
    codes = {r.name: r.error_code for r in response.results}
    assert codes == {
        "twice": E.invalid_request, "grow": E.none, "same": E.invalid_partitions,
        "shrink": E.invalid_partitions, "missing": E.unknown_topic_or_partition,
        "assigned": E.none, "miscount": E.invalid_replica_assignment,
        "elsewhere": E.invalid_replica_assignment,
    }
    assert dry.results[0].error_code == E.none
    assert counts == {"grow": 4, "same": 2, "shrink": 2, "dry": 2, "assigned": 3,
                      "miscount": 2, "elsewhere": 2}
    messages = {r.name: r.error_message for r in response.results}
    assert messages["same"] == "Topic already has 2 partition(s)."


# --- DescribeConfigs -----------------------------------------------------------------------------


def describe_request(version: int, resources: list[tuple[int, str, list[str] | None]],
                     synonyms: bool = False, docs: bool = False) -> Any:
    m = schema(DESCRIBE_CONFIGS, version)
    kwargs: dict[str, Any] = {"include_synonyms": synonyms}
    if version >= 3:
        kwargs["include_documentation"] = docs
    return m.DescribeConfigsRequest(
        resources=tuple(m.DescribeConfigsResource(resource_type=t, resource_name=n,
                                                  configuration_keys=None if k is None
                                                  else tuple(k))
                        for t, n, k in resources), **kwargs)


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_describe_topic_configs(tmp_path: Path, version: int) -> None:
    request = describe_request(version, [(2, "t", None), (2, "t", ["retention.ms", "nope"]),
                                         (2, "missing", None), (2, "bad/name", None)],
                               synonyms=True, docs=True)

    async def body(broker: Broker) -> Any:
        await create(broker, "t", configs={"cleanup.policy": "compact"})
        return await call(broker, DESCRIBE_CONFIGS, version, request)

    response = run(tmp_path, body, {"log.retention.ms": "5000"})
    whole, filtered, missing, bad = response.results
    assert whole.error_code == E.none and whole.resource_name == "t"
    entries = {c.name: c for c in whole.configs}
    assert set(entries) == set(TOPIC_CONFIGS)
    policy, retention, segment = (entries["cleanup.policy"], entries["retention.ms"],
                                  entries["segment.bytes"])
    assert (policy.value, policy.config_source, policy.read_only) == ("compact", 1, False)
    assert [(s.name, s.value, s.source) for s in policy.synonyms] == [
        ("cleanup.policy", "compact", 1), ("log.cleanup.policy", "delete", 5)]
    assert (retention.value, retention.config_source) == ("5000", 4)
    # log.retention.ms has no default in Kafka: the default comes from log.retention.hours.
    assert [(s.name, s.value, s.source) for s in retention.synonyms] == [
        ("log.retention.ms", "5000", 4), ("log.retention.hours", "168", 5)]
    assert (segment.config_source, segment.value) == (5, str(1024 * 1024 * 1024))
    if version >= 3:
        assert (policy.config_type, retention.config_type, segment.config_type) == (7, 5, 3)
        assert entries["min.cleanable.dirty.ratio"].config_type == 6
        assert policy.documentation == TOPIC_CONFIGS["cleanup.policy"].doc
    assert [c.name for c in filtered.configs] == ["retention.ms"]
    assert (missing.error_code, missing.configs) == (E.unknown_topic_or_partition, ())
    assert bad.error_code == E.invalid_topic_exception


def test_describe_configs_without_synonyms_or_docs(tmp_path: Path) -> None:
    request = describe_request(4, [(2, "t", ["flush.ms"])])

    async def body(broker: Broker) -> Any:
        await create(broker, "t")
        return await call(broker, DESCRIBE_CONFIGS, 4, request)

    entry = run(tmp_path, body).results[0].configs[0]
    assert (entry.synonyms, entry.documentation, entry.config_source) == ((), None, 5)


def test_describe_broker_configs(tmp_path: Path) -> None:
    request = describe_request(4, [(4, str(NODE), None), (4, "", None), (4, "7", None),
                                   (4, "one", None), (8, str(NODE), None)],
                               synonyms=True, docs=True)

    async def body(broker: Broker) -> Any:
        return await call(broker, DESCRIBE_CONFIGS, 4, request)

    node, default, other, word, logger = run(tmp_path, body, {"num.partitions": "6"}).results
    entries = {c.name: c for c in node.configs}
    assert {"num.partitions", "log.retention.ms", "auto.create.topics.enable",
            "message.max.bytes", "node.id"} <= set(entries)
    assert all(c.read_only for c in node.configs)
    partitions = entries["num.partitions"]
    assert (partitions.value, partitions.config_source, partitions.config_type) == ("6", 4, 3)
    assert [(s.source, s.value) for s in partitions.synonyms] == [(4, "6"), (5, "1")]
    assert entries["auto.create.topics.enable"].config_type == 1
    assert entries["log.retention.ms"].config_source == 5
    assert partitions.documentation
    assert (default.error_code, default.configs) == (E.none, ())
    assert other.error_code == E.invalid_request and word.error_code == E.invalid_request
    assert logger.error_code == E.invalid_request


def test_describe_broker_configs_lists_listeners_by_kafkas_names(tmp_path: Path) -> None:
    """A Kafka admin test looks up advertised.listeners; broker.id is node.id's older name."""
    request = describe_request(4, [(4, "3", None)], synonyms=True)

    async def body(broker: Broker) -> Any:
        broker.bound_ports["PLAINTEXT"] = 19092  # as the server sets it once bound
        return await call(broker, DESCRIBE_CONFIGS, 4, request)

    settings = {"broker.id": "3", "advertised.listeners": "PLAINTEXT://proxy.example:9999"}
    (node,) = run(tmp_path, body, settings).results
    assert node.error_code == E.none
    entries = {c.name: c for c in node.configs}
    assert entries["listeners"].value == "PLAINTEXT://127.0.0.1:19092"
    assert entries["listeners"].config_source == 4  # STATIC_BROKER_CONFIG
    advertised = entries["advertised.listeners"]
    assert (advertised.value, advertised.config_source) == ("PLAINTEXT://proxy.example:9999", 4)
    assert entries["broker.id"].value == entries["node.id"].value == "3"
    assert [c.name for c in node.configs] == sorted(c.name for c in node.configs)


# --- AlterConfigs --------------------------------------------------------------------------------


def alter_request(version: int, resources: list[tuple[int, str, Mapping[str, str | None]]],
                  validate_only: bool = False) -> Any:
    m = schema(ALTER_CONFIGS, version)
    return m.AlterConfigsRequest(
        resources=tuple(m.AlterConfigsResource(
            resource_type=t, resource_name=n,
            configs=tuple(m.AlterableConfig(name=k, value=v) for k, v in c.items()))
            for t, n, c in resources),
        validate_only=validate_only)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_alter_configs_replaces_overrides(tmp_path: Path, version: int) -> None:
    async def body(broker: Broker) -> tuple[Any, Any, dict[str, str], int]:
        await create(broker, "t", configs={"cleanup.policy": "compact", "retention.ms": "100"})
        await create(broker, "u", configs={"retention.ms": "100"})
        response = await call(broker, ALTER_CONFIGS, version, alter_request(version, [
            (2, "t", {"retention.ms": "2000", "segment.ms": "60000"}),
            (2, "u", {"retention.ms": "forever"}),
            (2, "missing", {"retention.ms": "1"}),
            (2, "x", {"unknown.key": "1"}),
            (4, str(NODE), {"num.partitions": "3"}),
            (4, "", {}),
            (2, "", {}),
            (2, "dup", {}), (2, "dup", {}),
            (2, "v", {"retention.ms": None}),
        ]))
        dry = await call(broker, ALTER_CONFIGS, version, alter_request(
            version, [(2, "u", {"retention.ms": "7"})], validate_only=True))
        info = broker.engine.topics()["t"]
        return (response, dry, dict(info.configs),
                broker.engine.log_config("u").retention_ms)

    response, dry, t_configs, u_retention = run(tmp_path, body)
    codes = [(r.resource_name, r.error_code) for r in response.responses]
    assert codes == [
        ("t", E.none), ("u", E.invalid_config), ("missing", E.unknown_topic_or_partition),
        ("x", E.invalid_config), (str(NODE), E.invalid_request), ("", E.none),
        ("", E.invalid_request), ("dup", E.invalid_request), ("dup", E.invalid_request),
        ("v", E.invalid_request)]
    assert t_configs == {"retention.ms": "2000", "segment.ms": "60000"}  # compact is gone
    assert dry.responses[0].error_code == E.none and u_retention == 100


# --- IncrementalAlterConfigs ---------------------------------------------------------------------


SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def incremental_request(version: int,
                        resources: list[tuple[int, str, list[tuple[str, int, str | None]]]],
                        validate_only: bool = False) -> Any:
    m = schema(INCREMENTAL_ALTER_CONFIGS, version)
    return m.IncrementalAlterConfigsRequest(
        resources=tuple(m.AlterConfigsResource(
            resource_type=t, resource_name=n,
            configs=tuple(m.AlterableConfig(name=k, config_operation=op, value=v)
                          for k, op, v in ops))
            for t, n, ops in resources),
        validate_only=validate_only)


@pytest.mark.parametrize("version", [0, 1])
def test_incremental_alter_configs(tmp_path: Path, version: int) -> None:
    async def body(broker: Broker) -> tuple[Any, dict[str, dict[str, str]], str]:
        await create(broker, "a", configs={"retention.ms": "100", "segment.ms": "5000"})
        await create(broker, "b")
        await create(broker, "c", configs={"cleanup.policy": "compact,delete"})
        await create(broker, "d")
        response = await call(broker, INCREMENTAL_ALTER_CONFIGS, version, incremental_request(
            version, [
                (2, "a", [("retention.ms", SET, "200"), ("segment.ms", DELETE, None),
                          ("never.set", DELETE, None)]),
                (2, "b", [("cleanup.policy", APPEND, "compact")]),
                (2, "c", [("cleanup.policy", SUBTRACT, "delete")]),
                (2, "d", [("retention.ms", APPEND, "5")]),
                (2, "d", [("retention.ms", SET, "5")]),
                (2, "e", [("retention.ms", 9, "5")]),
                (2, "f", [("retention.ms", SET, "1"), ("retention.ms", SET, "2")]),
                (2, "g", [("retention.ms", SET, None)]),
                (2, "missing", [("retention.ms", SET, "1")]),
                (4, "", [("log.retention.ms", SET, "1")]),
                (4, "99", []),
            ]))
        dry = await call(broker, INCREMENTAL_ALTER_CONFIGS, version, incremental_request(
            version, [(2, "b", [("retention.ms", SET, "1")])], validate_only=True))
        assert dry.responses[0].error_code == E.none
        configs = {n: dict(i.configs) for n, i in broker.engine.topics().items()}
        return response, configs, broker.engine.log_config("b").cleanup_policy

    response, configs, b_policy = run(tmp_path, body)
    codes = [(r.resource_name, r.error_code) for r in response.responses]
    assert codes == [
        ("a", E.none), ("b", E.none), ("c", E.none), ("d", E.invalid_request),
        ("d", E.invalid_request), ("e", E.invalid_request), ("f", E.invalid_request),
        ("g", E.invalid_request), ("missing", E.unknown_topic_or_partition),
        ("", E.invalid_request), ("99", E.invalid_request)]
    assert configs["a"] == {"retention.ms": "200"}
    assert configs["b"] == {"cleanup.policy": "delete,compact"}
    assert configs["c"] == {"cleanup.policy": "compact"}
    assert configs["d"] == {}
    assert set(b_policy.split(",")) == {"compact", "delete"}


def test_incremental_append_to_a_non_list_config(tmp_path: Path) -> None:
    async def body(broker: Broker) -> Any:
        await create(broker, "t")
        return await call(broker, INCREMENTAL_ALTER_CONFIGS, 1, incremental_request(
            1, [(2, "t", [("retention.ms", APPEND, "5")])]))

    result = run(tmp_path, body).responses[0]
    assert result.error_code == E.invalid_config
    assert result.error_message == "Can't APPEND to key retention.ms because its type is not LIST."


# --- DeleteRecords -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 2])
def test_delete_records(tmp_path: Path, version: int) -> None:
    m = schema(DELETE_RECORDS, version)

    def topic(name: str, entries: list[tuple[int, int]]) -> Any:
        return m.DeleteRecordsTopic(name=name, partitions=tuple(
            m.DeleteRecordsPartition(partition_index=p, offset=o) for p, o in entries))

    async def body(broker: Broker) -> tuple[Any, Any]:
        await create(broker, "t", 3)
        await create(broker, "compacted", configs={"cleanup.policy": "compact"})
        for p in range(3):
            await produce(broker, "t", p, 5)
        request = m.DeleteRecordsRequest(topics=(
            topic("t", [(0, 3), (1, -1), (2, 6), (7, 0)]), topic("compacted", [(0, 0)]),
            topic("missing", [(0, 0)])), timeout=TIMEOUT)
        response = await call(broker, DELETE_RECORDS, version, request)
        earliest = await call(broker, LIST_OFFSETS, 1,
                              list_offsets_request(1, {"t": [(0, -2), (1, -2), (2, -2)]}))
        return response, earliest

    response, earliest = run(tmp_path, body)
    got = {(t.name, p.partition_index): (p.error_code, p.low_watermark)
           for t in response.topics for p in t.partitions}
    assert got == {
        ("t", 0): (E.none, 3), ("t", 1): (E.none, 5), ("t", 2): (E.offset_out_of_range, -1),
        ("t", 7): (E.unknown_topic_or_partition, -1),
        ("compacted", 0): (E.policy_violation, -1),
        ("missing", 0): (E.unknown_topic_or_partition, -1)}
    assert [p.offset for p in earliest.topics[0].partitions] == [3, 5, 0]


# --- DescribeCluster -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 2])
def test_describe_cluster(tmp_path: Path, version: int) -> None:
    m = schema(DESCRIBE_CLUSTER, version)
    kwargs: dict[str, Any] = {"include_fenced_brokers": True} if version >= 2 else {}

    async def body(broker: Broker) -> tuple[Any, Any]:
        plain = await call(broker, DESCRIBE_CLUSTER, version, m.DescribeClusterRequest(
            include_cluster_authorized_operations=False, **kwargs))
        with_ops = await call(broker, DESCRIBE_CLUSTER, version, m.DescribeClusterRequest(
            include_cluster_authorized_operations=True, **kwargs))
        return plain, with_ops

    plain, with_ops = run(tmp_path, body, {"advertised.host": "example.test"})
    assert plain.error_code == E.none
    cluster_id = load_or_create_cluster_id(tmp_path)  # the data directory's
    assert len(cluster_id) == 22
    assert (plain.cluster_id, plain.controller_id) == (cluster_id, NODE)
    assert [(b.broker_id, b.host, b.port) for b in plain.brokers] == [(NODE, "example.test", 0)]
    assert plain.cluster_authorized_operations == -(2**31)
    assert with_ops.cluster_authorized_operations > 0


def test_describe_cluster_for_controllers_is_refused(tmp_path: Path) -> None:
    m = schema(DESCRIBE_CLUSTER, 1)

    async def body(broker: Broker) -> Any:
        return await call(broker, DESCRIBE_CLUSTER, 1, m.DescribeClusterRequest(
            include_cluster_authorized_operations=False, endpoint_type=2))

    response = run(tmp_path, body)
    assert response.error_code == E.mismatched_endpoint_type
    assert response.brokers == ()


# --- DescribeLogDirs -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 3, 4, 5])
def test_describe_log_dirs(tmp_path: Path, version: int) -> None:
    m = schema(DESCRIBE_LOG_DIRS, version)

    async def body(broker: Broker) -> tuple[Any, Any]:
        await create(broker, "a", 2)
        await create(broker, "b")
        await produce(broker, "a", 1, 4)
        everything = await call(broker, DESCRIBE_LOG_DIRS, version,
                                m.DescribeLogDirsRequest(topics=None))
        some = await call(broker, DESCRIBE_LOG_DIRS, version, m.DescribeLogDirsRequest(
            topics=(m.DescribableLogDirTopic(topic="a", partitions=(1, 5)),)))
        return everything, some

    everything, some = run(tmp_path, body)
    (result,) = everything.results
    assert result.error_code == E.none and result.log_dir == str(tmp_path.resolve())
    sizes = {(t.name, p.partition_index): p.partition_size
             for t in result.topics for p in t.partitions}
    assert set(sizes) == {("a", 0), ("a", 1), ("b", 0)}
    assert sizes[("a", 1)] > sizes[("a", 0)]
    assert [(t.name, [p.partition_index for p in t.partitions])
            for t in some.results[0].topics] == [("a", [1])]
    if version >= 4:
        assert result.total_bytes > 0 and 0 <= result.usable_bytes <= result.total_bytes


# --- DescribeTopicPartitions ---------------------------------------------------------------------


def describe_partitions(names: list[str], limit: int = 2000,
                        cursor: tuple[str, int] | None = None) -> Any:
    m = schema(DESCRIBE_TOPIC_PARTITIONS, 0)
    return m.DescribeTopicPartitionsRequest(
        topics=tuple(m.TopicRequest(name=n) for n in names), response_partition_limit=limit,
        cursor=None if cursor is None else m.Cursor(topic_name=cursor[0],
                                                    partition_index=cursor[1]))


def page(response: Any) -> tuple[list[tuple[str, int, list[int]]], tuple[str, int] | None]:
    topics = [(t.name, t.error_code, [p.partition_index for p in t.partitions])
              for t in response.topics]
    cursor = response.next_cursor
    return topics, None if cursor is None else (cursor.topic_name, cursor.partition_index)


def test_describe_topic_partitions_pages(tmp_path: Path) -> None:
    async def body(broker: Broker) -> list[Any]:
        await create(broker, "a", 3)
        await create(broker, "b", 1)
        await create(broker, "c", 2)
        requests = [
            describe_partitions([], limit=2),
            describe_partitions([], limit=2, cursor=("a", 2)),
            describe_partitions([], limit=2, cursor=("c", 0)),
            describe_partitions(["c", "nope", "a", "bad name"]),
            describe_partitions(["a"], cursor=("b", 0)),
            describe_partitions(["a"], cursor=("a", -1)),
        ]
        return [await call(broker, DESCRIBE_TOPIC_PARTITIONS, 0, r) for r in requests]

    first, second, third, named, wrong_cursor, negative = run(tmp_path, body)
    assert page(first) == ([("a", E.none, [0, 1])], ("a", 2))
    assert page(second) == ([("a", E.none, [2]), ("b", E.none, [0])], ("c", 0))
    assert page(third) == ([("c", E.none, [0, 1])], None)
    assert page(named) == ([("a", E.none, [0, 1, 2]), ("bad name", E.invalid_topic_exception, []),
                            ("c", E.none, [0, 1]), ("nope", E.unknown_topic_or_partition, [])],
                           None)
    topic = first.topics[0]
    partition = topic.partitions[0]
    assert (partition.leader_id, partition.replica_nodes, partition.isr_nodes) == (
        NODE, (NODE,), (NODE,))
    assert topic.topic_id != uuid.UUID(int=0) and topic.topic_authorized_operations > 0
    assert page(wrong_cursor) == ([("a", E.invalid_request, [])], None)
    assert page(negative) == ([("a", E.invalid_request, [])], None)


def test_topic_configs_kafka_4_still_has_are_accepted_and_described(tmp_path: Path) -> None:
    """preallocate, segment.jitter.ms, unclean.leader.election.enable and the throttled
    replica lists: accepted (validated as Kafka does) and described; a config of Kafka's
    default with no broker synonym lists no synonym, as Kafka's does."""
    names = ["preallocate", "segment.jitter.ms", "unclean.leader.election.enable",
             "leader.replication.throttled.replicas", "follower.replication.throttled.replicas",
             "segment.ms"]
    request = describe_request(4, [(2, "t", names)], synonyms=True)

    async def body(broker: Broker) -> Any:
        m = schema(CREATE_TOPICS, 7)
        good = creatable(m, "t", configs={
            "preallocate": "true", "segment.jitter.ms": "1000",
            "leader.replication.throttled.replicas": "0:1,1:1"})
        wrong = creatable(m, "u", configs={"follower.replication.throttled.replicas": "all"})
        created = await call(broker, CREATE_TOPICS, 7, create_request(7, [good]))
        bad = await call(broker, CREATE_TOPICS, 7, create_request(7, [wrong]))
        described = await call(broker, DESCRIBE_CONFIGS, 4, request)
        return created.topics[0], bad.topics[0], described.results[0]

    created, bad, described = run(tmp_path, body)
    assert created.error_code == E.none
    assert bad.error_code == E.invalid_config
    entries = {c.name: c for c in described.configs}
    assert set(entries) == set(names)
    assert (entries["preallocate"].value, entries["preallocate"].config_source) == ("true", 1)
    assert entries["segment.jitter.ms"].value == "1000"
    unclean = entries["unclean.leader.election.enable"]
    assert (unclean.value, unclean.config_source) == ("false", 5)
    follower = entries["follower.replication.throttled.replicas"]
    assert (follower.value, follower.config_source, follower.synonyms) == ("", 5, ())
    segment = entries["segment.ms"]
    assert (segment.value, [(s.name, s.value) for s in segment.synonyms]) == (
        "604800000", [("log.roll.hours", "168")])
