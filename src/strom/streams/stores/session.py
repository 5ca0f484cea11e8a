"""Session stores (Kafka Streams' SessionStore): one value per key and session window
[start, end] (both included), kept for a retention period.

The engine key is Kafka's session-store (and changelog) key: the serialized key, the session
end (8 bytes, big-endian), then its start (8 bytes). A key's sessions thus sort by end, and
finding the sessions that end at or after a time is a range scan.

Retention: the store's stream time is the largest session end put (or restored). A session
whose end is older than that minus the retention (end < stream time - retention) has expired:
it is removed, reads no longer see it, and a put for it is dropped (counted in `expired`).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterator
from typing import Any, Final

from strom.streams.serdes import Serde
from strom.streams.stores.api import BytesEngine, StoreContext
from strom.streams.stores.base import EngineStore, EngineStoreBuilder
from strom.streams.stores.window import ADDITIONAL_CHANGELOG_RETENTION_MS, MAX_TIME
from strom.streams.windows import Duration, Window, Windowed, to_ms

_TIMES: Final = struct.Struct(">qq")


def session_store_key(key: bytes, window: Window) -> bytes:
    """Kafka's session-store (and changelog) key: key, 8-byte end, 8-byte start."""
    return key + _TIMES.pack(window.end, window.start)


def split_session_store_key(raw: bytes) -> tuple[bytes, Window]:
    """(key, session window) of a session-store key."""
    if len(raw) < _TIMES.size:
        raise ValueError(f"a session-store key has at least {_TIMES.size} bytes, not "
                         f"{len(raw)}")
    end, start = _TIMES.unpack_from(raw, len(raw) - _TIMES.size)
    return raw[:-_TIMES.size], Window(start, end)


