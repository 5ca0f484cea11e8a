"""Producer ids for InitProducerId: handed out from blocks the storage engine reserves durably.

Like Kafka's ProducerIdManager, ids come from blocks of PRODUCER_ID_BLOCK_SIZE; a block is
reserved (and fsynced) before any id in it is used, so ids never repeat across restarts. The
ids left in a block when the broker stops are skipped.
"""

from __future__ import annotations

import asyncio
from typing import Final

from strom.storage.api import StorageEngine

PRODUCER_ID_BLOCK_SIZE: Final = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE


class ProducerIdAllocator:
    def __init__(self, engine: StorageEngine, block_size: int = PRODUCER_ID_BLOCK_SIZE) -> None:
        self._engine = engine
        self._block_size = block_size
        self._next = 0
        self._end = 0  # the current block is [_next, _end)
        self._lock = asyncio.Lock()

    async def ensure(self, count: int) -> None:
        """Makes sure `count` ids can be taken with `take` without waiting (the rest of the
        current block is dropped when it holds fewer); raises StorageError if none can be
        reserved."""
        assert 0 < count <= self._block_size
        while self._end - self._next < count:
            async with self._lock:
                if self._end - self._next < count:
                    first = await self._engine.reserve_producer_ids(self._block_size)
                    self._next, self._end = first, first + self._block_size

    def take(self) -> int | None:
        """An id from the reserved block, or None when it is used up (see `ensure`)."""
        if self._next >= self._end:
            return None
        producer_id = self._next
        self._next += 1
        return producer_id

    async def allocate(self) -> int:
        """A producer id never handed out before; raises StorageError if none can be
        reserved."""
        await self.ensure(1)
        producer_id = self.take()  # no await since `ensure`: the id is there
        assert producer_id is not None
        return producer_id
