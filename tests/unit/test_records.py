"""Produce-side record validation: Kafka's error codes, timestamp rewrites, codecs, caps."""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import zlib
from datetime import UTC, datetime
from typing import Any

import cramjam
import pytest
from aiokafka.record.default_records import (  # type: ignore[import-untyped]
    DefaultRecordBatch,
    DefaultRecordBatchBuilder,
)
from kio.records.readers import read_batch
from kio.records.schema import NewRecordBatch
from kio.records.schema import Record as KioRecord
from kio.records.schema import RecordHeader as KioHeader
from kio.records.writers import write_new_batch
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

from strom.protocol import compression
from strom.protocol.batch_header import (
    BATCH_HEADER_SIZE,
    crc_matches,
    read_batch_header,
)
from strom.protocol.record_builder import encode_record, reseal
from strom.protocol.records import (
    Record,
    RecordInput,
    RecordsError,
    ValidatedBatch,
    build_batch,
    iter_records,
    validate_produce_records,
)

CORRUPT, TOO_LARGE, BAD_TS, BAD_CODEC, INVALID = 2, 10, 32, 76, 87
LONG_MAX = 2**63 - 1
NOW = 1_700_000_000_000
MIB = 1024 * 1024
CODECS = [(0, False), (1, False), (2, False), (2, True), (3, False), (4, False)]
CODEC_IDS = ["none", "gzip", "snappy", "snappy-xerial", "lz4", "zstd"]

# struct format and offset of each header field
FIELDS = {
    "base_offset": (">q", 0), "batch_length": (">i", 8), "leader_epoch": (">i", 12),
    "magic": (">b", 16), "crc": (">I", 17), "attributes": (">h", 21),
    "last_offset_delta": (">i", 23), "base_timestamp": (">q", 27), "max_timestamp": (">q", 35),
    "producer_id": (">q", 43), "producer_epoch": (">h", 51), "base_sequence": (">i", 53),
    "records_count": (">i", 57),
}


def validate(records: bytes | bytearray | memoryview, **kw: Any) -> ValidatedBatch:
    args: dict[str, Any] = dict(
        max_message_bytes=MIB + 12, timestamp_type="CreateTime", now_ms=NOW,
        timestamp_before_max_ms=LONG_MAX, timestamp_after_max_ms=LONG_MAX,
        max_decompressed_bytes=8 * MIB)
    args.update(kw)
    batches = validate_produce_records(records, **args)
    assert len(batches) == 1
    return batches[0]


def error_of(records: bytes | bytearray, **kw: Any) -> RecordsError:
    with pytest.raises(RecordsError) as info:
        validate(records, **kw)
    return info.value


def patch(batch: bytes, seal: bool = True, **fields: int) -> bytes:
    out = bytearray(batch)
    for name, value in fields.items():
        fmt, offset = FIELDS[name]
        struct.pack_into(fmt, out, offset, value)
    if seal:
        reseal(out)
    return bytes(out)


def sample(n: int = 5, ts: int = NOW) -> list[tuple[bytes | None, bytes | None, list[Any], int]]:
    return [(b"key-%d" % i, b"value-%d" % i * (i + 1), [(f"h{i}", b"x")] if i % 2 else [],
             ts + i) for i in range(n)]


def raw_batch(payload: bytes, count: int, codec: int = 0, base_ts: int = NOW,
              max_ts: int = NOW) -> bytes:
    """A batch around arbitrary record bytes, with a valid CRC."""
    header = struct.pack(">qiibIhiqqqhii", 0, BATCH_HEADER_SIZE - 12 + len(payload), -1, 2, 0,
                         codec, count - 1, base_ts, max_ts, -1, -1, -1, count)
    out = bytearray(header + payload)
    reseal(out)
    return bytes(out)


def records_bytes(*records: tuple[int, int, bytes | None, bytes | None, list[Any]]) -> bytes:
    out = bytearray()
    for offset_delta, ts_delta, key, value, headers in records:
        encode_record(out, offset_delta, ts_delta, key, value, headers)
    return bytes(out)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(("codec", "xerial"), CODECS, ids=CODEC_IDS)
