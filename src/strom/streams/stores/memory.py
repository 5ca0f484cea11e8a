"""The in-memory engine: a dict, with its keys sorted when a range is asked for."""

from __future__ import annotations

import bisect
from collections.abc import Iterator


class MemoryEngine:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._sorted: list[bytes] | None = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self._data:
            self._sorted = None
        self._data[key] = value

    def delete(self, key: bytes) -> None:
        if self._data.pop(key, None) is not None:
            self._sorted = None

    def _keys(self) -> list[bytes]:
        if self._sorted is None:
            self._sorted = sorted(self._data)
        return self._sorted

    def range(self, start: bytes | None, end: bytes | None, reverse: bool = False
              ) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys()
        low = 0 if start is None else bisect.bisect_left(keys, start)
        high = len(keys) if end is None else bisect.bisect_right(keys, end)
        chosen = keys[low:high]  # a copy: the store may change while it is iterated
        for key in reversed(chosen) if reverse else chosen:
            value = self._data.get(key)
            if value is not None:
                yield key, value

    def count(self) -> int:
        return len(self._data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self._data.clear()
        self._sorted = []
