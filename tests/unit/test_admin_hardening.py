"""Admin requests under concurrency, every legal topic name, and answers that never carry the
server's file paths or exception text (the fuzz report's findings 3-5 and its smaller notes)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from strom.broker.handlers.produce import NO_SPACE_MESSAGE, append_partition
from strom.broker.state import Broker
from strom.broker.topic_locks import TopicLocks
from strom.config.broker import BrokerConfig
from strom.protocol.records import build_batch
from strom.storage.local import log_segment
from strom.storage.local.engine import LocalEngine
from strom.storage.local.files import NAME_MAX, tmp_path, write_atomic
from strom.storage.local.names import delete_dir_name
from tests.unit.batch_factory import batch
from tests.unit.test_handlers_admin import (
    CREATE_PARTITIONS,
    CREATE_TOPICS,
    DELETE_TOPICS,
    TIMEOUT,
    E,
    call,
    create,
    run,
    schema,
)

API_VERSIONS = 18


def grow(name: str, count: int) -> Any:
    m = schema(CREATE_PARTITIONS, 0)
    return m.CreatePartitionsRequest(
        topics=(m.CreatePartitionsTopic(name=name, count=count, assignments=None),),
        timeout=TIMEOUT, validate_only=False)


def new_topic(name: str, partitions: int = 1) -> Any:
    m = schema(CREATE_TOPICS, 7)
    return m.CreateTopicsRequest(
        topics=(m.CreatableTopic(name=name, num_partitions=partitions, replication_factor=1,
                                 assignments=(), configs=()),),
        timeout=TIMEOUT, validate_only=False)


def test_concurrent_create_partitions_each_get_their_answer(tmp_path: Path) -> None:
    """The fuzz report's finding 5: to 64 and to 2 at once on a 1-partition topic."""

    async def body(broker: Broker) -> list[Any]:
        await create(broker, "cp")
        first, second = await asyncio.gather(call(broker, CREATE_PARTITIONS, 0, grow("cp", 64)),
                                             call(broker, CREATE_PARTITIONS, 0, grow("cp", 2)))
        assert broker.engine.topics()["cp"].partitions == 64
        return [*first.results, *second.results]

    results = run(tmp_path, body)
    assert [(r.name, r.error_code) for r in results] == [
        ("cp", E.none), ("cp", E.invalid_partitions)]
    assert results[1].error_message == "The topic cp currently has 64 partition(s); 2 would not " \
                                       "be an increase."


def test_concurrent_creation_of_colliding_names(tmp_path: Path) -> None:
    async def body(broker: Broker) -> list[tuple[str, int]]:
        answers = await asyncio.gather(call(broker, CREATE_TOPICS, 7, new_topic("a.b", 4)),
                                       call(broker, CREATE_TOPICS, 7, new_topic("a_b", 4)))
        assert list(broker.engine.topics()) == ["a.b"]
        return [(t.name, t.error_code) for a in answers for t in a.topics]

    assert run(tmp_path, body) == [("a.b", E.none), ("a_b", E.invalid_topic_exception)]


def test_concurrent_delete_and_grow(tmp_path: Path) -> None:
    m = schema(DELETE_TOPICS, 1)

    async def body(broker: Broker) -> tuple[int, int]:
        await create(broker, "t")
        deleted, grown = await asyncio.gather(
            call(broker, DELETE_TOPICS, 1, m.DeleteTopicsRequest(topic_names=("t",),
                                                                 timeout=TIMEOUT)),
            call(broker, CREATE_PARTITIONS, 0, grow("t", 3)))
        assert "t" not in broker.engine.topics()
        return deleted.responses[0].error_code, grown.results[0].error_code

    assert run(tmp_path, body) == (E.none, E.unknown_topic_or_partition)


