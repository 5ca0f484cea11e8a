"""The broker's authorizer: enabled with Kafka's `authorizer.class.name`, its ACLs kept by the
storage engine (`acl` metadata records) so every broker of a cluster applies the same.

A broker changing the ACLs (CreateAcls, DeleteAcls) uses the new set at once and moves the
cluster's ACL version; the others notice the new version within `acl.refresh.interval.ms`
(strom's; brokers of one process-local storage never need to) and reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Final

from strom.config.broker import BrokerConfig
from strom.security.acl import AclBinding, AclError, AclFilter, Authorizer
from strom.storage.api import StorageEngine, StorageError

log = logging.getLogger(__name__)

ACL_KIND: Final = "acl"
CLUSTER_KIND: Final = "cluster"
VERSION_KEY: Final = "acl.version"
def authorizer_enabled(config: BrokerConfig) -> bool:
    """authorizer.class.name set (BrokerConfig checked it names the standard authorizer)."""
    return bool(config.get("authorizer.class.name").strip())


class AclRuntime:
    """The ACLs in force on this broker; `authorizer` is None when authorization is off."""

    def __init__(self, config: BrokerConfig, engine: StorageEngine) -> None:
        self.engine = engine
        self.enabled = authorizer_enabled(config)
        super_users = [p.strip() for p in config.get("super.users").split(";") if p.strip()]
        self.authorizer: Authorizer | None = (
            Authorizer(super_users=super_users,
                       allow_if_no_acl=config.get_bool("allow.everyone.if.no.acl.found"))
            if self.enabled else None)
        self.refresh_s = config.get_int("acl.refresh.interval.ms") / 1000
        self._version: str | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.authorizer is None:
            return
        await self.reload()
        self._task = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def reload(self) -> None:
        assert self.authorizer is not None
        version = (await self.engine.read_metadata(CLUSTER_KIND)).get(VERSION_KEY)
        bindings = []
        for key in await self.engine.read_metadata(ACL_KIND):
            try:
                bindings.append(AclBinding.from_record(key))
            except AclError as exc:
                log.warning("ignoring a stored ACL: %s", exc)
        self.authorizer.replace(bindings)
        self._version = version

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                version = (await self.engine.read_metadata(CLUSTER_KIND)).get(VERSION_KEY)
                if version != self._version:
                    async with self._lock:
                        await self.reload()
                    log.info("ACLs reloaded: %d binding(s)",
                             len(self.authorizer.bindings) if self.authorizer else 0)
            except StorageError as exc:
                log.debug("cannot check the ACL version: %s", exc)

    def bindings(self) -> frozenset[AclBinding]:
        return frozenset() if self.authorizer is None else self.authorizer.bindings

    async def create(self, bindings: Sequence[AclBinding]) -> None:
        async with self._lock:
            await self._write({b.record(): "" for b in bindings}, ())
            assert self.authorizer is not None
            self.authorizer.replace(self.authorizer.bindings | set(bindings))

    async def delete(self, filters: Sequence[AclFilter]) -> list[list[AclBinding]]:
        """The bindings each filter deleted (a binding matched by several filters counts for
        each, as Kafka reports it)."""
        async with self._lock:
            current = self.bindings()
            matched = [[b for b in current if f.matches(b)] for f in filters]
            gone = {b for found in matched for b in found}
            if gone:
                await self._write({}, [b.record() for b in gone])
                assert self.authorizer is not None
                self.authorizer.replace(current - gone)
            return matched

    async def _write(self, puts: dict[str, str], deletes: Iterable[str]) -> None:
        await self.engine.write_metadata(ACL_KIND, puts, list(deletes))
        self._version = uuid.uuid4().hex
        await self.engine.write_metadata(CLUSTER_KIND, {VERSION_KEY: self._version}, ())
