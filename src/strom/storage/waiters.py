"""Long-polling fetches sleep here until an append reaches a partition they read: the engine
that appends wakes them (every engine keeps one; with several brokers only a partition's
owner appends to it, so a wake-up never has to cross brokers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Mapping

TopicPartition = tuple[str, int]


class DataWaiters:
    def __init__(self) -> None:
        self._events: dict[TopicPartition, set[asyncio.Event]] = defaultdict(set)

    def notify(self, topic: str, partition: int) -> None:
        for event in self._events.get((topic, partition), ()):
            event.set()

    async def wait(self, seen: Mapping[TopicPartition, int], timeout_s: float,
                   high_watermark: Callable[[TopicPartition], int | None]) -> None:
        """Returns once the high watermark of a partition in `seen` is no longer the one
        given (at once if it already moved), or after `timeout_s`. `high_watermark` gives a
        partition's current one (None: gone)."""
        keys = list(seen)
        event = asyncio.Event()
        for key in keys:
            self._events[key].add(event)
        try:
            if any(high_watermark(key) != hw for key, hw in seen.items()):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(timeout_s, 0.0))
        finally:
            for key in keys:
                waiting = self._events.get(key)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._events[key]
