"""Transaction markers: Kafka's control batches (EndTransactionMarker).

A marker is a v2 batch with the transactional and control attributes, uncompressed, base
sequence -1, holding one record whose key is the ControlRecordType key (int16 version 0, int16
type: ABORT 0, COMMIT 1) and whose value is the EndTransactionMarker (int16 version 0, int32
coordinator epoch), as Kafka's `MemoryRecords.withEndTransactionMarker` writes it.
"""

from __future__ import annotations

import struct
from typing import Final

from strom.protocol.batch_header import BATCH_HEADER_SIZE, read_batch_header
from strom.protocol.record_builder import build_batch
from strom.protocol.record_errors import RecordsError
from strom.protocol.record_walk import read_varint, read_varlong

ABORT: Final = 0
COMMIT: Final = 1
CONTROL_KEY_VERSION: Final = 0
END_TXN_MARKER_VERSION: Final = 0

_KEY: Final = struct.Struct(">hh")  # version, type
_MARKER: Final = struct.Struct(">hi")  # version, coordinator epoch
# A marker's first record ends within this many bytes of the batch start (header, length,
# attributes, timestamp and offset deltas, key length and the 4-byte key), with room to spare.
CONTROL_KEY_WINDOW: Final = BATCH_HEADER_SIZE + 64


def build_control_batch(producer_id: int, producer_epoch: int, commit: bool, timestamp_ms: int,
                        coordinator_epoch: int = 0) -> bytes:
    """A COMMIT or ABORT marker batch of `producer_id` at `producer_epoch` (base offset 0: the
    log assigns it)."""
    key = _KEY.pack(CONTROL_KEY_VERSION, COMMIT if commit else ABORT)
    value = _MARKER.pack(END_TXN_MARKER_VERSION, coordinator_epoch)
    return build_batch([(key, value, (), timestamp_ms)], producer_id=producer_id,
                       producer_epoch=producer_epoch, base_sequence=-1, transactional=True,
                       control=True)


def control_type(batch: bytes | bytearray | memoryview, pos: int = 0) -> int:
    """The type in the key of the first record of the control batch at `pos` (ABORT, COMMIT,
    or another of Kafka's ControlRecordType ids). `batch` may end before the batch does, as
    long as it holds the first record's key (CONTROL_KEY_WINDOW bytes always do). Raises
    ValueError if the batch is not a readable control batch."""
    if len(batch) - pos < BATCH_HEADER_SIZE:
        raise ValueError("a control batch shorter than a batch header")
    h = read_batch_header(batch, pos)
    if h.magic != 2 or not h.is_control:
        raise ValueError("not a v2 control batch")
    if h.compression != 0:
        raise ValueError("a compressed control batch")
    if h.records_count < 1:
        raise ValueError("a control batch without records")
    end = min(len(batch), pos + h.size)
    view = memoryview(batch)[:end]
    try:
        length, p = read_varint(view, pos + BATCH_HEADER_SIZE)
        if length < 1:
            raise ValueError(f"a control record of length {length}")
        _, p = read_varlong(view, p + 1)  # attributes, timestamp delta
        _, p = read_varint(view, p)  # offset delta
        key_length, p = read_varint(view, p)
    except (IndexError, RecordsError) as exc:
        raise ValueError(f"a malformed control record: {exc}") from None
    if key_length < _KEY.size or p + _KEY.size > end:
        raise ValueError(f"a control record key of {key_length} bytes")
    version, kind = _KEY.unpack_from(view, p)
    if version < 0:
        raise ValueError(f"a control record key version {version}")
    return int(kind)
