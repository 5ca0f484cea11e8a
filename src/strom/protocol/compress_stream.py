"""Compressing a record batch's payload piece by piece, in the formats Kafka clients read.

`CompressingWriter` takes the uncompressed bytes in `pending` (a small window the caller appends
records to) and, each time the window reaches WINDOW_BYTES, compresses it and appends the
compressed bytes to `out`, a bytearray the caller owns. So building a payload holds the
compressed output and one window, never the whole uncompressed payload:

* gzip, zstd, lz4: cramjam's streaming `Compressor`, flushed after each window so that its
  output moves to `out` (a gzip sync flush, the end of a zstd block, the end of an lz4 block:
  one stream or frame that every reader decodes as one). lz4 is written with independent
  blocks (`block_linked=False`), as compression.compress writes it: the Java client refuses
  linked blocks.
* snappy: xerial framing (snappy-java's, what the Java producer writes): the 16-byte header,
  then blocks of 32 KiB of input, each a big-endian int32 length and a raw snappy block. A raw
  snappy payload is one block that needs all its input at once, so it cannot be streamed;
  librdkafka (snappy-java framing detected by its magic), kafka-python and aiokafka (xerial
  detection; aiokafka also requires versions 1 and 1, which is what is written here) and the
  Java client (SnappyInputStream) all read xerial.
* none: the window is appended as it is.
"""

from __future__ import annotations

import struct
from typing import Final

import cramjam

from strom.protocol.compression import (
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    XERIAL_BLOCK_SIZE,
    XERIAL_MAGIC,
    ZSTD,
    CompressionError,
)

WINDOW_BYTES: Final = 32 * XERIAL_BLOCK_SIZE  # 1 MiB of uncompressed bytes at most pending
_XERIAL_HEADER: Final = struct.Struct(">8sii")
_XERIAL_BLOCK_LEN: Final = struct.Struct(">i")


_Stream = cramjam.gzip.Compressor | cramjam.lz4.Compressor | cramjam.zstd.Compressor


def _stream(codec: int) -> _Stream:
    if codec == GZIP:
        return cramjam.gzip.Compressor()
    if codec == LZ4:
        return cramjam.lz4.Compressor(block_linked=False)
    if codec == ZSTD:
        return cramjam.zstd.Compressor()
    raise CompressionError(f"no streaming compressor for codec {codec}")


class CompressingWriter:
    """Appends the compression of the bytes written to `pending` to `out`; call spill() after
    appending to `pending` and finish() once at the end."""

    __slots__ = ("_codec", "_out", "_stream", "pending")

    def __init__(self, codec: int, out: bytearray) -> None:
        self._codec = codec
        self._out = out
        self.pending = bytearray()
        self._stream: _Stream | None = None
        if codec == SNAPPY:
            out += _XERIAL_HEADER.pack(XERIAL_MAGIC, 1, 1)
        elif codec != NONE:
            self._stream = _stream(codec)

    def spill(self) -> None:
        """Compresses the window if it is full."""
        if len(self.pending) >= WINDOW_BYTES:
            self._drain(final=False)

    def finish(self) -> None:
        """Compresses what is left and ends the stream; the writer is then done."""
        self._drain(final=True)
        if self._stream is not None:
            self._out += memoryview(self._stream.finish())
            self._stream = None

    def _drain(self, *, final: bool) -> None:
        pending, out = self.pending, self._out
        if self._codec == NONE:
            out += pending
            pending.clear()
        elif self._codec == SNAPPY:
            self._xerial_blocks(final)
        else:
            assert self._stream is not None, "finish() was called already"
            self._stream.compress(bytes(pending))
            pending.clear()
            out += memoryview(self._stream.flush())

    def _xerial_blocks(self, final: bool) -> None:
        """Writes the window's whole 32 KiB blocks (and, at the end, the last short one)."""
        pending, out = self.pending, self._out
        size = len(pending) if final else len(pending) - len(pending) % XERIAL_BLOCK_SIZE
        with memoryview(pending) as view:
            for pos in range(0, size, XERIAL_BLOCK_SIZE):
                block = cramjam.snappy.compress_raw(view[pos:min(pos + XERIAL_BLOCK_SIZE, size)])
                out += _XERIAL_BLOCK_LEN.pack(len(block))
                out += memoryview(block)
        del pending[:size]