def test_round_trip_every_codec(codec: int, xerial: bool) -> None:
    records = [*sample(20), (None, None, [], NOW + 3), (b"", b"", [("", None)], NOW - 7)]
    batch = build_batch(records, compression=codec, snappy_xerial=xerial, producer_id=7,
                        producer_epoch=1, base_sequence=3, transactional=True)
    vb = validate(batch)
    assert vb.data == batch  # nothing to rewrite: max_timestamp is already the true max
    assert vb.record_count == vb.header.records_count == len(records)
    assert vb.header.compression == codec and vb.header.is_transactional
    got = list(iter_records(vb))
    assert got == list(iter_records(batch))
    assert [r.offset_delta for r in got] == list(range(len(records)))
    assert [(r.key, r.value, [(k.decode(), v) for k, v in r.headers],
             vb.header.base_timestamp + r.timestamp_delta) for r in got] == [
        (k, v, list(h), ts) for k, v, h, ts in records]


def test_input_may_be_bytearray_or_memoryview_and_is_copied() -> None:
    batch = bytearray(build_batch(sample()))
    vb = validate(memoryview(batch))
    batch[-1] ^= 1
    assert vb.data != batch and crc_matches(vb.data, 0, vb.header)
    assert validate(bytearray(vb.data)).data == vb.data


def test_big_varints_and_many_headers() -> None:
    records: list[RecordInput] = [
        (b"k" * 300, b"v" * 70000, [("a" * 200, b"b" * 20000)] * 3, NOW - 10**12)
        for _ in range(3)]
    records += [(None, b"v", [], NOW + 2**40 + i) for i in range(9000)]  # 3-byte offset deltas
    vb = validate(build_batch(records), max_message_bytes=10 * MIB)
    got = list(iter_records(vb))
    assert len(got) == 9003 and got[9002].offset_delta == 9002
    assert got[0].headers == ((b"a" * 200, b"b" * 20000),) * 3
    assert vb.header.max_timestamp == NOW + 2**40 + 8999


# ---------------------------------------------------------------- framing (KafkaApis)


@pytest.mark.parametrize("records", [b"", b"\x00" * 11, struct.pack(">qi", 0, 49) + b"\x00" * 4],
                         ids=["empty", "under-12", "under-17"])
def test_no_complete_batch_is_invalid_record(records: bytes) -> None:
    assert error_of(records).error_code == INVALID


def test_truncated_batch_is_invalid_record() -> None:
    batch = build_batch(sample())
    for cut in (20, 61, len(batch) - 1):
        assert error_of(batch[:cut]).error_code == INVALID


@pytest.mark.parametrize("length", [-1, 0, 13])
def test_size_field_below_14_is_corrupt(length: int) -> None:
    batch = patch(build_batch(sample()), seal=False, batch_length=length)
    assert error_of(batch).error_code == CORRUPT


@pytest.mark.parametrize("magic", [3, 99, -1])
def test_unknown_magic_is_corrupt(magic: int) -> None:
    assert error_of(patch(build_batch(sample()), seal=False, magic=magic)).error_code == CORRUPT


@pytest.mark.parametrize("magic", [0, 1])
def test_old_magic_is_invalid_record(magic: int) -> None:
    # Produce v3+ (all Kafka 4 supports) takes magic 2 only: ProduceRequest.validateRecords.
    assert error_of(patch(build_batch(sample()), seal=False, magic=magic)).error_code == INVALID


def test_two_batches_are_invalid_record() -> None:
    batch = build_batch(sample())
    assert error_of(batch + batch).error_code == INVALID


def test_incomplete_tail_is_trimmed_like_kafka() -> None:
    batch = build_batch(sample())
    for tail in (b"\x00" * 5, batch[:30], batch[:-1]):
        assert validate(batch + tail).data == batch


@pytest.mark.parametrize("tail", [struct.pack(">qi", 0, 3),
                                  struct.pack(">qiib", 0, 100, 0, 7)], ids=["size", "magic"])
def test_corrupt_tail_header_is_corrupt(tail: bytes) -> None:
    assert error_of(build_batch(sample()) + tail).error_code == CORRUPT


