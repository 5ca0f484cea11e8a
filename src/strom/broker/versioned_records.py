"""Metadata records of one kind (ACLs, quotas) that any broker of a cluster may change: this
broker loads them at start, applies its own changes at once, and moves the kind's version in
the cluster records; the other brokers notice the new version within `refresh_s` and reload.
Brokers of a storage only one broker serves never see a foreign change, so they just poll a
small record now and then."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from strom.storage.api import StorageEngine, StorageError

log = logging.getLogger(__name__)

CLUSTER_KIND: Final = "cluster"


class VersionedRecords:
    def __init__(self, engine: StorageEngine, kind: str, refresh_s: float,
                 load: Callable[[dict[str, str]], None]) -> None:
        """`load(records)` is called with every record of `kind` at start and whenever
        another broker changed them."""
        self.engine = engine
        self.kind = kind
        self.version_key = f"{kind}.version"
        self.refresh_s = refresh_s
        self.load = load
        self.lock = asyncio.Lock()
        self._version: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _current_version(self) -> str | None:
        return (await self.engine.read_metadata(CLUSTER_KIND)).get(self.version_key)

    async def reload(self) -> None:
        version = await self._current_version()
        self.load(await self.engine.read_metadata(self.kind))
        self._version = version

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                if await self._current_version() != self._version:
                    async with self.lock:
                        await self.reload()
                    log.info("%s records changed at another broker: reloaded", self.kind)
            except StorageError as exc:
                log.debug("cannot check the %s version: %s", self.kind, exc)

    async def write(self, puts: Mapping[str, str], deletes: Sequence[str]) -> None:
        """Changes the records durably and moves their version (hold `lock`)."""
        await self.engine.write_metadata(self.kind, puts, deletes)
        self._version = uuid.uuid4().hex
        await self.engine.write_metadata(CLUSTER_KIND, {self.version_key: self._version}, ())