def test_topic_locks_are_dropped_when_released() -> None:
    async def main() -> None:
        locks = TopicLocks()
        order: list[str] = []

        async def hold(name: str, tag: str) -> None:
            async with locks.hold(name):
                order.append(f"{tag}+")
                await asyncio.sleep(0.01)
                order.append(f"{tag}-")

        await asyncio.gather(hold("x.y", "1"), hold("x_y", "2"), hold("z", "3"))
        assert order.index("1-") < order.index("2+")  # x.y and x_y share a lock
        assert order.index("3+") < order.index("1-")  # z does not wait for them
        assert len(locks) == 0

    asyncio.run(main())


@pytest.mark.parametrize("length", range(200, 250))
def test_every_name_length_can_be_created_deleted_and_stays_deleted(tmp_path: Path,
                                                                    length: int) -> None:
    """Names of 214-246 characters could not be deleted (the rename to the delete directory
    passed 255 bytes) and 247-249 could not be created (the metadata's temp file did)."""
    name = "e" * length

    async def main() -> None:
        config = BrokerConfig.build(tmp_path, "localhost", 0)
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        await engine.create_topic(name, 3, {"retention.ms": "1000"})
        await engine.partition(name, 2).append([batch(2)])
        await engine.delete_topic(name)
        assert name not in engine.topics()
        await engine.close()
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        assert name not in engine.topics()
        await engine.close()

    asyncio.run(main())
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("eee")]
    assert not list((tmp_path / "__topics").iterdir())


def test_derived_file_names_fit_the_file_system() -> None:
    for length in (1, 213, 214, 246, 247, 249):
        topic = "x" * length
        for partition in (0, 7, 99_999):
            name = delete_dir_name(topic, partition)
            assert len(name) <= NAME_MAX and name.endswith("-delete")
            assert name.startswith(topic[:200])
        path = Path("/d") / f"{topic}.json"
        assert len(tmp_path(path).name) <= NAME_MAX
        assert tmp_path(path).name.endswith(".tmp")


def test_temp_names_of_longest_topic_names_stay_distinct(tmp_path: Path) -> None:
    for name in ("a" * 249, "a" * 248 + "b"):
        write_atomic(tmp_path / f"{name}.json", name.encode())
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["a" * 249, "a" * 248 + "b"]


def test_too_many_partitions_for_a_long_name_are_refused(tmp_path: Path) -> None:
    """`<topic>-<partition>` directories must fit 255 bytes: 249 characters and up to
    100,000 partitions."""

    async def main() -> None:
        engine = LocalEngine(tmp_path, BrokerConfig.build(tmp_path, "localhost", 0))
        await engine.open()
        try:
            with pytest.raises(ValueError, match="too many for a topic name"):
                await engine.create_topic("m" * 249, 100_001, {})
            assert not engine.topics() and not list(tmp_path.glob("mmm*"))
        finally:
            await engine.close()

    asyncio.run(main())


def test_storage_failures_reach_clients_without_paths(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """KAFKA_STORAGE_ERROR and a failed CreateTopics carry fixed messages; the log has the
    detail (the fuzz report's disk-full run sent the segment's absolute path)."""

    def no_space(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "t-0"))

    async def main() -> tuple[Any, Any]:
        config = BrokerConfig.build(tmp_path, "localhost", 0, {"flush.messages": "1"})
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        broker = Broker(config, engine)
        try:
            await engine.create_topic("t", 1, {})
            monkeypatch.setattr(os, "fsync", no_space)
            produced = await append_partition(broker, "t", 0, build_batch([(None, b"v", [],
                                                                            0)]), 9)
            monkeypatch.setattr(LocalEngine, "_new_logs", no_space)
            created = await call(broker, CREATE_TOPICS, 7, new_topic("u"))
            monkeypatch.undo()
            return produced, created.topics[0]
        finally:
            await engine.close()

    with caplog.at_level(logging.ERROR):
        produced, created = asyncio.run(main())
    assert produced.error == E.kafka_storage_error
    assert created.error_code == E.unknown_server_error
    for message in (produced.message, created.error_message):
        assert message and str(tmp_path) not in message and "No space" not in message
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("t-0" in r.getMessage() for r in logged)  # the detail stays in the log
    assert any(r.exc_info and str(tmp_path) in str(r.exc_info[1]) for r in logged)