# ---------------------------------------------------------------- batch checks


def test_nonzero_base_offset_is_invalid_record() -> None:
    assert error_of(build_batch(sample(), base_offset=5)).error_code == INVALID


def test_leader_epoch_is_outside_the_crc_and_free() -> None:
    validate(patch(build_batch(sample()), seal=False, leader_epoch=12345))


def test_message_too_large() -> None:
    batch = build_batch(sample())
    assert validate(batch, max_message_bytes=len(batch)).data == batch
    assert error_of(batch, max_message_bytes=len(batch) - 1).error_code == TOO_LARGE


@pytest.mark.parametrize("length", [14, 30, 48])
def test_batch_shorter_than_header_is_corrupt(length: int) -> None:
    batch = patch(build_batch(sample()), seal=False, batch_length=length)[: length + 12]
    assert error_of(batch).error_code == CORRUPT


def test_crc_mismatch_is_corrupt() -> None:
    batch = bytearray(build_batch(sample()))
    batch[70] ^= 0x40
    err = error_of(batch)
    assert err.error_code == CORRUPT and "crc" in err.message


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_unknown_codec_is_unsupported_compression(codec: int) -> None:
    assert error_of(patch(build_batch(sample()), attributes=codec)).error_code == BAD_CODEC


def test_zstd_needs_produce_v7() -> None:
    batch = build_batch(sample(), compression=compression.ZSTD)
    assert error_of(batch, produce_version=6).error_code == BAD_CODEC
    validate(batch, produce_version=7)
    validate(batch)


@pytest.mark.parametrize("fields", [
    {"last_offset_delta": -1, "records_count": 0},
    {"last_offset_delta": -5, "records_count": -4},
    {"records_count": 0},
    {"records_count": 4},
    {"records_count": 6},
    {"last_offset_delta": 5},
], ids=["empty", "negative", "zero-count", "count-low", "count-high", "delta-high"])
def test_bad_counts_are_invalid_record(fields: dict[str, Any]) -> None:
    assert error_of(patch(build_batch(sample(5)), **fields)).error_code == INVALID


def test_empty_batch_is_invalid_record() -> None:
    assert error_of(build_batch([])).error_code == INVALID


def test_control_batch_from_client_is_invalid_record() -> None:
    assert error_of(build_batch(sample(), control=True)).error_code == INVALID


def test_producer_id_without_sequence_is_invalid_record() -> None:
    assert error_of(build_batch(sample(), producer_id=3)).error_code == INVALID
    validate(build_batch(sample(), producer_id=3, producer_epoch=0, base_sequence=0))


# ---------------------------------------------------------------- records


@pytest.mark.parametrize(("payload", "why"), [
    (bytes([2 * 7]) + records_bytes((0, 0, b"k", b"v", []))[1:] + b"\x00",
     "expected to read"),
    (b"\x7f" + records_bytes((0, 0, b"k", b"v", []))[1:], "in record payload"),
    (records_bytes((0, 0, b"k", b"v", []))[:-1], "in record payload"),
    (records_bytes((0, 0, b"k", b"v", [])) + b"\x00", "remaining"),
    (bytes([6, 0, 0, 0]) + b"\xff" * 3, "premature EOF"),
    (bytes([16, 0, 0, 0]) + b"\xff" * 5 + b"\x01" + b"\x00" * 8, "varint too long"),
    (bytes([12, 0, 0, 0, 1, 1, 1]), "number of record headers"),
    (bytes([16, 0, 0, 0, 1, 1, 2, 1, 0]), "header key size"),
    (b"\x01", "premature EOF"),
], ids=["overrun", "long-record", "short", "leftover", "eof", "varint-too-long",
        "header-count", "header-null-key", "negative-length"])
def test_malformed_records_are_invalid_record(payload: bytes, why: str) -> None:
    err = error_of(raw_batch(payload, 1))
    assert err.error_code == INVALID and why in err.message, err.message
    with pytest.raises(RecordsError):
        list(iter_records(raw_batch(payload, 1)))


