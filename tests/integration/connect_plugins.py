"""Connectors for the strom.connect tests, loaded by module path (connector.class =
tests.integration.connect_plugins:CountingSource)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from strom.connect.api import SinkConnector, SinkTask, SourceConnector, SourceTask, Task
from strom.connect.config import ConfigDef, ConfigType, Importance, NonEmptyString
from strom.connect.data import STRING_SCHEMA, Headers
from strom.connect.records import SinkRecord, SourceRecord

# Records every MemorySink task received, by connector name.
RECEIVED: dict[str, list[SinkRecord]] = {}


class CountingSource(SourceConnector):
    """Counts from where its offset says into `topic`; its task raises while the file
    `fail.flag` exists (to crash it on demand)."""

    def __init__(self) -> None:
        self.props: dict[str, str] = {}

    def version(self) -> str:
        return "1.0"

    def config(self) -> ConfigDef:
        return (ConfigDef()
                .define("topic", ConfigType.STRING, importance=Importance.HIGH,
                        doc="Where to write", validator=NonEmptyString())
                .define("fail.flag", ConfigType.STRING, "", Importance.LOW, "Crash file"))

    def start(self, props: Mapping[str, str]) -> None:
        self.props = dict(props)

    def task_class(self) -> type[Task]:
        return CountingTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [dict(self.props, task=str(i)) for i in range(max_tasks)]

    def stop(self) -> None:
        pass


class CountingTask(SourceTask):
    def version(self) -> str:
        return "1.0"

    def start(self, props: Mapping[str, str]) -> None:
        self.topic = props["topic"]
        self.flag = props.get("fail.flag", "")
        self.partition = {"task": props.get("task", "0")}
        assert self.context is not None
        offset = self.context.offset_storage_reader().offset(self.partition)
        self.n = int(offset["n"]) if offset else 0

    async def poll(self) -> list[SourceRecord] | None:
        import asyncio
        await asyncio.sleep(0.05)
        if self.flag and os.path.exists(self.flag):
            raise RuntimeError("the counting source crashed on purpose")
        self.n += 1
        return [SourceRecord(topic=self.topic, value_schema=STRING_SCHEMA, value=str(self.n),
                             headers=Headers(), source_partition=self.partition,
                             source_offset={"n": self.n})]

    def stop(self) -> None:
        pass


class MemorySink(SinkConnector):
    def __init__(self) -> None:
        self.props: dict[str, str] = {}

    def version(self) -> str:
        return "1.0"

    def start(self, props: Mapping[str, str]) -> None:
        self.props = dict(props)

    def task_class(self) -> type[Task]:
        return MemorySinkTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [dict(self.props) for _ in range(max_tasks)]

    def stop(self) -> None:
        pass


class MemorySinkTask(SinkTask):
    def version(self) -> str:
        return "1.0"

    def start(self, props: Mapping[str, str]) -> None:
        self.name = props["name"]

    def put(self, records: Sequence[SinkRecord]) -> Any:
        RECEIVED.setdefault(self.name, []).extend(records)

    def stop(self) -> None:
        pass
