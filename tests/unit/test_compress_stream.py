"""Streaming compression and the streaming batch rebuild: every codec's output, written window
by window, decodes to the input (lz4 with independent blocks, snappy in 32 KiB xerial blocks);
a rebuilt batch, read by strom and by aiokafka, holds exactly the kept records with their
offsets, timestamps and headers; and rebuilding a batch whose records take tens of MiB holds
only its compressed output and a window."""

from __future__ import annotations

import random
import struct
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace

import cramjam
import pytest
from aiokafka.record.default_records import (  # type: ignore[import-untyped]
    DefaultRecordBatch,
)

from strom.protocol import compression
from strom.protocol.batch_header import crc_matches, read_batch_header
from strom.protocol.compress_stream import WINDOW_BYTES, CompressingWriter
from strom.protocol.compression import GZIP, LZ4, NONE, SNAPPY, XERIAL_MAGIC, ZSTD
from strom.protocol.record_builder import build_batch
from strom.protocol.record_rewrite import DELETE_HORIZON_MASK, rebuild_batch
from strom.protocol.records import Record, iter_records

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
T0 = 1_700_000_000_000


def _compress(codec: int, pieces: list[bytes]) -> bytearray:
    out = bytearray(b"prefix")
    writer = CompressingWriter(codec, out)
    for piece in pieces:
        writer.pending += piece
        writer.spill()
        assert len(writer.pending) < WINDOW_BYTES
    writer.finish()
    assert out[:6] == b"prefix"
    return out[6:]


@pytest.mark.parametrize("codec", CODECS)
def test_output_written_window_by_window_decodes_to_the_input(codec: int) -> None:
    rng = random.Random(codec)
    pieces = [rng.randbytes(rng.randrange(1, 3000)) * rng.randrange(1, 40) for _ in range(200)]
    data = b"".join(pieces)
    assert len(data) > 3 * WINDOW_BYTES
    out = _compress(codec, pieces)
    if codec == NONE:
        assert out == data
    else:
        assert compression.decompress(codec, out, len(data)) == data
        assert len(out) < len(data)


def test_snappy_is_written_in_xerial_blocks_of_32_kib() -> None:
    data = bytes(range(256)) * 1000
    out = _compress(SNAPPY, [data[i:i + 777] for i in range(0, len(data), 777)])
    assert out[:16] == XERIAL_MAGIC + struct.pack(">ii", 1, 1)
    sizes, pos = [], 16
    while pos < len(out):
        (length,) = struct.unpack_from(">i", out, pos)
        sizes.append(cramjam.snappy.decompress_raw_len(bytes(out[pos + 4:pos + 4 + length])))
        pos += 4 + length
    assert sizes == [32768] * (len(data) // 32768) + [len(data) % 32768]


def test_lz4_frames_have_independent_blocks() -> None:
    out = _compress(LZ4, [bytes(range(256)) * 8000])
    assert out[:4] == b"\x04\x22\x4d\x18"  # the LZ4 frame magic
    assert out[4] & 0x20  # FLG: block independence, which the Java client requires


def _batch(count: int, codec: int, *, xerial: bool = False) -> bytes:
    records = [(b"k%d" % (i % 7), None if i % 5 == 0 else b"v%d" % i,
                [("h", b"%d" % i)] if i % 3 == 0 else [], T0 + (i * 37) % 1000)
               for i in range(count)]
    return build_batch(records, compression=codec, producer_id=9, producer_epoch=2,
                       base_sequence=5, base_offset=100, snappy_xerial=xerial)


@pytest.mark.parametrize(("codec", "xerial"), [(c, False) for c in CODECS] + [(SNAPPY, True)])
@pytest.mark.parametrize("horizon", [None, T0 + 5000])
def test_a_rebuilt_batch_holds_the_kept_records(codec: int, xerial: bool,
                                                horizon: int | None) -> None:
    original = _batch(30_000, codec, xerial=xerial)  # several windows of records
    h = read_batch_header(original)
    kept = [r for r in iter_records(original) if r.offset_delta % 3 != 1]
    rebuilt = rebuild_batch(h, iter(kept), horizon_ms=horizon)
    new = read_batch_header(rebuilt)
    assert crc_matches(rebuilt, 0, new) and new.size == len(rebuilt)
    assert (new.base_offset, new.last_offset_delta, new.records_count, new.compression,
            new.producer_id, new.producer_epoch, new.base_sequence) == (
        100, 29_999, len(kept), codec, 9, 2, 5)
    assert bool(new.attributes & DELETE_HORIZON_MASK) == (horizon is not None)
    stamps = [h.base_timestamp + r.timestamp_delta for r in kept]
    assert new.base_timestamp == (stamps[0] if horizon is None else horizon)
    assert new.max_timestamp == max(stamps)
    again = list(iter_records(rebuilt))
    assert [(r.offset_delta, r.key, r.value, r.headers) for r in again] == [
        (r.offset_delta, r.key, r.value, r.headers) for r in kept]
    assert [new.base_timestamp + r.timestamp_delta for r in again] == stamps
    if codec == SNAPPY:
        assert rebuilt[61:69] == XERIAL_MAGIC  # raw snappy is rewritten as xerial
    client = DefaultRecordBatch(bytes(rebuilt))  # what aiokafka makes of it
    assert client.validate_crc()
    assert [(r.offset, r.key, r.value) for r in client] == [
        (100 + r.offset_delta, r.key, r.value) for r in kept]


def test_rebuild_needs_a_record() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        rebuild_batch(read_batch_header(_batch(3, ZSTD)), iter(()), horizon_ms=None)


def test_rebuilding_tens_of_mib_of_records_holds_only_the_compressed_output() -> None:
    count, value = 300_000, b"x" * 120  # about 40 MiB of encoded records
    one = read_batch_header(build_batch([(b"k", value, [], T0)], compression=ZSTD))
    header = replace(one, last_offset_delta=count - 1, records_count=count)

    def records() -> Iterator[Record]:
        for i in range(count):
            yield Record(i, i % 1000, b"k%d" % i, value)

    tracemalloc.start()
    try:
        rebuilt = rebuild_batch(header, records(), horizon_ms=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read_batch_header(rebuilt).records_count == count
    assert peak < len(rebuilt) + 4 * WINDOW_BYTES, (peak, len(rebuilt))
