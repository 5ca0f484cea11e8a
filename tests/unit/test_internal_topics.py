"""Internal topics belong to their coordinators: clients cannot create, delete, grow, write or
reconfigure them into something the coordinator cannot use; the coordinators map ids to the
topic's actual partition count; and a broker that finds one in an impossible state says so at
start (coordinator/internal_topics.py, broker/internal_topic_check.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from strom.broker.handlers.produce import append_partition
from strom.broker.internal_topic_check import StartupError
from strom.broker.state import Broker
from strom.config.broker import BrokerConfig
from strom.coordinator.hashing import partition_for
from strom.coordinator.internal_topics import OFFSETS_TOPIC, TXN_TOPIC
from strom.protocol.records import build_batch
from strom.server.app import BrokerServer
from strom.storage.local.engine import LocalEngine
from tests.unit.test_handlers_admin import (
    ALTER_CONFIGS,
    CREATE_PARTITIONS,
    CREATE_TOPICS,
    INCREMENTAL_ALTER_CONFIGS,
    TIMEOUT,
    E,
    call,
    schema,
)

T = TypeVar("T")
METADATA = 3


def with_broker(tmp_path: Path, body: Callable[[Broker], Awaitable[T]],
                settings: Mapping[str, str] | None = None) -> T:
    """A Broker whose coordinators have started (so __consumer_offsets exists)."""

    async def main() -> T:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0, dict(settings or {}))
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        broker = Broker(config, engine)
        await broker.groups.start()
        await broker.transactions.start()
        try:
            return await body(broker)
        finally:
            await broker.transactions.stop()
            await broker.groups.stop()
            await engine.close()

    return asyncio.run(main())


def create_request(name: str, partitions: int = 3) -> Any:
    m = schema(CREATE_TOPICS, 7)
    return m.CreateTopicsRequest(
        topics=(m.CreatableTopic(name=name, num_partitions=partitions, replication_factor=1,
                                 assignments=(), configs=()),),
        timeout=TIMEOUT, validate_only=False)


def test_clients_cannot_create_internal_topics(tmp_path: Path) -> None:
    async def body(broker: Broker) -> list[tuple[str, int]]:
        results = []
        for name in (OFFSETS_TOPIC, TXN_TOPIC, "__share_group_state", "__cluster_metadata"):
            response = await call(broker, CREATE_TOPICS, 7, create_request(name))
            results.extend((t.name, t.error_code) for t in response.topics)
        assert TXN_TOPIC not in broker.engine.topics()
        assert broker.engine.topics()[OFFSETS_TOPIC].partitions == 50
        return results

    assert with_broker(tmp_path, body) == [
        (OFFSETS_TOPIC, E.topic_already_exists), (TXN_TOPIC, E.invalid_request),
        ("__share_group_state", E.invalid_request), ("__cluster_metadata", E.invalid_request)]


def test_metadata_never_auto_creates_an_internal_topic(tmp_path: Path) -> None:
    m = schema(METADATA, 12)
    request = m.MetadataRequest(
        topics=tuple(m.MetadataRequestTopic(topic_id=None, name=n)
                     for n in (TXN_TOPIC, "__share_group_state", "plain")),
        allow_auto_topic_creation=True, include_topic_authorized_operations=False)

    async def body(broker: Broker) -> Any:
        response = await call(broker, METADATA, 12, request)
        assert sorted(broker.engine.topics()) == [OFFSETS_TOPIC, "plain"]
        return [(t.name, t.error_code, t.is_internal) for t in response.topics]

    assert with_broker(tmp_path, body) == [
        (TXN_TOPIC, E.unknown_topic_or_partition, True),
        ("__share_group_state", E.unknown_topic_or_partition, True),
        ("plain", E.none, False)]


def test_internal_topics_cannot_grow(tmp_path: Path) -> None:
    m = schema(CREATE_PARTITIONS, 3)
    request = m.CreatePartitionsRequest(
        topics=(m.CreatePartitionsTopic(name=OFFSETS_TOPIC, count=60, assignments=None),),
        timeout=TIMEOUT, validate_only=False)

    async def body(broker: Broker) -> Any:
        response = await call(broker, CREATE_PARTITIONS, 3, request)
        assert broker.engine.topics()[OFFSETS_TOPIC].partitions == 50
        return [(r.error_code, r.error_message) for r in response.results]

    ((code, message),) = with_broker(tmp_path, body)
    assert code == E.invalid_partitions and "group coordinator" in message


def alter(name: str, configs: Mapping[str, str]) -> Any:
    m = schema(ALTER_CONFIGS, 2)
    return m.AlterConfigsRequest(resources=(m.AlterConfigsResource(
        resource_type=2, resource_name=name,
        configs=tuple(m.AlterableConfig(name=k, value=v) for k, v in configs.items())),),
        validate_only=False)


def incremental(name: str, *ops: tuple[str, int, str | None]) -> Any:
    m = schema(INCREMENTAL_ALTER_CONFIGS, 1)
    return m.IncrementalAlterConfigsRequest(resources=(m.AlterConfigsResource(
        resource_type=2, resource_name=name,
        configs=tuple(m.AlterableConfig(name=k, config_operation=op, value=v)
                      for k, op, v in ops)),), validate_only=False)


def test_internal_topics_keep_cleanup_policy_compact(tmp_path: Path) -> None:
    SET, DELETE, APPEND = 0, 1, 2

    async def body(broker: Broker) -> list[int]:
        codes = []
        for key, request in [
            (ALTER_CONFIGS, alter(OFFSETS_TOPIC, {"cleanup.policy": "delete"})),
            (ALTER_CONFIGS, alter(OFFSETS_TOPIC, {"retention.ms": "1000"})),  # drops compact
            (INCREMENTAL_ALTER_CONFIGS, incremental(OFFSETS_TOPIC, ("cleanup.policy", DELETE,
                                                                    None))),
            (INCREMENTAL_ALTER_CONFIGS, incremental(OFFSETS_TOPIC, ("cleanup.policy", APPEND,
                                                                    "delete"))),
            (INCREMENTAL_ALTER_CONFIGS, incremental(OFFSETS_TOPIC, ("segment.bytes", SET,
                                                                    "1048576"))),
            (ALTER_CONFIGS, alter(OFFSETS_TOPIC, {"cleanup.policy": "compact",
                                                  "segment.bytes": "2097152"})),
        ]:
            response = await call(broker, key, 2 if key == ALTER_CONFIGS else 1, request)
            codes.append(response.responses[0].error_code)
        assert broker.engine.topics()[OFFSETS_TOPIC].configs == {
            "cleanup.policy": "compact", "segment.bytes": "2097152"}
        return codes

    assert with_broker(tmp_path, body) == [E.invalid_config] * 4 + [E.none, E.none]


def test_clients_cannot_produce_to_internal_topics(tmp_path: Path) -> None:
    async def body(broker: Broker) -> None:
        data = build_batch([(b"key", b"forged", [], 0)])
        for name in (OFFSETS_TOPIC, TXN_TOPIC):
            outcome = await append_partition(broker, name, 0, data, 9)
            assert outcome.error == E.invalid_topic_exception and outcome.message is None
        assert broker.engine.partition(OFFSETS_TOPIC, 0).log_end_offset == 0

    with_broker(tmp_path, body)


def group_on_each(partitions: int) -> list[str]:
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        found.setdefault(partition_for(f"g{i}", partitions), f"g{i}")
        i += 1
    return list(found.values())


def test_groups_map_to_the_actual_partition_count(tmp_path: Path) -> None:
    """An existing __consumer_offsets of 3 partitions (another offsets.topic.num.partitions
    when it was created) keeps serving every group, across a restart."""
    settings = {"offsets.topic.num.partitions": "3"}

    async def first(broker: Broker) -> None:
        for group in group_on_each(3):
            assert broker.groups.partition_for(group) == partition_for(group, 3)

    with_broker(tmp_path, first, settings)

    async def second(broker: Broker) -> None:
        assert broker.engine.topics()[OFFSETS_TOPIC].partitions == 3
        for group in group_on_each(3):
            partition = broker.groups.partition_for(group)
            assert partition == partition_for(group, 3)
            broker.engine.partition(OFFSETS_TOPIC, partition)  # exists

    with_broker(tmp_path, second)  # offsets.topic.num.partitions is 50 now


def test_a_transaction_log_of_one_partition_with_delete_policy_keeps_working(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The state an older strom left behind after a Metadata request auto-created
    __transaction_state: 1 partition, the broker's default cleanup.policy (delete)."""

    async def make(broker: Broker) -> None:
        await broker.engine.create_topic(TXN_TOPIC, 1, {})

    with_broker(tmp_path, make)

    async def start_server() -> None:  # the start-up check repairs the policy
        server = BrokerServer(BrokerConfig.build(tmp_path, "127.0.0.1", 0))
        await server.start()
        await server.stop()

    with caplog.at_level(logging.WARNING):
        asyncio.run(start_server())
    messages = [r.getMessage() for r in caplog.records]
    assert any("__transaction_state has 1 partition, not transaction.state.log.num."
               "partitions=50" in m for m in messages), messages
    assert any("needs cleanup.policy=compact, not 'delete'" in m for m in messages), messages

    async def use(broker: Broker) -> None:
        assert broker.engine.topics()[TXN_TOPIC].configs["cleanup.policy"] == "compact"
        runtime = broker.transactions
        for transactional_id in ("a", "b", "c", "tx-1", "my-app-tx"):
            init = await runtime.write(transactional_id, lambda core, now, tid=transactional_id: (
                core.init_producer_id(tid, 60_000, now_ms=now)))
            assert init.error == 0, (transactional_id, init)
        assert broker.engine.partition(TXN_TOPIC, 0).log_end_offset == 5

    with_broker(tmp_path, use, {"transaction.state.log.num.partitions": "50"})


