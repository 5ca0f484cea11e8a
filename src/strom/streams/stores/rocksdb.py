"""The persistent engine: RocksDB (through rocksdict), one database per store and task, in
`<state.dir>/<application.id>/<task id>/rocksdb/<store>/`. Keys sort bytewise, as the other
engines'. Writes go to RocksDB's write-ahead log without an fsync each (as Kafka Streams
writes them): what a crash loses is restored from the changelog, which is what the task's
checkpoint is for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rocksdict import Options, Rdict


class RocksDBEngine:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self.path = path
        self._db = Rdict(str(path), options=options)

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        self._db[key] = value

    def delete(self, key: bytes) -> None:
        del self._db[key]

    def range(self, start: bytes | None, end: bytes | None, reverse: bool = False
              ) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        if reverse:
            if end is None:
                it.seek_to_last()
            else:
                it.seek_for_prev(end)
            while it.valid():
                key = bytes(it.key())
                if start is not None and key < start:
                    break
                yield key, bytes(it.value())
                it.prev()
        else:
            if start is None:
                it.seek_to_first()
            else:
                it.seek(start)
            while it.valid():
                key = bytes(it.key())
                if end is not None and key > end:
                    break
                yield key, bytes(it.value())
                it.next()

    def count(self) -> int:
        estimate = self._db.property_int_value("rocksdb.estimate-num-keys")
        return int(estimate or 0)

    def flush(self) -> None:
        self._db.flush()

    def close(self) -> None:
        self._db.close()


def rocksdb_engine(task_directory: str, store_name: str) -> RocksDBEngine:
    return RocksDBEngine(Path(task_directory) / "rocksdb" / store_name)
