"""The broker's authorizer: enabled with Kafka's `authorizer.class.name`, its ACLs kept by the
storage engine (`acl` metadata records) so every broker of a cluster applies the same.

A broker changing the ACLs (CreateAcls, DeleteAcls) uses the new set at once and moves the
cluster's ACL version; the others notice the new version within `acl.refresh.interval.ms`
(strom's) and reload (strom.broker.versioned_records).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from strom.broker.versioned_records import VersionedRecords
from strom.config.broker import BrokerConfig
from strom.security.acl import AclBinding, AclError, AclFilter, Authorizer
from strom.storage.api import StorageEngine

log = logging.getLogger(__name__)

ACL_KIND: Final = "acl"


def authorizer_enabled(config: BrokerConfig) -> bool:
    """authorizer.class.name set (BrokerConfig checked it names the standard authorizer)."""
    return bool(config.get("authorizer.class.name").strip())


class AclRuntime:
    """The ACLs in force on this broker; `authorizer` is None when authorization is off."""

    def __init__(self, config: BrokerConfig, engine: StorageEngine) -> None:
        self.enabled = authorizer_enabled(config)
        super_users = [p.strip() for p in config.get("super.users").split(";") if p.strip()]
        self.authorizer: Authorizer | None = (
            Authorizer(super_users=super_users,
                       allow_if_no_acl=config.get_bool("allow.everyone.if.no.acl.found"))
            if self.enabled else None)
        self.records = VersionedRecords(engine, ACL_KIND,
                                        config.get_int("acl.refresh.interval.ms") / 1000,
                                        self._load)

    def _load(self, records: dict[str, str]) -> None:
        assert self.authorizer is not None
        bindings = []
        for key in records:
            try:
                bindings.append(AclBinding.from_record(key))
            except AclError as exc:
                log.warning("ignoring a stored ACL: %s", exc)
        self.authorizer.replace(bindings)

    async def start(self) -> None:
        if self.authorizer is not None:
            await self.records.start()

    async def stop(self) -> None:
        await self.records.stop()

    def bindings(self) -> frozenset[AclBinding]:
        return frozenset() if self.authorizer is None else self.authorizer.bindings

    async def create(self, bindings: Sequence[AclBinding]) -> None:
        async with self.records.lock:
            await self.records.write({b.record(): "" for b in bindings}, ())
            assert self.authorizer is not None
            self.authorizer.replace(self.authorizer.bindings | set(bindings))

    async def delete(self, filters: Sequence[AclFilter]) -> list[list[AclBinding]]:
        """The bindings each filter deleted (a binding matched by several filters counts for
        each, as Kafka reports it)."""
        async with self.records.lock:
            current = self.bindings()
            matched = [[b for b in current if f.matches(b)] for f in filters]
            gone = {b for found in matched for b in found}
            if gone:
                await self.records.write({}, [b.record() for b in gone])
                assert self.authorizer is not None
                self.authorizer.replace(current - gone)
            return matched