def test_offset_deltas_must_be_consecutive() -> None:
    payload = records_bytes((0, 0, b"a", b"1", []), (2, 0, b"b", b"2", []))
    assert error_of(raw_batch(payload, 2)).error_code == INVALID
    assert error_of(raw_batch(records_bytes((1, 0, b"a", b"1", [])), 1)).error_code == INVALID
    assert len(list(iter_records(raw_batch(payload, 2)))) == 2  # reading does not judge
    assert len(validate(raw_batch(records_bytes((0, 0, b"a", b"1", []),
                                                (1, 0, b"b", b"2", [])), 2)).data) > 0


def test_negative_lengths_read_as_null_like_kafka() -> None:
    # DefaultRecord.readFrom takes any negative key/value size as null.
    payload = bytes([12, 0, 0, 0, 5, 9, 0])  # key size -3, value size -5
    vb = validate(raw_batch(payload, 1))
    assert list(iter_records(vb)) == [Record(0, 0, None, None, ())]


def test_compacted_topic_needs_keys() -> None:
    records = [*sample(3), (None, b"v", [], NOW), (None, b"w", [], NOW)]
    err = error_of(build_batch(records), require_keys=True)
    assert err.error_code == INVALID
    assert [i for i, _ in err.record_errors] == [3, 4]
    validate(build_batch(records))
    validate(build_batch(sample(3)), require_keys=True)


# ---------------------------------------------------------------- timestamps


def test_timestamp_window() -> None:
    records: list[RecordInput] = [(b"k", b"v", [], NOW - 5000), (b"k", b"v", [], NOW),
               (b"k", b"v", [], NOW + 5000), (b"k", b"v", [], -1)]
    batch = build_batch(records)
    validate(batch, timestamp_before_max_ms=5000, timestamp_after_max_ms=5000)
    err = error_of(batch, timestamp_before_max_ms=4999)
    assert err.error_code == BAD_TS and [i for i, _ in err.record_errors] == [0]
    err = error_of(batch, timestamp_after_max_ms=4999)
    assert err.error_code == BAD_TS and [i for i, _ in err.record_errors] == [2]
    validate(batch, timestamp_before_max_ms=4999, timestamp_type="LogAppendTime")


def test_invalid_timestamp_wins_over_missing_key() -> None:
    records: list[RecordInput] = [(None, b"v", [], NOW), (b"k", b"v", [], NOW - 10**6)]
    err = error_of(build_batch(records), require_keys=True, timestamp_before_max_ms=1000)
    assert err.error_code == BAD_TS
    assert [i for i, _ in err.record_errors] == [0, 1]


def test_log_append_time_rewrites_max_timestamp_and_crc() -> None:
    batch = build_batch(sample(4, ts=1000))
    vb = validate(batch, timestamp_type="LogAppendTime", now_ms=NOW)
    assert vb.header.max_timestamp == NOW and vb.header.is_log_append_time
    assert vb.header.base_timestamp == 1000
    assert crc_matches(vb.data, 0, vb.header) and vb.header == read_batch_header(vb.data)
    assert vb.data[:17] == batch[:17] and vb.data[61:] == batch[61:]
    assert read_batch_header(batch).max_timestamp == 1003  # the request is untouched
    validate(vb.data)  # a CreateTime topic takes it back: its records' timestamps are NOW


@pytest.mark.parametrize(("codec", "xerial"), CODECS, ids=CODEC_IDS)
def test_log_append_time_for_every_codec(codec: int, xerial: bool) -> None:
    batch = build_batch(sample(), compression=codec, snappy_xerial=xerial)
    for deep in (True, False):
        vb = validate(batch, timestamp_type="LogAppendTime", deep_validate_compressed=deep)
        assert vb.header.max_timestamp == NOW and vb.header.is_log_append_time
        assert crc_matches(vb.data, 0, vb.header)