class SessionStore(EngineStore):
    def __init__(self, name: str, key_serde: Serde[Any], value_serde: Serde[Any],
                 engine: BytesEngine, *, retention_ms: int, logging: bool = True,
                 persistent: bool = False) -> None:
        super().__init__(name, key_serde, value_serde, engine, logging=logging,
                         persistent=persistent)
        self.retention_ms = retention_ms
        self.observed_stream_time = -1
        self.expired = 0  # puts dropped because their session had expired
        self._ends: list[int] = []  # the session ends held, sorted
        self._by_end: dict[int, set[bytes]] = {}  # session end -> engine keys

    def init(self, context: StoreContext) -> None:
        super().init(context)
        for raw, _ in self.engine.range(None, None):  # a persistent engine's entries
            end = split_session_store_key(raw)[1].end
            self._index(raw, end)
            self.observed_stream_time = max(self.observed_stream_time, end)
        self._expire()

    # -- reads ---------------------------------------------------------------------------

    @property
    def _min_live(self) -> int:
        """The oldest session end that has not expired."""
        return max(0, self.observed_stream_time - self.retention_ms)

    def _entry(self, raw: bytes, stored: bytes) -> tuple[Windowed, Any]:
        key, window = split_session_store_key(raw)
        return (Windowed(self.key_serde.deserialize(self._name, key), window),
                self.value_serde.deserialize(self._name, stored))

    def find_sessions(self, key: Any, earliest_session_end: int, latest_session_start: int,
                      *, reverse: bool = False) -> Iterator[tuple[Windowed, Any]]:
        """`key`'s sessions that end at or after `earliest_session_end` and start at or
        before `latest_session_start`, by end then start."""
        raw_key = self._key(key)
        low = session_store_key(raw_key, Window(0, max(0, earliest_session_end,
                                                       self._min_live)))
        high = raw_key + _TIMES.pack(MAX_TIME, MAX_TIME)
        for raw, stored in list(self.engine.range(low, high, reverse)):
            found, window = split_session_store_key(raw)
            if found == raw_key and window.start <= latest_session_start:
                yield self._entry(raw, stored)

    def fetch_session(self, key: Any, start: int, end: int) -> Any:
        """The value of `key`'s session [start, end] (None: none)."""
        if end < self._min_live:
            return None
        stored = self.engine.get(session_store_key(self._key(key), Window(start, end)))
        return None if stored is None else self.value_serde.deserialize(self._name, stored)

    def fetch(self, key: Any) -> Iterator[tuple[Windowed, Any]]:
        """All of `key`'s sessions, by end then start."""
        return self.find_sessions(key, 0, MAX_TIME)

    def find_sessions_by_end(self, earliest_end: int, latest_end: int
                             ) -> Iterator[tuple[Windowed, Any]]:
        """Every key's sessions ending in [earliest_end, latest_end], by end, key, start."""
        low = bisect.bisect_left(self._ends, max(earliest_end, self._min_live))
        high = bisect.bisect_right(self._ends, latest_end)
        for end in self._ends[low:high]:
            for raw in sorted(self._by_end.get(end, ())):
                stored = self.engine.get(raw)
                if stored is not None:
                    yield self._entry(raw, stored)

    def all(self) -> Iterator[tuple[Windowed, Any]]:
        return self.find_sessions_by_end(0, MAX_TIME)

    # -- writes --------------------------------------------------------------------------

    def put(self, session: Windowed, value: Any, timestamp: int = -1) -> None:
        """Stores `value` for the session (None removes it); `timestamp` is the changelog
        record's (the task's stream time if not given)."""
        end = session.window.end
        self._observe(end)
        if end < self._min_live:
            self.expired += 1
            return
        raw = session_store_key(self._key(session.key), session.window)
        data = None if value is None else self.value_serde.serialize(self._name, value)
        self._apply(raw, end, data)
        self._log(raw, data, timestamp)

    def remove(self, session: Windowed, timestamp: int = -1) -> None:
        self.put(session, None, timestamp)

    def restore(self, key: bytes, value: bytes | None, timestamp: int = -1) -> None:
        end = split_session_store_key(key)[1].end
        self._observe(end)
        if end >= self._min_live:
            self._apply(key, end, value)

    def _apply(self, raw: bytes, end: int, data: bytes | None) -> None:
        if data is None:
            self.engine.delete(raw)
            keys = self._by_end.get(end)
            if keys is not None:
                keys.discard(raw)
        else:
            self.engine.put(raw, data)
            self._index(raw, end)

    def _index(self, raw: bytes, end: int) -> None:
        keys = self._by_end.get(end)
        if keys is None:
            keys = self._by_end[end] = set()
            bisect.insort(self._ends, end)
        keys.add(raw)

    def _observe(self, end: int) -> None:
        if end > self.observed_stream_time:
            self.observed_stream_time = end
            self._expire()

    def _expire(self) -> None:
        cut = bisect.bisect_left(self._ends, self._min_live)
        for end in self._ends[:cut]:
            for raw in self._by_end.pop(end, ()):
                self.engine.delete(raw)
        del self._ends[:cut]


class SessionStoreBuilder(EngineStoreBuilder[SessionStore]):
    """Makes one session store per task: in memory unless `engine` makes a persistent one.
    The changelog topic is compacted and deleted after the retention plus a day."""

    def __init__(self, name: str, retention: Duration, key_serde: Serde[Any] | None = None,
                 value_serde: Serde[Any] | None = None, *, logging: bool = True,
                 changelog_config: dict[str, str] | None = None,
                 engine: Callable[[str], BytesEngine] | None = None) -> None:
        self.retention_ms = to_ms(retention, "retention")
        if self.retention_ms < 0:
            raise ValueError(f"store {name}: the retention must not be negative")
        super().__init__(name, key_serde, value_serde, logging=logging, changelog_config={
            "cleanup.policy": "compact,delete",
            "retention.ms": str(self.retention_ms + ADDITIONAL_CHANGELOG_RETENTION_MS),
            **(changelog_config or {})}, engine=engine)

    def _make(self, key_serde: Serde[Any], value_serde: Serde[Any], engine: BytesEngine, *,
              persistent: bool) -> SessionStore:
        return SessionStore(self.name, key_serde, value_serde, engine,
                            retention_ms=self.retention_ms, logging=self.logging,
                            persistent=persistent)
