"""The store contract processors see, and the byte-level engines behind it.

A store keeps keys and values as bytes (its serdes turn them into objects at the edge), so
that keys sort as Kafka Streams sorts them (by their serialized bytes), the changelog records
are the stored bytes as they are, and a persistent engine needs no Python objects. Writes go
to the engine and, when the store logs changes, to its changelog topic (partition = the
task's), through the task's record collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from strom.streams.serdes import Serde


class StoreContext(Protocol):
    """What a store needs from its task: where to write its changelog."""

    @property
    def task_id(self) -> str: ...

    @property
    def partition(self) -> int: ...

    def log_change(self, topic: str, key: bytes, value: bytes | None, timestamp: int) -> None:
        ...

    def changelog_topic(self, store_name: str) -> str: ...


class StateStore(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def persistent(self) -> bool: ...

    def init(self, context: StoreContext) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def restore(self, key: bytes, value: bytes | None, timestamp: int = -1) -> None:
        """Applies one changelog record (restoration: nothing is logged)."""


class StoreBuilder(Protocol):
    """What a topology holds for each store: a name, and how to make the store of one task
    (KeyValueStoreBuilder, WindowStoreBuilder, SessionStoreBuilder, or one of your own)."""

    @property
    def name(self) -> str: ...

    @property
    def logging(self) -> bool: ...

    @property
    def changelog_config(self) -> dict[str, str]: ...

    @property
    def persistent(self) -> bool: ...

    def build(self, task_directory: str, default_key_serde: Serde[Any],
              default_value_serde: Serde[Any],
              default_engine: EngineFactory | None = None) -> StateStore:
        """The store of one task; a serde or engine the builder was not given is the
        application's default (default.key.serde, default.value.serde, default.dsl.store)."""


class BytesEngine(Protocol):
    """Ordered bytes -> bytes (memory, RocksDB, LMDB)."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def range(self, start: bytes | None, end: bytes | None, reverse: bool = False
              ) -> Iterator[tuple[bytes, bytes]]:
        """Entries with start <= key <= end (None: unbounded), in key order."""

    def count(self) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


# (task directory, store name) -> the engine of one task's store
EngineFactory = Callable[[str, str], BytesEngine]


def make_engine(own: Callable[[str], BytesEngine] | None, default: EngineFactory | None,
                task_directory: str, store_name: str) -> BytesEngine:
    """The builder's own engine, else the application's default, else memory."""
    if own is not None:
        return own(task_directory)
    if default is not None:
        return default(task_directory, store_name)
    from strom.streams.stores.memory import MemoryEngine

    return MemoryEngine()


def serialized(serde: Serde[Any], topic: str, value: Any) -> bytes:
    data = serde.serialize(topic, value)
    if data is None:
        raise ValueError(f"store {topic}: a key may not be None")
    return data