def test_producer_set_log_append_time() -> None:
    batch = build_batch(sample(), log_append_time=NOW - 3)
    assert error_of(batch, timestamp_type="LogAppendTime").error_code == BAD_TS
    vb = validate(batch)  # CreateTime: the records' time is max_timestamp; the bit is cleared
    assert not vb.header.is_log_append_time and vb.header.max_timestamp == NOW - 3
    assert crc_matches(vb.data, 0, vb.header)
    assert error_of(batch, timestamp_before_max_ms=2).error_code == BAD_TS
    assert error_of(build_batch(sample(), log_append_time=-1)).error_code == BAD_TS


def test_create_time_max_timestamp_is_corrected() -> None:
    batch = patch(build_batch(sample(5)), max_timestamp=NOW + 10**9)
    vb = validate(batch)
    assert vb.header.max_timestamp == NOW + 4 and crc_matches(vb.data, 0, vb.header)
    no_ts = build_batch([(b"k", b"v", [], -1)] * 2)
    assert validate(no_ts).header.max_timestamp == -1


def test_timestamp_overflow_is_invalid_record() -> None:
    payload = bytearray()
    encode_record(payload, 0, 2**62, b"k", b"v", [])
    assert error_of(raw_batch(bytes(payload), 1, base_ts=2**62)).error_code == INVALID


# ---------------------------------------------------------------- compressed batches


def garbage_compressed(codec: int) -> bytes:
    return raw_batch(b"\x00not-compressed-data" * 4, 1, codec=codec)


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_undecodable_payload(codec: int) -> None:
    batch = garbage_compressed(codec)
    assert error_of(batch).error_code == INVALID
    validate(batch, deep_validate_compressed=False)  # header-only: stored as sent
    assert error_of(batch, deep_validate_compressed=False, require_keys=True).error_code == INVALID


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_compressed_records_are_validated(codec: int) -> None:
    payload = records_bytes((0, 0, b"a", b"1", []), (5, 0, b"b", b"2", []))
    batch = raw_batch(compression.compress(codec, payload), 2, codec=codec)
    assert error_of(batch).error_code == INVALID
    validate(batch, deep_validate_compressed=False)


def test_shallow_validation_checks_header_timestamps() -> None:
    batch = build_batch(sample(3, ts=NOW - 10**6), compression=compression.LZ4)
    err = error_of(batch, deep_validate_compressed=False, timestamp_before_max_ms=1000)
    assert err.error_code == BAD_TS
    lying = patch(batch, max_timestamp=NOW + 10**9)  # trusted when shallow, fixed when deep
    assert validate(lying, deep_validate_compressed=False).header.max_timestamp == NOW + 10**9
    assert validate(lying).header.max_timestamp == NOW - 10**6 + 2


