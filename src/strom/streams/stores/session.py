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

import struct
from collections.abc import Callable, Iterator
from typing import Any, Final

from strom.streams.serdes import Serde
from strom.streams.stores.api import BytesEngine
from strom.streams.stores.base import EngineStoreBuilder, RetainedStore
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


class SessionStore(RetainedStore):
    def _seen(self, raw: bytes) -> int:
        """The session end of an engine key."""
        return split_session_store_key(raw)[1].end

    # -- reads ---------------------------------------------------------------------------

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
        for _, raw in self._keys_by_time(earliest_end, latest_end):
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
        if not self._accepts(end):
            return
        raw = session_store_key(self._key(session.key), session.window)
        data = None if value is None else self.value_serde.serialize(self._name, value)
        self._apply(raw, end, data, timestamp)
        self._log(raw, data, timestamp)

    def remove(self, session: Windowed, timestamp: int = -1) -> None:
        self.put(session, None, timestamp)


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
