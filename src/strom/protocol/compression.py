"""The compression codecs of Kafka record batches, with bounded decompression.

Codec ids are the low three attribute bits of a v2 batch: 0 none, 1 gzip, 2 snappy, 3 lz4,
4 zstd. The formats are the ones Kafka clients write:

* gzip: a gzip stream (one or more members), its CRC-32 checked.
* snappy: either raw snappy (librdkafka and most non-Java clients) or snappy-java's xerial
  framing (the Java client): the magic ``\\x82SNAPPY\\x00``, two big-endian int32 versions, then
  blocks of a big-endian int32 length and a raw snappy block. Both are read; `compress`
  writes raw unless asked for xerial, and the log cleaner's streaming rewrite
  (compress_stream.py) always writes xerial, which every Kafka client reads.
* lz4: the LZ4 frame format, read with linked or independent blocks, written with
  independent ones (the Java client refuses linked blocks).
* zstd: a zstd frame.

``decompress`` never produces more than ``max_size`` bytes: it stops at the cap and raises
``DecompressedTooLarge`` instead of inflating a compression bomb (snappy is refused from the
sizes its blocks declare, before any decompression).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Final

import cramjam

NONE: Final = 0
GZIP: Final = 1
SNAPPY: Final = 2
LZ4: Final = 3
ZSTD: Final = 4
CODEC_NAMES: Final = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER: Final = struct.Struct(">8sii")
_XERIAL_BLOCK_LEN: Final = struct.Struct(">i")
XERIAL_BLOCK_SIZE: Final = 32 * 1024  # snappy-java's default block size
_OVERFLOW: Final = "failed to write whole buffer"  # cramjam's message when the output is full
_FIRST_GUESS_MIN: Final = 64 * 1024
_GROWTH: Final = 4
_SCRATCH_KEEP: Final = 16 * 1024 * 1024

Buffer = bytes | bytearray | memoryview


class CompressionError(Exception):
    """Data that the codec cannot decode, or a codec id that is not 1..4."""


class DecompressedTooLarge(CompressionError):
    """The data decompresses to more than the allowed number of bytes."""


def decompress(codec: int, data: Buffer, max_size: int) -> bytes | bytearray:
    """Decompresses `data`, raising DecompressedTooLarge past `max_size` output bytes."""
    if codec == GZIP:
        return _decompress_into(cramjam.gzip.decompress_into, data, max_size)
    if codec == SNAPPY:
        return _unsnappy(data, max_size)
    if codec == LZ4:
        return _decompress_into(cramjam.lz4.decompress_into, data, max_size)
    if codec == ZSTD:
        return _decompress_into(cramjam.zstd.decompress_into, data, max_size)
    raise CompressionError(f"unknown compression codec {codec}")


def compress(codec: int, data: Buffer, *, snappy_xerial: bool = False) -> bytes:
    """Compresses `data` the way Kafka clients do (for tests and client-side tooling)."""
    if codec == NONE:
        return bytes(data)
    if codec == GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == SNAPPY:
        return _xerial_compress(data) if snappy_xerial else bytes(cramjam.snappy.compress_raw(data))
    if codec == LZ4:
        compressor = cramjam.lz4.Compressor(block_linked=False)
        compressor.compress(data if isinstance(data, bytes) else bytes(data))
        return bytes(compressor.finish())
    if codec == ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise CompressionError(f"unknown compression codec {codec}")


def _too_large(max_size: int) -> DecompressedTooLarge:
    return DecompressedTooLarge(f"decompressed data exceeds {max_size} bytes")


def snappy_blocks(view: memoryview, max_size: int) -> tuple[list[memoryview], list[int]]:
    """The raw snappy blocks of `view` (one, or xerial's) and the sizes they declare.

    Raises DecompressedTooLarge if the sizes add up to more than `max_size`: snappy is
    refused from what its blocks declare, before anything is decompressed.
    """
    blocks = _xerial_blocks(view) if bytes(view[:8]) == XERIAL_MAGIC else [view]
    try:
        sizes = [int(cramjam.snappy.decompress_raw_len(block)) for block in blocks]
    except cramjam.DecompressionError as exc:
        raise CompressionError(str(exc)) from None
    if sum(sizes) > max_size:
        raise _too_large(max_size)
    return blocks, sizes


def _unsnappy(data: Buffer, max_size: int) -> bytearray:
    blocks, sizes = snappy_blocks(memoryview(data), max_size)
    out = bytearray(sum(sizes))
    pos = 0
    try:
        for block, size in zip(blocks, sizes, strict=True):
            if cramjam.snappy.decompress_raw_into(block, memoryview(out)[pos : pos + size]) != size:
                raise CompressionError("snappy: block shorter than its header says")
            pos += size
    except cramjam.DecompressionError as exc:
        raise CompressionError(str(exc)) from None
    return out


def _xerial_blocks(view: memoryview) -> list[memoryview]:
    if len(view) < _XERIAL_HEADER.size:
        raise CompressionError("snappy: truncated xerial header")
    blocks = []
    pos = _XERIAL_HEADER.size
    while pos < len(view):
        if pos + 4 > len(view):
            raise CompressionError("snappy: truncated xerial block length")
        (length,) = _XERIAL_BLOCK_LEN.unpack_from(view, pos)
        pos += 4
        if length < 0 or pos + length > len(view):
            raise CompressionError("snappy: xerial block overruns the data")
        blocks.append(view[pos : pos + length])
        pos += length
    return blocks


def _xerial_compress(data: Buffer) -> bytes:
    view = memoryview(data)
    out = bytearray(_XERIAL_HEADER.pack(XERIAL_MAGIC, 1, 1))
    for pos in range(0, len(view), XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(view[pos : pos + XERIAL_BLOCK_SIZE]))
        out += _XERIAL_BLOCK_LEN.pack(len(block))
        out += block
    return bytes(out)


class _Scratch(threading.local):
    """A per-thread output buffer, reused so that decompressing costs no fresh zeroed pages."""

    buf = bytearray()


_scratch: Final = _Scratch()


def _decompress_into(fn: Callable[[Buffer, memoryview], int], data: Buffer,
                     max_size: int) -> bytes:
    """Decompresses into the scratch buffer, grown 4x per try up to max_size + 1 bytes.

    cramjam's ``decompress_into`` stops when its output is full, so no try produces more than
    the try's size and a bomb costs about 4/3 of max_size of work and memory. A try uses the
    whole scratch buffer when it is larger than the first guess (4x the input), so a warm
    buffer usually takes one try. The result is copied out; a scratch buffer larger than
    _SCRATCH_KEEP is dropped after use.
    """
    size = min(max_size + 1, max(_FIRST_GUESS_MIN, _GROWTH * len(data), len(_scratch.buf)))
    try:
        while True:
            if len(_scratch.buf) < size:
                _scratch.buf = bytearray(size)
            with memoryview(_scratch.buf)[:size] as out:
                try:
                    written = int(fn(data, out))
                except cramjam.DecompressionError as exc:
                    if _OVERFLOW not in str(exc):
                        raise CompressionError(str(exc)) from None
                    if size > max_size:
                        raise _too_large(max_size) from None
                    size = min(max_size + 1, size * _GROWTH)
                    continue
                if written > max_size:
                    raise _too_large(max_size)
                return bytes(out[:written])
    finally:
        if len(_scratch.buf) > _SCRATCH_KEEP:
            _scratch.buf = bytearray()