def _bomb(codec: int, total: int = 100 * MIB) -> bytes:
    """`total` zero bytes compressed, built in 1 MiB chunks so the test never holds them all."""
    chunk = bytes(MIB)
    if codec == compression.GZIP:
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join([*(z.compress(chunk) for _ in range(total // MIB)), z.flush()])
    if codec == compression.SNAPPY:  # xerial blocks
        block = struct.pack(">i", 0) + bytes(cramjam.snappy.compress_raw(bytes(32 * 1024)))
        block = struct.pack(">i", len(block) - 4) + block[4:]
        return compression.XERIAL_MAGIC + struct.pack(">ii", 1, 1) + block * (total // 32768)
    compressor = (cramjam.lz4.Compressor(block_linked=False) if codec == compression.LZ4
                  else cramjam.zstd.Compressor())
    for _ in range(total // MIB):
        compressor.compress(chunk)
    return bytes(compressor.finish())


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_decompression_bomb_stops_at_the_cap(codec: int) -> None:
    batch = raw_batch(_bomb(codec), 1, codec=codec)
    tracemalloc.start()
    try:
        err = error_of(batch, max_decompressed_bytes=MIB, max_message_bytes=len(batch))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.error_code == TOO_LARGE
    assert peak < 8 * MIB + len(batch)


def test_raw_snappy_claiming_too_much_is_refused_before_decompressing() -> None:
    claim = bytearray()  # raw snappy starts with the plain (not zigzag) varint of its size
    value = 100 * MIB
    while value >= 0x80:
        claim.append((value & 0x7F) | 0x80)
        value >>= 7
    claim.append(value)
    batch = raw_batch(bytes(claim) + b"\x00" * 10, 1, codec=compression.SNAPPY)
    assert error_of(batch, max_decompressed_bytes=MIB).error_code == TOO_LARGE


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_cap_is_exact(codec: int) -> None:
    batch = build_batch([(b"k", bytes(200_000), [], NOW)], compression=codec)
    data = compression.decompress(codec, batch[61:], 10 * MIB)
    validate(batch, max_decompressed_bytes=len(data))
    assert error_of(batch, max_decompressed_bytes=len(data) - 1).error_code == TOO_LARGE


def test_compression_module_errors() -> None:
    with pytest.raises(compression.CompressionError):
        compression.decompress(9, b"x", 10)
    with pytest.raises(compression.CompressionError):
        compression.compress(9, b"x")
    gz = compression.compress(compression.GZIP, b"abc")
    assert compression.decompress(compression.GZIP, gz + gz, 10) == b"abcabc"  # two members
    for bad in (gz[:-3], gz + b"junk", compression.XERIAL_MAGIC + b"\x00\x00\x00\x01",
                compression.XERIAL_MAGIC + struct.pack(">iii", 1, 1, 50) + b"x"):
        codec = compression.SNAPPY if bad.startswith(compression.XERIAL_MAGIC) else 1
        with pytest.raises(compression.CompressionError):
            compression.decompress(codec, bad, 100)
    assert compression.decompress(compression.GZIP, compression.compress(1, b""), 0) == b""


# ---------------------------------------------------------------- never anything else


def test_random_corruption_only_raises_records_error() -> None:
    rng = random.Random(1234)
    bases = [build_batch(sample(6), compression=c, snappy_xerial=x) for c, x in CODECS]
    for _ in range(3000):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(len(data)):]
        if rng.random() < 0.7 and len(data) >= 61:
            reseal_len = min(len(data), struct.unpack_from(">i", data, 8)[0] + 12)
            if reseal_len >= 61:
                head = data[:reseal_len]
                reseal(head)
                data[:reseal_len] = head
        try:
            vb = validate(data, max_decompressed_bytes=64 * 1024)
        except RecordsError:
            continue
        assert len(list(iter_records(vb))) == vb.record_count


def test_iter_records_rejects_garbage() -> None:
    for data in (b"", b"\x00" * 60, patch(build_batch(sample()), seal=False, magic=1),
                 patch(build_batch(sample()), seal=False, batch_length=10**6)):
        with pytest.raises(RecordsError):
            list(iter_records(data))


# ---------------------------------------------------------------- reference implementations


def _kio_ts(ms: int) -> TZAwareMicros:
    return TZAwareMicros.parse(datetime.fromtimestamp(ms / 1000, UTC))


def test_kio_reads_what_build_batch_writes() -> None:
    records = [(b"k%d" % i, None if i == 2 else b"v" * i, [("h", b"1"), ("n", None)],
                NOW + 1000 * i) for i in range(5)]
    kio_batch, size = read_batch(build_batch(records), 0)
    assert size == len(build_batch(records))
    assert [(r.key, r.value, [(h.key, h.value) for h in r.headers], r.offset)
            for r in kio_batch.records] == [
        (k, v, [(hk.encode(), hv) for hk, hv in h], i) for i, (k, v, h, _) in enumerate(records)]
    assert kio_batch.max_timestamp == NOW + 4000


def test_build_batch_reads_what_kio_writes() -> None:
    kio_records = tuple(
        KioRecord(attributes=i8(0), timestamp=_kio_ts(NOW + 1000 * i), offset=i64(i),
                  key=b"k%d" % i, value=None if i == 1 else b"v%d" % i,
                  headers=(KioHeader(key=b"h", value=b"x"),) * (i % 2))
        for i in range(4))
    buf = io.BytesIO()
    write_new_batch(buf, NewRecordBatch(producer_id=i64(-1), producer_epoch=i16(-1),
                                        base_sequence=i32(-1), records=kio_records,
                                        attributes=i16(0)))
    vb = validate(buf.getvalue())
    assert vb.record_count == 4 and vb.header.max_timestamp == NOW + 3000
    assert [(r.key, r.value, r.headers, r.timestamp_delta) for r in iter_records(vb)] == [
        (r.key, r.value, tuple((h.key or b"", h.value) for h in r.headers), 1000 * i)
        for i, r in enumerate(kio_records)]


def _aiokafka_batch(codec: int, records: list[Any]) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, 10 * MIB)
    for i, (key, value, headers, ts) in enumerate(records):
        builder.append(i, timestamp=ts, key=key, value=value, headers=headers)
    return bytes(builder.build())


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
def test_aiokafka_batches_validate(codec: int) -> None:
    records = [(b"k%d" % i, b"v" * (i * 50), [("h", b"x")], NOW + i) for i in range(40)]
    vb = validate(_aiokafka_batch(codec, records))
    assert [(r.key, r.value) for r in iter_records(vb)] == [(k, v) for k, v, _, _ in records]


@pytest.mark.parametrize(("codec", "xerial"), CODECS, ids=CODEC_IDS)
def test_aiokafka_reads_build_batch(codec: int, xerial: bool) -> None:
    records = sample(30)
    batch = DefaultRecordBatch(build_batch(records, compression=codec, snappy_xerial=xerial))
    assert batch.validate_crc()
    assert [(r.key, r.value, r.timestamp) for r in batch] == [(k, v, t) for k, v, _, t in records]


# ---------------------------------------------------------------- streaming (record_stream)


@pytest.mark.parametrize(("codec", "xerial"), CODECS[1:], ids=CODEC_IDS[1:])
def test_records_longer_than_the_window_and_across_chunks(codec: int, xerial: bool) -> None:
    """Records of 3 MiB (past the 1 MiB window and the 2 MiB chunk: the streaming skipper),
    one with 400,000 headers, between small ones: validated and read back whole."""
    big = bytes(range(256)) * (3 * MIB // 256)
    records: list[RecordInput] = [
        (b"k0", b"v", [], NOW), (b"k1", big, [("h", b"x")], NOW + 1),
        (None, b"w", [("", None)] * 400_000, NOW + 2), *sample(300, ts=NOW + 3),
        (b"k-last", big[::-1], [], NOW - 1)]
    batch = build_batch(records, compression=codec, snappy_xerial=xerial)
    vb = validate(batch, max_message_bytes=100 * MIB, max_decompressed_bytes=64 * MIB)
    assert vb.header.max_timestamp == NOW + 302
    got = list(iter_records(vb, max_decompressed_bytes=64 * MIB))
    assert [(r.key, r.value, len(r.headers)) for r in got] == [
        (k, v, len(h)) for k, v, h, _ in records]
    err = error_of(batch, max_message_bytes=100 * MIB, max_decompressed_bytes=64 * MIB,
                   require_keys=True, timestamp_after_max_ms=1)
    assert err.error_code == BAD_TS and [i for i, _ in err.record_errors] == [2, *range(3, 303)]


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_iter_records_refuses_a_small_undecodable_batch_at_once(codec: int) -> None:
    with pytest.raises(RecordsError) as info:
        iter_records(garbage_compressed(codec))  # not iterated: raised by the call itself
    assert info.value.error_code == INVALID


def test_zstd_frame_declaring_more_than_it_holds_is_invalid() -> None:
    """zstd's streaming decoder ends such a frame without an error when its output buffer is
    smaller than the declared size (cramjam's one-shot decoder too: it refused a frame that
    declares 2 bytes but took this one); strom checks the content size itself."""
    payload = records_bytes((0, 0, b"k", b"v", []))
    empty_frame = (b"\x28\xb5\x2f\xfd" + bytes([0xA0]) + struct.pack("<I", 8 * MIB)
                   + b"\x01\x00\x00")  # single segment, content size 8 MiB, one empty block
    for frames in (compression.compress(4, payload) + empty_frame,
                   empty_frame + compression.compress(4, payload)):
        batch = raw_batch(frames, 1, codec=compression.ZSTD)
        assert error_of(batch).error_code == INVALID
        with pytest.raises(RecordsError):
            list(iter_records(batch))
