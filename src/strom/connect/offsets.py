"""Source offsets: the store behind `OffsetStorageReader`, and the standalone worker's file.

Keys and values are Kafka Connect's (the internal JSON converter without schemas): the key of a
source partition is ``["<connector>", {partition}]``, its value the offset map (or null, a
tombstone, once reset). The standalone file holds these pairs as JSON lines (Kafka's holds them
Java-serialized; distributed mode keeps the same pairs in `connect-offsets`, see kafka_store.py).
"""

from __future__ import annotations

import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from strom.connect.api import OffsetStorageReader


def offset_key(connector: str, partition: Mapping[str, Any] | None) -> str:
    return json.dumps([connector, dict(partition) if partition is not None else None],
                      separators=(",", ":"), sort_keys=True)


class OffsetBackingStore(ABC):
    @abstractmethod
    def get(self, key: str) -> Mapping[str, Any] | None: ...

    @abstractmethod
    def set(self, values: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Store these keys' offsets (None removes one) durably before returning."""

    @abstractmethod
    def items(self) -> list[tuple[str, Mapping[str, Any]]]: ...

    def transactional_topic(self) -> str | None:
        """The topic a source task's transactional producer writes offsets to (KIP-618);
        None: this store cannot take part in a transaction."""
        return None

    def read_to_end(self) -> None:  # noqa: B027 (optional: a local store is always current)
        """Wait until reads reflect every offset written so far."""

    def connector_offsets(self, connector: str
                          ) -> list[tuple[Mapping[str, Any] | None, Mapping[str, Any]]]:
        out = []
        for key, value in self.items():
            name, partition = json.loads(key)
            if name == connector:
                out.append((partition, value))
        return out


class MemoryOffsetBackingStore(OffsetBackingStore):
    def __init__(self) -> None:
        self._data: dict[str, Mapping[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Mapping[str, Any] | None:
        with self._lock:
            return self._data.get(key)

    def set(self, values: Mapping[str, Mapping[str, Any] | None]) -> None:
        with self._lock:
            for key, value in values.items():
                if value is None:
                    self._data.pop(key, None)
                else:
                    self._data[key] = dict(value)
            self._persist()

    def items(self) -> list[tuple[str, Mapping[str, Any]]]:
        with self._lock:
            return list(self._data.items())

    def _persist(self) -> None:
        pass


class FileOffsetBackingStore(MemoryOffsetBackingStore):
    """`offset.storage.file.filename`: rewritten whole (write, fsync, rename) at each flush."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    key, value = json.loads(line)
                    if value is not None:
                        self._data[key] = value

    def _persist(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as out:
            for key, value in self._data.items():
                out.write(json.dumps([key, value], separators=(",", ":")) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


class ConnectorOffsetReader(OffsetStorageReader):
    def __init__(self, store: OffsetBackingStore, connector: str) -> None:
        self.store = store
        self.connector = connector

    def offset(self, partition: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self.store.get(offset_key(self.connector, partition))
