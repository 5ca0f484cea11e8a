"""Window stores (Kafka Streams' WindowStore): values by key and window start, kept for a
retention period.

The engine key is Kafka's window-store key, which is also the changelog record's key: the
serialized key, the window start (8 bytes, big-endian) and a sequence number (4 bytes, 0
unless the store keeps duplicates). Keys sort by their bytes, so a key's windows in a time
range are one range scan. A `TimestampedWindowStore` keeps each value with a timestamp (the
engine holds the 8-byte timestamp then the value; the changelog record is the plain value
with that timestamp as its own, as Kafka's timestamped window store logs it).

Retention: the store's stream time is the largest window start put (or restored). An entry
whose window start is older than that minus the retention (start < stream time - retention)
has expired: it is removed, reads no longer see it, and a put for such a window is dropped
(counted in `expired`), as in Kafka's window stores (without segments: expiry is exact).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any, Final

from strom.streams.serdes import Serde
from strom.streams.stores.api import BytesEngine
from strom.streams.stores.base import EngineStoreBuilder, RetainedStore
from strom.streams.windows import Duration, Window, Windowed, to_ms

_LONG: Final = struct.Struct(">q")
_INT: Final = struct.Struct(">i")
_SUFFIX: Final = 12
MAX_TIME: Final = 2**63 - 1
MAX_SEQNUM: Final = 0x7FFFFFFF
# Kafka's windowstore.changelog.additional.retention.ms: a day
ADDITIONAL_CHANGELOG_RETENTION_MS: Final = 86_400_000


def window_store_key(key: bytes, window_start: int, seqnum: int = 0) -> bytes:
    """Kafka's window-store (and changelog) key: key, 8-byte start, 4-byte sequence number."""
    return key + _LONG.pack(window_start) + _INT.pack(seqnum)


def split_window_store_key(raw: bytes) -> tuple[bytes, int, int]:
    """(key, window start, sequence number) of a window-store key."""
    if len(raw) < _SUFFIX:
        raise ValueError(f"a window-store key has at least {_SUFFIX} bytes, not {len(raw)}")
    return raw[:-_SUFFIX], _LONG.unpack_from(raw, len(raw) - _SUFFIX)[0], \
        _INT.unpack_from(raw, len(raw) - 4)[0]


class WindowStore(RetainedStore):
    def __init__(self, name: str, key_serde: Serde[Any], value_serde: Serde[Any],
                 engine: BytesEngine, *, retention_ms: int, window_size_ms: int,
                 retain_duplicates: bool = False, logging: bool = True,
                 persistent: bool = False) -> None:
        super().__init__(name, key_serde, value_serde, engine, retention_ms=retention_ms,
                         logging=logging, persistent=persistent)
        self.window_size_ms = window_size_ms
        self.retain_duplicates = retain_duplicates
        self._seqnum = 0

    def _seen(self, raw: bytes) -> int:
        """The window start of an engine key (noting its sequence number)."""
        _, start, seqnum = split_window_store_key(raw)
        self._seqnum = max(self._seqnum, seqnum)
        return start

    # -- values as the engine keeps them (the timestamped store adds its timestamp) -------

    def _decode(self, stored: bytes) -> tuple[bytes, int]:
        return stored, -1

    # -- reads ---------------------------------------------------------------------------

    def _value(self, stored: bytes) -> Any:
        return self.value_serde.deserialize(self._name, self._decode(stored)[0])

    def _window(self, start: int) -> Window:
        return Window(start, min(start + self.window_size_ms, MAX_TIME))

    def _scan(self, key: bytes, time_from: int, time_to: int, reverse: bool
              ) -> Iterator[tuple[int, bytes]]:
        """(window start, stored value) of one key's windows with start in [from, to]."""
        low = max(time_from, self._min_live)
        if time_to < low:
            return
        for raw, stored in list(self.engine.range(window_store_key(key, low, 0),
                                                  window_store_key(key, time_to, MAX_SEQNUM),
                                                  reverse)):
            found, start, _ = split_window_store_key(raw)
            if found == key:  # a longer key may sort between a key's entries
                yield start, stored

    def fetch(self, key: Any, window_start: int) -> Any:
        """The value of `key`'s window starting at `window_start` (None: none)."""
        for _, stored in self._scan(self._key(key), window_start, window_start, False):
            return self._value(stored)
        return None

    def fetch_range(self, key: Any, time_from: int, time_to: int, *, reverse: bool = False
                    ) -> Iterator[tuple[int, Any]]:
        """(window start, value) of `key`'s windows with time_from <= start <= time_to."""
        for start, stored in self._scan(self._key(key), time_from, time_to, reverse):
            yield start, self._value(stored)

    def fetch_key_range(self, key_from: Any, key_to: Any, time_from: int, time_to: int, *,
                        reverse: bool = False) -> Iterator[tuple[Windowed, Any]]:
        """Windows of the keys from `key_from` to `key_to` (serialized order, None:
        unbounded) with start in [time_from, time_to], by key then start."""
        low_key = b"" if key_from is None else self._key(key_from)
        high_key = None if key_to is None else self._key(key_to)
        low = max(time_from, self._min_live)
        high = None if high_key is None else window_store_key(high_key, MAX_TIME, MAX_SEQNUM)
        for raw, stored in list(self.engine.range(low_key, high, reverse)):
            key, start, _ = split_window_store_key(raw)
            if low <= start <= time_to and key >= low_key and (
                    high_key is None or key <= high_key):
                yield self._windowed(key, start), self._value(stored)

    def fetch_all(self, time_from: int, time_to: int, *, reverse: bool = False
                  ) -> Iterator[tuple[Windowed, Any]]:
        """Every key's windows with start in [time_from, time_to], by start then key."""
        for raw, start, stored in self._entries_by_start(time_from, time_to, reverse):
            yield self._windowed(split_window_store_key(raw)[0], start), self._value(stored)

    def all(self) -> Iterator[tuple[Windowed, Any]]:
        return self.fetch_all(0, MAX_TIME)

    def _entries_by_start(self, time_from: int, time_to: int, reverse: bool
                          ) -> Iterator[tuple[bytes, int, bytes]]:
        for start, raw in self._keys_by_time(time_from, time_to, reverse):
            stored = self.engine.get(raw)
            if stored is not None:
                yield raw, start, stored

    def _windowed(self, key: bytes, start: int) -> Windowed:
        return Windowed(self.key_serde.deserialize(self._name, key), self._window(start))

    # -- writes --------------------------------------------------------------------------

    def put(self, key: Any, value: Any, window_start: int, timestamp: int = -1) -> None:
        """Stores `value` for `key`'s window starting at `window_start` (None deletes it; a
        store keeping duplicates adds each value and ignores None)."""
        if not self._accepts(window_start):
            return
        if self.retain_duplicates:
            if value is None:
                return
            self._seqnum = (self._seqnum + 1) & MAX_SEQNUM
        raw = window_store_key(self._key(key), window_start,
                               self._seqnum if self.retain_duplicates else 0)
        data = None if value is None else self.value_serde.serialize(self._name, value)
        self._apply(raw, window_start, data, timestamp)
        self._log(raw, data, timestamp)


