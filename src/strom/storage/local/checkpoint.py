"""Kafka's per-data-directory offset checkpoint files, in Kafka's text format:

    0                     <- version
    2                     <- number of entries
    orders 0 1200         <- topic, partition, offset
    orders 1 1184

`log-start-offset-checkpoint` keeps log start offsets advanced by DeleteRecords (retention
needs none: it deletes whole segments, so the first segment's base offset says it).
`recovery-point-offset-checkpoint` keeps, per partition, an offset below which everything
was fsynced; after a crash only segments at or past it are validated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from strom.storage.local.files import read_file, write_atomic

log = logging.getLogger(__name__)

LOG_START_CHECKPOINT: Final = "log-start-offset-checkpoint"
RECOVERY_POINT_CHECKPOINT: Final = "recovery-point-offset-checkpoint"
_VERSION: Final = 0

TopicPartition = tuple[str, int]


def read_offset_checkpoint(path: Path) -> dict[TopicPartition, int]:
    """The entries; empty (with a warning) if the file is missing or malformed."""
    data = read_file(path)
    if data is None:
        return {}
    try:
        lines = data.decode("utf-8").splitlines()
        if int(lines[0]) != _VERSION:
            raise ValueError(f"version {lines[0]}")
        count = int(lines[1])
        if count != len(lines) - 2:
            raise ValueError(f"{count} entries announced, {len(lines) - 2} present")
        out: dict[TopicPartition, int] = {}
        for line in lines[2:]:
            topic, partition, offset = line.split(" ")
            out[(topic, int(partition))] = int(offset)
        return out
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        log.warning("ignoring malformed checkpoint %s: %s", path, exc)
        return {}


def format_offset_checkpoint(entries: Mapping[TopicPartition, int]) -> bytes:
    lines = [str(_VERSION), str(len(entries))]
    lines.extend(f"{topic} {partition} {offset}"
                 for (topic, partition), offset in sorted(entries.items()))
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_offset_checkpoint(path: Path, entries: Mapping[TopicPartition, int]) -> None:
    """Durably replaces the file (temp file, fsync, rename, fsync of the directory)."""
    write_atomic(path, format_offset_checkpoint(entries))
