"""Deadlines by key, Kafka's purgatories as data: at most one live timer per key.

`schedule` replaces a key's timer; `cancel` drops it. Replaced and cancelled entries stay in
the heap until they surface (or a compaction), so every operation is O(log n).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

P = TypeVar("P")


class TimerQueue(Generic[P]):
    def __init__(self) -> None:
        self._live: dict[Hashable, tuple[int, int, P]] = {}  # key -> (deadline, seq, payload)
        self._heap: list[tuple[int, int, Hashable]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def schedule(self, key: Hashable, deadline_ms: int, payload: P) -> None:
        self._seq += 1
        self._live[key] = (deadline_ms, self._seq, payload)
        heapq.heappush(self._heap, (deadline_ms, self._seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def cancel(self, key: Hashable) -> None:
        self._live.pop(key, None)

    def get(self, key: Hashable) -> tuple[int, P] | None:
        entry = self._live.get(key)
        return None if entry is None else (entry[0], entry[2])

    @property
    def seq(self) -> int:
        """The sequence number of the latest schedule; later schedules get larger ones."""
        return self._seq

    def next_deadline_ms(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int, scheduled_up_to: int) -> tuple[Hashable, P] | None:
        """The earliest timer due at `now_ms` among those scheduled up to seq `scheduled_up_to`.

        Timers scheduled while a tick runs wait for the next tick, so a zero timeout cannot
        make one tick loop forever.
        """
        self._drop_stale()
        skipped: list[tuple[int, int, Hashable]] = []
        found: tuple[Hashable, P] | None = None
        while self._heap and self._heap[0][0] <= now_ms:
            deadline, seq, key = heapq.heappop(self._heap)
            live = self._live.get(key)
            if live is None or live[1] != seq:
                continue
            if seq > scheduled_up_to:
                skipped.append((deadline, seq, key))
                continue
            del self._live[key]
            found = (key, live[2])
            break
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        return found

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            _, seq, key = heap[0]
            live = self._live.get(key)
            if live is not None and live[1] == seq:
                return
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [(deadline, seq, key) for key, (deadline, seq, _) in self._live.items()]
        heapq.heapify(self._heap)
