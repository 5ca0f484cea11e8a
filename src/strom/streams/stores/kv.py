"""Key-value stores as processors use them: objects in, objects out, through the store's
serdes; every change also written to the store's changelog when logging is on (the default).

    builder.add_state_store(KeyValueStoreBuilder("seen", Serdes.String(), Serdes.Long()))
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import Any, Final

from strom.streams.serdes import BYTES, Serde
from strom.streams.stores.api import (
    BytesEngine,
    EngineFactory,
    StoreContext,
    make_engine,
    serialized,
)
from strom.streams.stores.memory import MemoryEngine


class KeyValueStore:
    def __init__(self, name: str, key_serde: Serde[Any], value_serde: Serde[Any],
                 engine: BytesEngine, *, logging: bool = True, persistent: bool = False) -> None:
        self._name = name
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.engine = engine
        self.logging = logging
        self._persistent = persistent
        self._context: StoreContext | None = None
        self._changelog = ""

    @property
    def name(self) -> str:
        return self._name

    @property
    def persistent(self) -> bool:
        return self._persistent

    def init(self, context: StoreContext) -> None:
        self._context = context
        self._changelog = context.changelog_topic(self._name) if self.logging else ""

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: Any) -> Any:
        data = self.engine.get(serialized(self.key_serde, self._name, key))
        return None if data is None else self.value_serde.deserialize(self._name, data)

    def range(self, start: Any = None, end: Any = None, reverse: bool = False
              ) -> Iterator[tuple[Any, Any]]:
        """Entries with start <= key <= end by serialized key order (None: unbounded)."""
        low = None if start is None else serialized(self.key_serde, self._name, start)
        high = None if end is None else serialized(self.key_serde, self._name, end)
        for key, value in self.engine.range(low, high, reverse):
            yield (self.key_serde.deserialize(self._name, key),
                   self.value_serde.deserialize(self._name, value))

    def all(self) -> Iterator[tuple[Any, Any]]:
        return self.range()

    def approximate_num_entries(self) -> int:
        return self.engine.count()

    # -- writes --------------------------------------------------------------------------

    def put(self, key: Any, value: Any, timestamp: int = -1) -> None:
        """Stores `value` (None deletes the key)."""
        raw_key = serialized(self.key_serde, self._name, key)
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
            self._write(serialized(self.key_serde, self._name, key), None, timestamp)
        return current

    def _write(self, key: bytes, value: bytes | None, timestamp: int) -> None:
        if value is None:
            self.engine.delete(key)
        else:
            self.engine.put(key, value)
        if self._changelog and self._context is not None:
            self._context.log_change(self._changelog, key, value, timestamp)

    def restore(self, key: bytes, value: bytes | None, timestamp: int = -1) -> None:
        if value is None:
            self.engine.delete(key)
        else:
            self.engine.put(key, value)

    def flush(self) -> None:
        self.engine.flush()

    def close(self) -> None:
        self.engine.close()


_TS: Final = struct.Struct(">q")


class TimestampedKeyValueStore(KeyValueStore):
    """Keeps each value with its timestamp (Kafka's TimestampedKeyValueStore: the engine
    holds the 8-byte timestamp then the value; the changelog record is the plain value with
    the timestamp as its own). `get` gives the value, `get_with_timestamp` both."""

    def get(self, key: Any) -> Any:
        found = self.get_with_timestamp(key)
        return None if found is None else found[0]

    def get_with_timestamp(self, key: Any) -> tuple[Any, int] | None:
        data = self.engine.get(serialized(self.key_serde, self._name, key))
        if data is None:
            return None
        return self.value_serde.deserialize(self._name, data[8:]), _TS.unpack_from(data)[0]

    def range(self, start: Any = None, end: Any = None, reverse: bool = False
              ) -> Iterator[tuple[Any, Any]]:
        low = None if start is None else serialized(self.key_serde, self._name, start)
        high = None if end is None else serialized(self.key_serde, self._name, end)
        for key, value in self.engine.range(low, high, reverse):
            yield (self.key_serde.deserialize(self._name, key),
                   self.value_serde.deserialize(self._name, value[8:]))

    def _write(self, key: bytes, value: bytes | None, timestamp: int) -> None:
        if value is None:
            self.engine.delete(key)
        else:
            self.engine.put(key, _TS.pack(timestamp) + value)
        if self._changelog and self._context is not None:
            self._context.log_change(self._changelog, key, value, timestamp)

    def restore(self, key: bytes, value: bytes | None, timestamp: int = -1) -> None:
        if value is None:
            self.engine.delete(key)
        else:
            self.engine.put(key, _TS.pack(timestamp) + value)


class KeyValueStoreBuilder:
    """Makes one store per task: in memory unless `engine` makes a persistent one."""

    def __init__(self, name: str, key_serde: Serde[Any] | None = None,
                 value_serde: Serde[Any] | None = None, *, logging: bool = True,
                 changelog_config: dict[str, str] | None = None,
                 engine: Callable[[str], BytesEngine] | None = None,
                 timestamped: bool = False) -> None:
        self.name = name
        self.timestamped = timestamped
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.logging = logging
        self.changelog_config = dict(changelog_config or {})
        self.engine = engine

    @property
    def persistent(self) -> bool:
        return self.engine is not None

    def build(self, task_directory: str, default_key_serde: Serde[Any] = BYTES,
              default_value_serde: Serde[Any] = BYTES,
              default_engine: EngineFactory | None = None) -> KeyValueStore:
        """The store of one task; a serde not given is the application's default."""
        engine = make_engine(self.engine, default_engine, task_directory, self.name)
        kind = TimestampedKeyValueStore if self.timestamped else KeyValueStore
        return kind(self.name, self.key_serde or default_key_serde,
                    self.value_serde or default_value_serde, engine,
                    logging=self.logging, persistent=not isinstance(engine, MemoryEngine))
