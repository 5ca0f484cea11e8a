"""The binary image of a partition's producer state (`ProducerStateManager.snapshot()`).

Layout, all big-endian: magic `STPS`, version, CRC-32 of everything after it, producer count;
then per producer (id, epoch[, current txn first offset, marker timestamp], batch count) and
each batch (first seq, last seq, first offset, last offset, timestamp); version 2 then has the
aborted transactions: a count and (producer id, first offset, last offset, last stable offset)
each. Version 1 (no transactions) is still read.

This module only encodes and decodes plain tuples; `producer_state` builds its objects from
them (and the log cleaner's pruning of aborted transactions shows up in the next snapshot
taken: see `ProducerStateManager.prune_aborted`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Final

MAGIC: Final = b"STPS"
VERSION: Final = 2
MAX_BATCHES: Final = 5  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
_PREAMBLE: Final = struct.Struct(">4sBII")  # magic, version, crc, count
_PRODUCER_V1: Final = struct.Struct(">qhB")
_PRODUCER: Final = struct.Struct(">qhqqB")
_BATCH: Final = struct.Struct(">iiqqq")
_COUNT: Final = struct.Struct(">I")
_ABORTED: Final = struct.Struct(">qqqq")

Batch = tuple[int, int, int, int, int]  # first seq, last seq, first offset, last offset, ts
Aborted = tuple[int, int, int, int]  # producer id, first offset, last offset, last stable


class ProducerImage:
    """One producer of a snapshot."""

    __slots__ = ("batches", "epoch", "marker_timestamp", "producer_id", "txn_first_offset")

    def __init__(self, producer_id: int, epoch: int, txn_first_offset: int,
                 marker_timestamp: int, batches: Sequence[Batch]) -> None:
        self.producer_id = producer_id
        self.epoch = epoch
        self.txn_first_offset = txn_first_offset  # -1: no open transaction
        self.marker_timestamp = marker_timestamp  # -1: none
        self.batches = batches


def encode(producers: Sequence[ProducerImage], aborted: Iterable[Aborted]) -> bytes:
    body = bytearray()
    for p in producers:
        body += _PRODUCER.pack(p.producer_id, p.epoch, p.txn_first_offset, p.marker_timestamp,
                               len(p.batches))
        for b in p.batches:
            body += _BATCH.pack(*b)
    entries = list(aborted)
    body += _COUNT.pack(len(entries))
    for t in entries:
        body += _ABORTED.pack(*t)
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return _PREAMBLE.pack(MAGIC, VERSION, crc, len(producers)) + bytes(body)


def decode(data: bytes | memoryview) -> tuple[list[ProducerImage], list[Aborted]]:
    """The producers and aborted transactions of a snapshot; ValueError if it is damaged."""
    view = memoryview(data)
    if len(view) < _PREAMBLE.size:
        raise ValueError("producer state snapshot is truncated")
    magic, version, crc, count = _PREAMBLE.unpack_from(view, 0)
    if magic != MAGIC or version not in (1, VERSION):
        raise ValueError(f"not a producer state snapshot (magic {magic!r}, version {version})")
    body = view[_PREAMBLE.size:]
    if zlib.crc32(body) & 0xFFFFFFFF != crc:
        raise ValueError("producer state snapshot CRC mismatch")
    if count * (_PRODUCER_V1 if version == 1 else _PRODUCER).size > len(body):
        raise ValueError(f"producer state snapshot declares {count} producers")
    producers: list[ProducerImage] = []
    pos = 0
    for _ in range(count):
        image, pos = _decode_producer(body, pos, version)
        producers.append(image)
    if version == 1:
        if pos != len(body):
            raise ValueError("producer state snapshot has trailing bytes")
        return producers, []
    return producers, _decode_aborted(body, pos)


def _decode_producer(body: memoryview, pos: int, version: int) -> tuple[ProducerImage, int]:
    layout = _PRODUCER_V1 if version == 1 else _PRODUCER
    if pos + layout.size > len(body):
        raise ValueError("producer state snapshot is truncated")
    if version == 1:
        pid, epoch, n = layout.unpack_from(body, pos)
        txn_first, marker_ts = -1, -1
    else:
        pid, epoch, txn_first, marker_ts, n = layout.unpack_from(body, pos)
    pos += layout.size
    if n > MAX_BATCHES or pos + n * _BATCH.size > len(body):
        raise ValueError(f"producer state snapshot: bad batch count {n}")
    batches: list[Batch] = []
    for _ in range(n):
        batches.append(_BATCH.unpack_from(body, pos))
        pos += _BATCH.size
    return ProducerImage(pid, epoch, txn_first, marker_ts, batches), pos


def _decode_aborted(body: memoryview, pos: int) -> list[Aborted]:
    if pos + _COUNT.size > len(body):
        raise ValueError("producer state snapshot is truncated")
    (count,) = _COUNT.unpack_from(body, pos)
    pos += _COUNT.size
    if pos + count * _ABORTED.size != len(body):
        raise ValueError(f"producer state snapshot: bad aborted transaction count {count}")
    aborted: list[Aborted] = [_ABORTED.unpack_from(body, pos + i * _ABORTED.size)
                              for i in range(count)]
    if any(a[2] < b[2] for b, a in pairwise(aborted)):
        raise ValueError("producer state snapshot: aborted transactions out of order")
    return aborted
