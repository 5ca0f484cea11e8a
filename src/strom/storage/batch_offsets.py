"""Giving an append's batches their offsets, for engines that keep batches as values (the
memory and PostgreSQL engines; the local engine writes them into segment files itself)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from strom.protocol.batch_header import BatchHeader, read_batch_header
from strom.storage.api import AppendBatch, CorruptLog, batch_control_type

MAX_APPEND_RECORDS: Final = 2**31 - 1


def with_offsets(batches: Sequence[AppendBatch], base: int, leader_epoch: int = 0
                 ) -> list[tuple[bytes, BatchHeader, int | None]]:
    """Each batch as stored from offset `base` on (its base offset and the partition leader
    epoch written into `data`; the local log writes epoch 0), its header and its marker
    type (None for data batches). Everything is checked before anything is changed: raises
    CorruptLog for an unreadable control batch or more records than one append can hold."""
    try:
        kinds = [batch_control_type(b.data) for b in batches]
    except ValueError as exc:
        raise CorruptLog(f"an unreadable control batch: {exc}") from None
    if sum(b.record_count for b in batches) > MAX_APPEND_RECORDS:
        raise CorruptLog("an append of more records than a batch can hold")
    out = []
    offset = base
    for b, kind in zip(batches, kinds, strict=True):
        data = b.data
        data[0:8] = offset.to_bytes(8, "big", signed=True)
        data[12:16] = leader_epoch.to_bytes(4, "big", signed=True)
        out.append((bytes(data), read_batch_header(data), kind))
        offset += b.record_count
    return out
