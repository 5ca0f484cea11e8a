"""A counting source whose records are keyed by their task (connector.class =
tests.integration.connect_keyed_plugins:KeyedCountingSource), so a test can tell the tasks'
counts apart in one topic."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping

from strom.connect.api import Task
from strom.connect.data import STRING_SCHEMA
from strom.connect.records import SourceRecord
from tests.integration.connect_plugins import CountingSource, CountingTask


class KeyedCountingSource(CountingSource):
    def task_class(self) -> type[Task]:
        return KeyedCountingTask


class KeyedCountingTask(CountingTask):
    """`poll.delay.ms`: each poll takes that long more (a stop waits for the poll under way)."""

    def start(self, props: Mapping[str, str]) -> None:
        super().start(props)
        self.delay_s = int(props.get("poll.delay.ms", "0")) / 1000

    async def poll(self) -> list[SourceRecord] | None:
        await asyncio.sleep(self.delay_s)
        records = await super().poll()
        return [dataclasses.replace(r, key_schema=STRING_SCHEMA, key=self.partition["task"])
                for r in records or []]
