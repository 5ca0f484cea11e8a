"""Produce v3+ requests carrying corrupted v2 record batches, and compression bombs.

A corruption either leaves the CRC stale (bad CRC, fields outside the CRC: length, magic) or
changes CRC-covered bytes and re-seals the batch with a valid CRC-32C
(strom.protocol.record_builder.reseal), so the broker must find the damage past the CRC check.
"""

from __future__ import annotations

import datetime
import random
import struct
import zlib
from collections.abc import Callable
from typing import Any, Final

from bench.fuzz import mutators, wire
from strom.protocol.batch_header import BATCH_HEADER_SIZE, CRC_OFFSET
from strom.protocol.compression import GZIP, LZ4, SNAPPY, ZSTD, compress
from strom.protocol.record_builder import build_batch, reseal, write_varint

HEADER: Final = struct.Struct(">qiibIhiqqqhii")  # the v2 batch header, as record_builder's
LENGTH_OFFSET: Final = 8
MAGIC_OFFSET: Final = 16
ATTRIBUTES_OFFSET: Final = 21
LAST_OFFSET_DELTA_OFFSET: Final = 23
BASE_TIMESTAMP_OFFSET: Final = 27
MAX_TIMESTAMP_OFFSET: Final = 35
PRODUCER_OFFSET: Final = 43  # producer id (8), epoch (2), base sequence (4)
COUNT_OFFSET: Final = 57
NOW_MS: Final = 1_700_000_000_000
CODECS: Final = {"gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}


def zigzag(value: int) -> bytes:
    out = bytearray()
    write_varint(out, value)
    return bytes(out)


def valid_batch(rng: random.Random, compression: int | None = None) -> bytearray:
    count = rng.randint(1, 5)
    records = [(rng.choice((None, b"k", rng.randbytes(8))), rng.randbytes(rng.randint(0, 40)),
                [("h", b"v")] if rng.random() < 0.3 else [], NOW_MS + i) for i in range(count)]
    codec = rng.choice((0, 0, 0, 1, 2, 3, 4)) if compression is None else compression
    return bytearray(build_batch(records, compression=codec))


def seal(payload: bytes, count: int, attributes: int = 0, last_offset_delta: int | None = None,
         producer: tuple[int, int, int] = (-1, -1, -1)) -> bytearray:
    """A v2 batch around raw record bytes, with a valid CRC."""
    delta = count - 1 if last_offset_delta is None else last_offset_delta
    out = bytearray(HEADER.pack(0, BATCH_HEADER_SIZE + len(payload) - 12, -1, 2, 0, attributes,
                                delta, NOW_MS, NOW_MS, *producer, count))
    out += payload
    reseal(out)
    return out


def raw_record(offset_delta: int, value: bytes, length: int | None = None,
               header_count: int = 0, wide: bool = False) -> bytes:
    """One record; `length` overrides its length prefix, `wide` writes 10-byte varints."""
    varint = (lambda v: mutators.uvarint((v << 1) ^ (v >> 63), 10)) if wide else zigzag
    body = b"\x00" + varint(0) + varint(offset_delta) + varint(-1) + varint(len(value)) + value
    body += varint(header_count)
    return zigzag(len(body) if length is None else length) + body


def _set(batch: bytearray, fmt: str, offset: int, value: int, seal_it: bool = True) -> bytes:
    struct.pack_into(fmt, batch, offset, value)
    if seal_it:
        reseal(batch)
    return bytes(batch)


def _resealed_records(rng: random.Random, batch: bytearray) -> bytes:
    """Uncompressed records mutated byte-wise, then the CRC made valid again."""
    batch = valid_batch(rng, compression=0)
    seed = mutators.Seed(bytes(batch[BATCH_HEADER_SIZE:]), "produce", 0, 0, False, 0)
    body, _names = mutators.mutate(rng, seed, (), rng.randint(1, 3))
    out = batch[:BATCH_HEADER_SIZE] + body
    struct.pack_into(">i", out, LENGTH_OFFSET, len(out) - 12)
    reseal(out)
    return bytes(out)


def _producer_fields(rng: random.Random, batch: bytearray) -> bytes:
    struct.pack_into(">qhi", batch, PRODUCER_OFFSET, rng.choice((-2, 1, 2**62)),
                     rng.choice((-1, 0, 32767)), rng.choice((0, -1, 2**31 - 1)))
    reseal(batch)
    return bytes(batch)


def _message_set(rng: random.Random, magic: int) -> bytes:
    """An old (magic 0/1) message set entry, with a valid CRC-32."""
    value = rng.randbytes(10)
    body = bytes([magic, 0]) + (struct.pack(">q", NOW_MS) if magic else b"")
    body += struct.pack(">i", -1) + struct.pack(">i", len(value)) + value
    message = struct.pack(">I", zlib.crc32(body)) + body
    return struct.pack(">qi", 0, len(message)) + message


def _garbage_compressed(rng: random.Random, codec: int) -> bytes:
    payload = rng.randbytes(rng.randint(1, 200))
    if rng.random() < 0.5:
        payload = compress(codec, bytes(100) + rng.randbytes(50))[:-rng.randint(1, 8)]
    return bytes(seal(payload, rng.randint(1, 3), attributes=codec))


Corruption = Callable[[random.Random, bytearray], bytes]
CORRUPTIONS: Final[dict[str, Corruption]] = {
    "bad_crc": lambda r, b: _set(b, ">I", CRC_OFFSET, (struct.unpack_from(">I", b, CRC_OFFSET)[0]
                                                        ^ (1 << r.randrange(32))), False),
    "bad_count": lambda r, b: _set(b, ">i", COUNT_OFFSET, r.choice((0, -1, 2**31 - 1, 2,
                                                                    10_000_000))),
    "bad_last_offset_delta": lambda r, b: _set(b, ">i", LAST_OFFSET_DELTA_OFFSET,
                                               r.choice((-1, -2**31, 2**31 - 1, 100))),
    "bad_length": lambda r, b: _set(b, ">i", LENGTH_OFFSET, r.choice(
        (-1, 0, 48, 2**31 - 1, len(b) - 11, len(b) - 13)), False),
    "magic": lambda r, b: _set(b, ">b", MAGIC_OFFSET, r.choice((0, 1, 3, -1)), False),
    "codec_5_7": lambda r, b: _set(b, ">h", ATTRIBUTES_OFFSET, r.choice((5, 6, 7))),
    "control_txn_bits": lambda r, b: _set(b, ">h", ATTRIBUTES_OFFSET, r.choice(
        (0x10, 0x20, 0x30, 0x30 | 4, 0x28))),
    "resealed_records": _resealed_records,
    "record_length": lambda r, b: bytes(seal(raw_record(0, b"v", length=r.choice(
        (-1, 2**31, 2**34, 0, 1000))), 1)),
    "header_count": lambda r, b: bytes(seal(raw_record(0, b"v", header_count=r.choice(
        (2**31, -1, 2**31 - 1))), 1)),
    "varint10": lambda r, b: bytes(seal(raw_record(0, b"v", wide=True), 1)),
    "timestamps": lambda r, b: _set(b, ">q", r.choice((BASE_TIMESTAMP_OFFSET,
                                                       MAX_TIMESTAMP_OFFSET)),
                                    r.choice((-2**63, 2**63 - 1, -2, NOW_MS * 1000))),
    "producer_fields": lambda r, b: _producer_fields(r, b),
    "two_batches": lambda r, b: bytes(b) + bytes(valid_batch(r)),
    "trailing_garbage": lambda r, b: bytes(b) + r.randbytes(r.randint(1, 70)),
    "old_message_set": lambda r, b: _message_set(r, r.choice((0, 1))),
    "garbage_compressed": lambda r, b: _garbage_compressed(r, r.choice(list(CODECS.values()))),
}


def produce_frame(version: int, topic: str, partition: int, records: bytes | None, acks: int,
                  correlation_id: int, transactional_id: str | None = None,
                  timeout_ms: int = 5000) -> bytes:
    module = wire.module_of(0, version)
    request: Any = module.ProduceRequest(
        transactional_id=transactional_id, acks=acks,
        timeout=datetime.timedelta(milliseconds=timeout_ms),
        topic_data=(module.TopicProduceData(name=topic, partition_data=(
            module.PartitionProduceData(index=partition, records=records),)),))
    return wire.encode_frame(request, correlation_id)


def corrupt_produce(rng: random.Random, topics: list[tuple[str, int]],
                    versions: tuple[int, int]) -> tuple[bytes, str]:
    """A Produce request (v3 or later) with one corrupted batch; the frame and corruption."""
    name = rng.choice(list(CORRUPTIONS))
    batch = CORRUPTIONS[name](rng, valid_batch(rng))
    topic, partitions = rng.choice(topics)
    version = rng.randint(max(3, versions[0]), min(12, versions[1]))
    acks = rng.choice((1, 1, -1, -1, 0))
    frame = produce_frame(version, topic, rng.randrange(partitions), batch, acks,
                          rng.randint(0, 2**31 - 1))
    return frame, name


def one_record_of_zeros(size: int) -> bytearray:
    """One record whose value is `size` zero bytes, in a single allocation."""
    head = b"\x00" + zigzag(0) + zigzag(0) + zigzag(-1) + zigzag(size)
    prefix = zigzag(len(head) + size + 1) + head
    out = bytearray(len(prefix) + size + 1)  # the value and the header count (0) are zeros
    out[:len(prefix)] = prefix
    return out


def tiny_records(count: int) -> bytes:
    out = bytearray()
    for i in range(count):
        body = b"\x00\x00" + zigzag(i) + b"\x01\x00\x00"
        out += zigzag(len(body)) + body
    return bytes(out)


def bomb(kind: str, codec: str, limit: int, tiny_count: int) -> tuple[bytes, int]:
    """A compressed batch: `above` (one record of zeros, 1 MiB over `limit` decompressed),
    `below` (half of `limit`) or `tiny` (`tiny_count` empty records); with its record count."""
    if kind == "tiny":
        payload: bytes | bytearray = tiny_records(tiny_count)
        count = tiny_count
    else:
        size = limit + 2**20 if kind == "above" else limit // 2
        payload, count = one_record_of_zeros(size), 1
    compressed = compress(CODECS[codec], payload)
    del payload
    return bytes(seal(compressed, count, attributes=CODECS[codec])), count
