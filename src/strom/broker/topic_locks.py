"""One lock per topic for the admin requests that check a topic and then change it.

CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs/IncrementalAlterConfigs,
DeleteRecords and Metadata's auto-creation each check the topic as it is and then act; two of
them on one topic must not interleave between the check and the act (two CreatePartitions
both passed the growth check, and the second failed inside the engine). Names that collide
in Kafka's metric names (`a.b` and `a_b`) share a lock, so two concurrent creations of such
names cannot both pass the collision check. Locks exist only while held or awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


def _lock_key(name: str) -> str:
    return name.replace(".", "_")


class TopicLocks:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> (lock, users)

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Holds `name`'s lock for the body of the `async with`."""
        key = _lock_key(name)
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