def test_a_full_disk_is_answered_with_its_own_message_and_logged_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """ENOSPC on a segment write: KAFKA_STORAGE_ERROR saying the partition recovers once space
    is freed (not "offline until restart"), without paths; one ERROR line for the episode."""

    def no_space(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "t-0"))

    async def main() -> list[Any]:
        config = BrokerConfig.build(tmp_path, "localhost", 0)
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        broker = Broker(config, engine)
        try:
            await engine.create_topic("t", 1, {})
            monkeypatch.setattr(log_segment, "_write_all", no_space)
            return [await append_partition(broker, "t", 0, build_batch([(None, b"v", [], 0)]),
                                           9) for _ in range(3)]
        finally:
            await engine.close()

    with caplog.at_level(logging.ERROR):
        outcomes = asyncio.run(main())
    for produced in outcomes:
        assert produced.error == E.kafka_storage_error
        assert produced.message == NO_SPACE_MESSAGE and str(tmp_path) not in produced.message
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([m for m in logged if "no space" in m]) == 1, logged


@pytest.mark.parametrize(("name", "version", "ok"), [
    ("confluent-kafka-python", "2.16.1-rdkafka-2.16.1", True),
    ("kafka-python", "3.0.12", True),
    ("a", "1", True),
    ("", "1", False), ("!!!", "1", False), ("a b", "1", False), ("\u00e4\u2603", "1", False),
    ("a" * 10_000 + "!", "1", False), ("ok", "", False), ("ok", "-1", False),
    ("ok", "1.", False),
])
def test_api_versions_v3_software_names(tmp_path: Path, name: str, version: str,
                                        ok: bool) -> None:
    m = schema(API_VERSIONS, 3)

    async def body(broker: Broker) -> Any:
        return await call(broker, API_VERSIONS, 3, m.ApiVersionsRequest(
            client_software_name=name, client_software_version=version))

    answer = run(tmp_path, body)
    assert answer.error_code == (E.none if ok else E.invalid_request)
    assert bool(answer.api_keys) == ok


def test_a_new_data_directory_is_not_an_unclean_shutdown(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    async def open_close(path: Path, close: bool) -> bool:
        engine = LocalEngine(path, BrokerConfig.build(path, "localhost", 0))
        await engine.open()
        if close:
            await engine.close()
        return engine.clean_shutdown

    data = tmp_path / "data"
    with caplog.at_level(logging.INFO):
        assert asyncio.run(open_close(data, close=False))  # brand new: nothing to recover
        assert not asyncio.run(open_close(data, close=True))  # after a crash: recovery
        assert asyncio.run(open_close(data, close=True))
    opened = [r.getMessage() for r in caplog.records if r.getMessage().startswith("opened")]
    assert [m.rsplit("(", 1)[1] for m in opened] == [
        "a new data directory)", "unclean shutdown)", "clean shutdown)"]
    assert opened[0].startswith("opened 0 topics, 0 partitions")


def test_an_unexpected_failure_on_one_topic_leaves_the_others_their_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = schema(CREATE_TOPICS, 7)
    request = m.CreateTopicsRequest(topics=tuple(
        m.CreatableTopic(name=n, num_partitions=1, replication_factor=1, assignments=(),
                         configs=()) for n in ("ok1", "boom", "ok2")),
        timeout=TIMEOUT, validate_only=False)

    async def body(broker: Broker) -> list[tuple[str, int, str | None]]:
        original = broker.engine.create_topic

        async def create_topic(name: str, *args: Any) -> Any:
            if name == "boom":
                raise RuntimeError("a bug, with /some/server/path in it")
            return await original(name, *args)

        monkeypatch.setattr(broker.engine, "create_topic", create_topic)
        response = await call(broker, CREATE_TOPICS, 7, request)
        return [(t.name, t.error_code, t.error_message) for t in response.topics]

    assert run(tmp_path, body) == [("ok1", E.none, None), ("boom", E.unknown_server_error, None),
                                   ("ok2", E.none, None)]