class TimestampedWindowStore(WindowStore):
    """A window store whose values carry a timestamp (the DSL's windowed aggregations keep
    the latest record timestamp of each window)."""

    def _encode(self, value: bytes, timestamp: int) -> bytes:
        return _LONG.pack(timestamp) + value

    def _decode(self, stored: bytes) -> tuple[bytes, int]:
        return stored[8:], _LONG.unpack_from(stored)[0]

    def _with_timestamp(self, stored: bytes) -> tuple[Any, int]:
        data, timestamp = self._decode(stored)
        return self.value_serde.deserialize(self._name, data), timestamp

    def fetch_with_timestamp(self, key: Any, window_start: int) -> tuple[Any, int] | None:
        for _, stored in self._scan(self._key(key), window_start, window_start, False):
            return self._with_timestamp(stored)
        return None

    def fetch_range_with_timestamps(self, key: Any, time_from: int, time_to: int, *,
                                    reverse: bool = False
                                    ) -> Iterator[tuple[int, Any, int]]:
        """(window start, value, timestamp) of `key`'s windows in [time_from, time_to]."""
        for start, stored in self._scan(self._key(key), time_from, time_to, reverse):
            yield (start, *self._with_timestamp(stored))

    def fetch_all_with_timestamps(self, time_from: int, time_to: int
                                  ) -> Iterator[tuple[Windowed, Any, int]]:
        for raw, start, stored in self._entries_by_start(time_from, time_to, False):
            yield (self._windowed(split_window_store_key(raw)[0], start),
                   *self._with_timestamp(stored))


class WindowStoreBuilder(EngineStoreBuilder[WindowStore]):
    """Makes one window store per task: in memory unless `engine` makes a persistent one.
    The changelog topic is compacted and deleted after the retention plus a day (Kafka's
    windowstore.changelog.additional.retention.ms), only deleted for a store of duplicates."""

    def __init__(self, name: str, retention: Duration, window_size: Duration,
                 key_serde: Serde[Any] | None = None, value_serde: Serde[Any] | None = None,
                 *, retain_duplicates: bool = False, timestamped: bool = False,
                 logging: bool = True, changelog_config: dict[str, str] | None = None,
                 engine: Callable[[str], BytesEngine] | None = None,
                 caching: bool = False) -> None:
        # A record cache in front of the store (strom.streams.stores.caching): time-window
        # aggregations that emit on update ask for one; timestamped, no duplicates only.
        self.caching = caching and timestamped and not retain_duplicates
        self.retention_ms = to_ms(retention, "retention")
        self.window_size_ms = to_ms(window_size, "window size")
        if self.window_size_ms < 0 or self.retention_ms < self.window_size_ms:
            raise ValueError(f"store {name}: the retention ({self.retention_ms} ms) must be "
                             f"no smaller than the window size ({self.window_size_ms} ms)")
        self.retain_duplicates = retain_duplicates
        self.timestamped = timestamped
        super().__init__(name, key_serde, value_serde, logging=logging, changelog_config={
            "cleanup.policy": "delete" if retain_duplicates else "compact,delete",
            "retention.ms": str(self.retention_ms + ADDITIONAL_CHANGELOG_RETENTION_MS),
            **(changelog_config or {})}, engine=engine)

    def _make(self, key_serde: Serde[Any], value_serde: Serde[Any], engine: BytesEngine, *,
              persistent: bool) -> WindowStore:
        kind: type[WindowStore] = TimestampedWindowStore if self.timestamped else WindowStore
        if self.caching:
            from strom.streams.stores.caching import CachingWindowStore

            kind = CachingWindowStore
        return kind(self.name, key_serde, value_serde, engine,
                    retention_ms=self.retention_ms, window_size_ms=self.window_size_ms,
                    retain_duplicates=self.retain_duplicates, logging=self.logging,
                    persistent=persistent)
