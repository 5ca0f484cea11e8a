"""The store contract processors see, and the byte-level engines behind it.

A store keeps keys and values as bytes (its serdes turn them into objects at the edge), so
that keys sort as Kafka Streams sorts them (by their serialized bytes), the changelog records
are the stored bytes as they are, and a persistent engine needs no Python objects. Writes go
to the engine and, when the store logs changes, to its changelog topic (partition = the
task's), through the task's record collector.
"""

from __future__ import annotations

from collections.abc import Iterator
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


class StoreBuilder(Protocol):
    """What a topology keeps of a store: its name, whether and how it logs its changes, and how
    to make one instance of it per task (a key-value, window, ... store)."""

    @property
    def name(self) -> str: ...

    @property
    def logging(self) -> bool: ...

    @property
    def changelog_config(self) -> dict[str, str]: ...

    @property
    def persistent(self) -> bool: ...

    def build(self, task_directory: str, default_key_serde: Serde[Any],
              default_value_serde: Serde[Any]) -> StateStore:
        """The store of one task; a serde not given is the application's default."""


def serialized(serde: Serde[Any], topic: str, value: Any) -> bytes:
    data = serde.serialize(topic, value)
    if data is None:
        raise ValueError(f"store {topic}: a key may not be None")
    return data
