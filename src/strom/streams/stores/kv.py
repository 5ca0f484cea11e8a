"""Key-value stores as processors use them: objects in, objects out, through the store's
serdes; every change also written to the store's changelog when logging is on (the default).

    builder.add_state_store(KeyValueStoreBuilder("seen", Serdes.String(), Serdes.Long()))
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any, Final

from strom.streams.serdes import Serde
from strom.streams.stores.api import BytesEngine
from strom.streams.stores.base import EngineStore, EngineStoreBuilder


class KeyValueStore(EngineStore):
    # -- values as the engine keeps them (the timestamped store adds its timestamp) -------

    def _encode(self, value: bytes, timestamp: int) -> bytes:
        return value

    def _plain(self, stored: bytes) -> bytes:
        return stored

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: Any) -> Any:
        data = self.engine.get(self._key(key))
        return None if data is None else self.value_serde.deserialize(self._name,
                                                                      self._plain(data))

    def range(self, start: Any = None, end: Any = None, reverse: bool = False
              ) -> Iterator[tuple[Any, Any]]:
        """Entries with start <= key <= end by serialized key order (None: unbounded)."""
        low = None if start is None else self._key(start)
        high = None if end is None else self._key(end)
        for key, value in self.engine.range(low, high, reverse):
            yield (self.key_serde.deserialize(self._name, key),
                   self.value_serde.deserialize(self._name, self._plain(value)))

    def all(self) -> Iterator[tuple[Any, Any]]:
        return self.range()

    # -- writes --------------------------------------------------------------------------

    def put(self, key: Any, value: Any, timestamp: int = -1) -> None:
        """Stores `value` (None deletes the key)."""
        raw_key = self._key(key)
        raw = None if value is None else self.value_serde.serialize(self._name, value)
        self._write(raw_key, raw, timestamp)

    def put_if_absent(self, key: Any, value: Any, timestamp: int = -1) -> Any:
        """Stores `value` unless the key has one; returns the value it had (None: stored)."""
        current = self.get(key)
        if current is None:
            self.put(key, value, timestamp)
        return current

    def delete(self, key: Any, timestamp: int = -1) -> Any:
        """Removes the key; returns its value (None if it had none)."""
        current = self.get(key)
        if current is not None:
            self._write(self._key(key), None, timestamp)
        return current

    def _write(self, key: bytes, value: bytes | None, timestamp: int) -> None:
        self.restore(key, value, timestamp)
        self._log(key, value, timestamp)

    def restore(self, key: bytes, value: bytes | None, timestamp: int = -1) -> None:
        if value is None:
            self.engine.delete(key)
        else:
            self.engine.put(key, self._encode(value, timestamp))


_TS: Final = struct.Struct(">q")


class TimestampedKeyValueStore(KeyValueStore):
    """Keeps each value with its timestamp (Kafka's TimestampedKeyValueStore: the engine
    holds the 8-byte timestamp then the value; the changelog record is the plain value with
    the timestamp as its own). `get` gives the value, `get_with_timestamp` both."""

    def _encode(self, value: bytes, timestamp: int) -> bytes:
        return _TS.pack(timestamp) + value

    def _plain(self, stored: bytes) -> bytes:
        return stored[8:]

    def get_with_timestamp(self, key: Any) -> tuple[Any, int] | None:
        data = self.engine.get(self._key(key))
        if data is None:
            return None
        return self.value_serde.deserialize(self._name, data[8:]), _TS.unpack_from(data)[0]


class KeyValueStoreBuilder(EngineStoreBuilder[KeyValueStore]):
    """Makes one store per task: in memory unless `engine` makes a persistent one."""

    def __init__(self, name: str, key_serde: Serde[Any] | None = None,
                 value_serde: Serde[Any] | None = None, *, logging: bool = True,
                 changelog_config: dict[str, str] | None = None,
                 engine: Callable[[str], BytesEngine] | None = None,
                 timestamped: bool = False, caching: bool = False) -> None:
        super().__init__(name, key_serde, value_serde, logging=logging,
                         changelog_config=dict(changelog_config or {}), engine=engine)
        self.timestamped = timestamped
        # A record cache in front of the store (strom.streams.stores.caching): the DSL's
        # aggregations ask for one; a timestamped store only.
        self.caching = caching and timestamped

    def _make(self, key_serde: Serde[Any], value_serde: Serde[Any], engine: BytesEngine, *,
              persistent: bool) -> KeyValueStore:
        kind: type[KeyValueStore] = TimestampedKeyValueStore if self.timestamped \
            else KeyValueStore
        if self.caching:
            from strom.streams.stores.caching import CachingKeyValueStore

            kind = CachingKeyValueStore
        return kind(self.name, key_serde, value_serde, engine, logging=self.logging,
                    persistent=persistent)
