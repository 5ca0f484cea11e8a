"""Transaction markers are Kafka's control batches: the builder writes what Kafka's
EndTransactionMarker writes, the validator and kio read it, and control_type reads the marker
type back (from the whole batch or a short window) and refuses malformed ones."""

from __future__ import annotations

import struct

import pytest
from kio.records.readers import read_batch

from strom.protocol.batch_header import (
    BATCH_HEADER_SIZE,
    CONTROL_MASK,
    TRANSACTIONAL_MASK,
    crc_matches,
    read_batch_header,
)
from strom.protocol.control_batch import (
    ABORT,
    COMMIT,
    CONTROL_KEY_WINDOW,
    build_control_batch,
    control_type,
)
from strom.protocol.record_builder import build_batch, reseal
from strom.protocol.record_walk import records_region, walk_records
from strom.protocol.records import iter_records
from strom.storage.api import batch_control_type


def test_marker_layout_matches_kafka() -> None:
    data = build_control_batch(42, 7, commit=True, timestamp_ms=1234, coordinator_epoch=9)
    h = read_batch_header(data)
    assert h.magic == 2 and crc_matches(data, 0, h)
    assert h.attributes == TRANSACTIONAL_MASK | CONTROL_MASK  # uncompressed, CreateTime
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (42, 7, -1)
    assert h.records_count == 1 and h.last_offset_delta == 0
    assert h.base_timestamp == h.max_timestamp == 1234
    (record,) = list(iter_records(data))
    assert record.key == struct.pack(">hh", 0, COMMIT)
    assert record.value == struct.pack(">hi", 0, 9)
    assert record.headers == ()
    buf, pos = records_region(data, h, 1 << 20)  # the produce validator's record walk
    assert walk_records(buf, pos, h.records_count) == (0, 0, 0)


@pytest.mark.parametrize("commit", [True, False])
def test_round_trip(commit: bool) -> None:
    data = build_control_batch(1, 0, commit, 0)
    expected = COMMIT if commit else ABORT
    assert control_type(data) == expected
    assert control_type(bytearray(data)) == expected
    assert control_type(memoryview(data)) == expected
    assert control_type(data[:CONTROL_KEY_WINDOW]) == expected  # a short window is enough
    assert control_type(b"\0" * 5 + data, 5) == expected  # at a position
    assert batch_control_type(data) == expected
    assert batch_control_type(build_batch([(b"k", b"v", (), 0)])) is None


def test_kio_reads_a_marker() -> None:
    data = build_control_batch(77, 3, False, 5000, coordinator_epoch=2)
    batch, size = read_batch(memoryview(data), 0)
    assert size == len(data)
    assert batch.producer_id == 77 and batch.producer_epoch == 3
    assert batch.attributes & CONTROL_MASK and batch.attributes & TRANSACTIONAL_MASK
    assert len(batch.records) == 1
    assert bytes(batch.records[0].key) == struct.pack(">hh", 0, ABORT)


def test_malformed_markers_are_refused() -> None:
    data_batch = build_batch([(b"k", b"v", (), 0)])
    with pytest.raises(ValueError, match="control"):
        control_type(data_batch)
    with pytest.raises(ValueError):
        control_type(b"short")
    short_key = build_batch([(b"\0\0", b"", (), 0)], control=True, transactional=True,
                            producer_id=1)
    with pytest.raises(ValueError, match="key"):
        control_type(short_key)
    null_key = build_batch([(None, b"", (), 0)], control=True, producer_id=1)
    with pytest.raises(ValueError, match="key"):
        control_type(null_key)
    empty = build_batch([], control=True, producer_id=1)
    with pytest.raises(ValueError, match="without records"):
        control_type(empty)
    negative_version = build_batch([(struct.pack(">hh", -1, 0), b"", (), 0)], control=True)
    with pytest.raises(ValueError, match="version"):
        control_type(negative_version)
    good = build_control_batch(1, 0, True, 0)
    with pytest.raises(ValueError):
        control_type(good[:BATCH_HEADER_SIZE + 2])  # the record is cut off
    bad_varint = bytearray(good)
    bad_varint[BATCH_HEADER_SIZE + 1:BATCH_HEADER_SIZE + 12] = b"\xff" * 11
    reseal(bad_varint)
    with pytest.raises(ValueError):
        control_type(bad_varint)
    assert control_type(build_batch([(struct.pack(">hh", 0, 2), b"", (), 0)],
                                    control=True)) == 2  # other ControlRecordTypes read too
