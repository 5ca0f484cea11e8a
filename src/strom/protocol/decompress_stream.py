"""Decompressing a record batch chunk by chunk, so that memory does not grow with its size.

``chunks(codec, data, max_size)`` yields the decompressed bytes in non-empty chunks of at most
``chunk_size`` bytes and never decompresses more than ``max_size + 1`` bytes: past ``max_size``
it raises DecompressedTooLarge. Undecodable data raises CompressionError, when the decoder
meets it (a truncated or trailing-garbage stream: at its end). The formats, and what is
accepted, are those of ``compression.decompress`` (gzip members, raw and xerial snappy, lz4
frames, zstd frames, each concatenated; skippable lz4/zstd frames), which stays the one-shot
reference that the tests compare against, with one exception: a zstd frame whose output does
not match the content size it declares is refused here, where cramjam took it when its
output buffer was smaller than that size.

Memory per stream, whatever the decompressed size:

* gzip (zlib, 32 KiB window) and lz4 (liblz4 frames: at most 4 MiB blocks) hold the current
  chunk, the decoder's state and at most ``INPUT_PIECE_BYTES`` of compressed input.
* zstd holds the frame's window, which the frame declares: 2 MiB at the level clients use by
  default, at most 128 MiB (zstd's default limit, the one Kafka and cramjam decode with: a
  Java client at level 20-22 writes such frames), and only as much of it as has been written
  (at most the bytes decompressed so far).
* snappy cannot be streamed below the block: a copy may reach back anywhere in its block.
  Raw snappy (librdkafka) is one block, decompressed whole; xerial framing (the Java client,
  32 KiB blocks) is decompressed block by block. A block's size is declared up front and
  checked against ``max_size`` before anything is decompressed; it is also at most ~21.4
  times its compressed size (a 3-byte copy yields at most 64 bytes), and the compressed data
  is bounded by ``max.message.bytes``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final, Literal, Protocol

import cramjam
import lz4.frame  # type: ignore[import-untyped]

from strom.protocol.compression import (
    GZIP,
    LZ4,
    SNAPPY,
    ZSTD,
    Buffer,
    CompressionError,
    DecompressedTooLarge,
    decompress,
    snappy_blocks,
)
from strom.protocol.decompress_zstd import ZstdReader

CHUNK_BYTES: Final = 2 * 1024 * 1024
"""The largest chunk ``chunks`` yields by default: most batches are one chunk."""
INPUT_PIECE_BYTES: Final = 1024 * 1024
"""Compressed bytes handed to a gzip or lz4 decoder at a time: bounds the copies those
decoders make of the input they have not consumed yet."""


class _Reader(Protocol):
    def read(self, size: int) -> Buffer:
        """Up to `size` (>= 1) decompressed bytes, at least one unless the data ended."""


def chunks(codec: int, data: Buffer, max_size: int,
           chunk_size: int = CHUNK_BYTES) -> Iterator[Buffer]:
    """The decompressed bytes of `data`, in chunks of 1..chunk_size bytes.

    A chunk stays valid after the next one is read. Raises CompressionError for an unknown
    codec at once, DecompressedTooLarge once more than `max_size` bytes came out.
    """
    reader = _open(codec, memoryview(data).cast("B"), max_size)
    return _capped(reader, max_size, chunk_size)


def _capped(reader: _Reader, max_size: int, chunk_size: int) -> Iterator[Buffer]:
    total = 0
    try:
        while True:
            # Never more than max_size + 1 bytes in all: a bomb costs the cap, not its size.
            chunk = reader.read(min(chunk_size, max_size + 1 - total))
            if not chunk:
                return
            total += len(chunk)
            if total > max_size:
                raise DecompressedTooLarge(f"decompressed data exceeds {max_size} bytes")
            yield chunk
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close(total <= chunk_size)


def _open(codec: int, view: memoryview, max_size: int) -> _Reader:
    if codec == GZIP:
        return _GzipReader(view)
    if codec == SNAPPY:
        return _SnappyReader(view, max_size)
    if codec == LZ4:
        return _Lz4Reader(view)
    if codec == ZSTD:
        return ZstdReader(view)
    raise CompressionError(f"unknown compression codec {codec}")


class _GzipReader:
    """gzip members one after another (zlib checks each member's CRC-32 and length).

    A batch that decompresses to one chunk, as most do, is decompressed in one go by cramjam
    (its decoder is ~1.6x faster than zlib 1.2); a larger one is streamed by zlib from the
    start. Both refuse the same data: cut or trailing-garbage streams, bad checksums.
    """

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0
        self._tail: Buffer = b""  # input given to zlib and not consumed yet
        self._member: zlib._Decompress | None = None
        self._members = 0
        self._state: Literal["new", "done", "streaming"] = "new"  # done: in one go

    def read(self, size: int) -> Buffer:
        if self._state == "streaming":
            return self._stream(size)
        if self._state == "done":
            return b""
        whole = self._in_one_go(size)
        self._state = "streaming" if whole is None else "done"
        return self._stream(size) if whole is None else whole

    def _in_one_go(self, size: int) -> Buffer | None:
        """All of it if it is at most `size` bytes, else None (then it streams).

        ISIZE (the last 4 bytes: the last member's size mod 2**32) says which is likely.
        """
        if len(self._view) >= 4 and int.from_bytes(self._view[-4:], "little") > size:
            return None
        try:
            return decompress(GZIP, self._view, size)
        except DecompressedTooLarge:
            return None

    def _stream(self, size: int) -> Buffer:
        while True:
            member = self._member
            if member is None:
                if not self._tail and self._pos >= len(self._view):
                    if self._members == 0:
                        raise CompressionError("gzip: no data")
                    return b""
                member = self._member = zlib.decompressobj(31)
                self._members += 1
            fed = self._feed()
            try:
                out = member.decompress(self._tail, size)
            except zlib.error as exc:
                raise CompressionError(f"gzip: {exc}") from None
            self._tail = member.unconsumed_tail
            if member.eof:
                self._tail = member.unused_data
                self._member = None
            if out:
                return out
            if self._member is not None and not fed and not self._tail:
                raise CompressionError("gzip: truncated member")

    def _feed(self) -> bool:
        """Gives zlib the next piece of input if it has none; False when there is none."""
        if self._tail:
            return True
        if self._pos >= len(self._view):
            return False
        self._tail = self._view[self._pos : self._pos + INPUT_PIECE_BYTES]
        self._pos += len(self._tail)
        return True


class _Lz4Reader:
    """LZ4 frames one after another (liblz4 checks the frame's checksums and content size)."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0
        self._unused = b""  # input after the end of the last frame
        self._frame: lz4.frame.LZ4FrameDecompressor | None = None
        self._frames = 0

    def read(self, size: int) -> Buffer:
        while True:
            frame = self._frame
            if frame is None:
                if not self._unused and self._pos >= len(self._view):
                    if self._frames == 0:
                        raise CompressionError("lz4: no data")
                    return b""
                frame = self._frame = lz4.frame.LZ4FrameDecompressor()
                self._frames += 1
            data = self._next_input() if frame.needs_input else b""
            if frame.needs_input and not data:
                raise CompressionError("lz4: truncated frame")
            try:
                out = frame.decompress(data, max_length=size)
            except RuntimeError as exc:  # python-lz4 reports LZ4F errors so
                raise CompressionError(f"lz4: {exc}") from None
            if frame.eof:
                self._unused = frame.unused_data or b""
                self._frame = None
            if out:
                return bytes(out)
            if not data and not frame.needs_input:
                raise CompressionError("lz4: the decoder makes no progress")

    def _next_input(self) -> bytes:
        if self._unused:
            data, self._unused = self._unused, b""
            return data
        data = bytes(self._view[self._pos : self._pos + INPUT_PIECE_BYTES])
        self._pos += len(data)
        return data


class _SnappyReader:
    """Raw snappy (one block) or xerial blocks, each decompressed whole when first read."""

    def __init__(self, view: memoryview, max_size: int) -> None:
        self._blocks, self._sizes = snappy_blocks(view, max_size)
        self._next = 0
        self._out = memoryview(b"")
        self._off = 0

    def read(self, size: int) -> Buffer:
        if self._off >= len(self._out):
            if self._next >= len(self._blocks):
                return b""
            self._out = memoryview(self._fill(size))
            self._off = 0
        out = self._out[self._off : self._off + size]
        self._off += len(out)
        return out

    def _fill(self, size: int) -> bytearray:
        """The next block, or as many next blocks as fit in `size` bytes, decompressed."""
        first = self._next
        total = self._sizes[first]
        last = first + 1
        while last < len(self._blocks) and total + self._sizes[last] <= size:
            total += self._sizes[last]
            last += 1
        out = bytearray(total)
        pos = 0
        try:
            for block, block_size in zip(self._blocks[first:last], self._sizes[first:last],
                                         strict=True):
                target = memoryview(out)[pos : pos + block_size]
                if cramjam.snappy.decompress_raw_into(block, target) != block_size:
                    raise CompressionError("snappy: block shorter than its header says")
                pos += block_size
        except cramjam.DecompressionError as exc:
            raise CompressionError(str(exc)) from None
        self._next = last
        return out
