"""KIP-458's connector.client.config.override.policy: which client overrides a connector config
may carry (validation, create, task start), with Kafka's messages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from strom.connect.errors import ConfigException
from strom.connect.herder import StandaloneHerder
from strom.connect.offsets import MemoryOffsetBackingStore
from strom.connect.override_policy import override_errors, policy_name
from strom.connect.standalone import StandaloneRuntime
from strom.connect.states import BadRequest
from strom.connect.worker import Worker, WorkerConfig

SINK = {"name": "x", "connector.class": "FileStreamSink", "topics": "t", "file": "/dev/null"}


def test_policy_names_and_kafkas_class_names() -> None:
    assert policy_name({}) == "All"  # Kafka's default since 3.0
    assert policy_name({"connector.client.config.override.policy": "none"}) == "None"
    assert policy_name({"connector.client.config.override.policy":
                        "org.apache.kafka.connect.connector.policy."
                        "PrincipalConnectorClientConfigOverridePolicy"}) == "Principal"
    with pytest.raises(ConfigException, match="expected All, None or Principal"):
        policy_name({"connector.client.config.override.policy": "Some"})


def test_what_each_policy_allows() -> None:
    config = {"consumer.override.max.poll.records": "10",
              "producer.override.sasl.mechanism": "PLAIN", "admin.override.acks": "1",
              "topics": "t"}
    assert override_errors("All", config) == {}
    assert override_errors("Principal", config) == {
        "consumer.override.max.poll.records": [
            "The 'Principal' policy does not allow 'max.poll.records' to be overridden in the "
            "connector configuration."],
        "admin.override.acks": [
            "The 'Principal' policy does not allow 'acks' to be overridden in the connector "
            "configuration."]}
    assert set(override_errors("None", config)) == {
        "consumer.override.max.poll.records", "producer.override.sasl.mechanism",
        "admin.override.acks"}


def test_validation_and_create_follow_the_workers_policy() -> None:
    async def run() -> None:
        herder = StandaloneHerder(Worker(
            WorkerConfig({"connector.client.config.override.policy": "None"}),
            MemoryOffsetBackingStore()))
        config = {**SINK, "consumer.override.max.poll.records": "10"}
        result = await herder.validate("FileStreamSink", config)
        assert result["error_count"] == 1
        [entry] = [c for c in result["configs"]
                   if c["value"]["name"] == "consumer.override.max.poll.records"]
        assert entry["value"]["errors"] == [
            "The 'None' policy does not allow 'max.poll.records' to be overridden in the "
            "connector configuration."]
        with pytest.raises(BadRequest, match="contains the following 1 error"):
            await herder.put_connector_config("x", config, False)
        assert "x" not in herder.configs
        allowing = StandaloneHerder(Worker(WorkerConfig({}), MemoryOffsetBackingStore()))
        assert (await allowing.validate("FileStreamSink", config))["error_count"] == 0
    asyncio.run(run())


def test_a_bad_policy_fails_the_workers_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigException, match=r"connector\.client\.config\.override\.policy"):
        StandaloneRuntime({"bootstrap.servers": "localhost:9092",
                           "offset.storage.file.filename": str(tmp_path / "offsets"),
                           "connector.client.config.override.policy": "Everything"})


def test_a_task_whose_config_the_policy_forbids_fails_at_start() -> None:
    """A config accepted under a looser policy (the worker restarted with None since): its
    task fails at start, as Kafka's Worker refuses the overrides, and creates no client."""
    from strom.connect.states import State
    from strom.connect.worker import WorkerConnector

    async def run() -> None:
        worker = Worker(WorkerConfig({"connector.client.config.override.policy": "None"}),
                        MemoryOffsetBackingStore())
        config = {"name": "x", "connector.class": "FileStreamSource", "topic": "t",
                  "file": "/dev/null", "producer.override.linger.ms": "0"}
        from strom.connect.file import FileStreamSourceConnector
        connector = WorkerConnector(worker, "x", FileStreamSourceConnector, config)
        assert await connector.start()
        task = worker.start_task(connector, 0, connector.task_configs()[0], paused=False)
        assert task.runner is not None
        await task.runner
        assert task.status.state == State.FAILED
        assert "Client Config Overrides not allowed: The 'None' policy does not allow " \
               "'linger.ms' to be overridden" in (task.status.trace or "")
        await connector.stop()
    asyncio.run(run())
