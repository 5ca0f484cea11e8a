"""The cluster's security metadata (the cluster's SASL secret, SCRAM credentials; ACLs and
quotas next) as key-value records by kind, kept by the storage engine so that every broker
of a cluster sees the same.

Engines that one broker serves alone keep them in memory (MemoryRecords) and, with a data
directory, in one JSON file per kind written atomically (FileRecords: `strom-<kind>.json`
next to meta.properties); the PostgreSQL engine in its `strom_metadata` table.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

KINDS: Final = frozenset({"cluster", "scram", "acl", "quota"})


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown metadata kind {kind!r}")


class MemoryRecords:
    """Records held in memory only (the memory engine)."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, str]] = {}
        self._lock = asyncio.Lock()

    async def read(self, kind: str) -> dict[str, str]:
        check_kind(kind)
        return dict(self._records.get(kind, {}))

    async def write(self, kind: str, puts: Mapping[str, str], deletes: Sequence[str]) -> None:
        check_kind(kind)
        async with self._lock:
            records = self._records.setdefault(kind, {})
            self._apply(records, puts, deletes)

    @staticmethod
    def _apply(records: dict[str, str], puts: Mapping[str, str], deletes: Sequence[str]) -> None:
        for key in deletes:
            records.pop(key, None)
        records.update(puts)


class FileRecords(MemoryRecords):
    """Records in memory and, durably, in `strom-<kind>.json` in a data directory."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def path(self, kind: str) -> Path:
        return self.directory / f"strom-{kind}.json"

    def load(self) -> None:
        """Reads every kind's file (blocking; at open)."""
        for kind in KINDS:
            self._records[kind] = load_file(self.path(kind))

    async def write(self, kind: str, puts: Mapping[str, str], deletes: Sequence[str]) -> None:
        check_kind(kind)
        async with self._lock:
            records = dict(self._records.get(kind, {}))
            self._apply(records, puts, deletes)
            data = json.dumps(records, sort_keys=True, indent=1).encode()
            await asyncio.to_thread(_write_private, self.path(kind), data)
            self._records[kind] = records


def load_file(path: Path) -> dict[str, str]:
    """The records of one kind's file ({} if there is none)."""
    if not path.exists():
        return {}
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}): restore it from a backup") from None
    if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()):
        raise ValueError(f"{path} does not hold an object of strings: restore it from a backup")
    return loaded


def write_file(path: Path, puts: Mapping[str, str], deletes: Sequence[str]) -> None:
    """Changes one kind's file in place (blocking; `strom user set --data-dir` before the
    broker starts)."""
    records = load_file(path)
    for key in deletes:
        records.pop(key, None)
    records.update(puts)
    _write_private(path, json.dumps(records, sort_keys=True, indent=1).encode())


def _write_private(path: Path, data: bytes) -> None:
    """Credentials are secrets: only the broker's user reads them."""
    # Imported here: the local engine imports this module, and importing any module of
    # strom.storage.local first runs the package, which imports the engine.
    from strom.storage.local.files import write_atomic

    write_atomic(path, data)
    os.chmod(path, 0o600)