def test_the_broker_repairs_a_non_compact_internal_topic_at_start(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture
                                                                  ) -> None:
    async def main() -> None:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0)
        server = BrokerServer(config)
        await server.start()
        await server.stop()
        path = tmp_path / "__topics" / f"{OFFSETS_TOPIC}.json"
        doc = json.loads(path.read_text())
        doc["configs"]["cleanup.policy"] = "delete"
        path.write_text(json.dumps(doc))
        server = BrokerServer(config)
        with caplog.at_level(logging.WARNING):
            await server.start()
        try:
            assert server.engine.topics()[OFFSETS_TOPIC].configs["cleanup.policy"] == "compact"
        finally:
            await server.stop()

    asyncio.run(main())
    assert any("needs cleanup.policy=compact" in r.getMessage() for r in caplog.records)


def test_a_lost_metadata_file_stops_the_broker_before_it_loses_offsets(tmp_path: Path) -> None:
    async def main() -> str:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0)
        server = BrokerServer(config)
        await server.start()
        await server.stop()
        (tmp_path / "__topics" / f"{OFFSETS_TOPIC}.json").unlink()
        with pytest.raises(StartupError) as refused:
            await BrokerServer(config).start()
        assert (tmp_path / f"{OFFSETS_TOPIC}-49").is_dir(), "its data is untouched"
        # Moving the directories away, as the message says, lets it start afresh.
        for directory in tmp_path.glob(f"{OFFSETS_TOPIC}-*"):
            shutil.move(directory, tmp_path.parent / f"moved-{directory.name}")
        server = BrokerServer(config)
        await server.start()
        await server.stop()
        return str(refused.value)

    message = asyncio.run(main())
    assert "__consumer_offsets has data in the directories of its partitions 0, 1, 2" in message
    assert "Restore that file" in message and "move the __consumer_offsets-N" in message
