"""Reading zstd frames as a stream, one frame at a time, for decompress_stream."""

from __future__ import annotations

import threading
from typing import Final

import zstandard

from strom.protocol.compression import Buffer, CompressionError

_ZSTD_SKIPPABLE: Final = 0x184D2A50  # the low 4 bits are free
_ZSTD_POOL_MAX: Final = 4


class _ZstdPool(threading.local):
    """Idle decompression contexts of this thread: a fresh one costs ~15 us."""

    idle: list[zstandard.ZstdDecompressor]

    def __init__(self) -> None:
        self.idle = []


_zstd_pool: Final = _ZstdPool()


class ZstdReader:
    """zstd frames one after another, skippable frames skipped, decoded one frame at a time.

    Each frame's extent comes from its block headers (RFC 8878): the streaming decoder waits
    for more input at a cut frame instead of reporting it, and, read in pieces smaller than a
    declared content size, it may end a frame that produced nothing without an error; so a cut
    frame and a content size that the output does not match are checked here.
    """

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0  # where the next frame starts
        idle = _zstd_pool.idle
        self._dctx = idle.pop() if idle else zstandard.ZstdDecompressor()
        self._frame: zstandard.ZstdDecompressionReader | None = None
        self._frame_end = 0
        self._content_size = -1  # the current frame's, -1 when it declares none
        self._produced = 0  # by the current frame
        self._frames = 0

    def read(self, size: int) -> Buffer:
        while True:
            if self._frame is None and not self._next_frame():
                return b""
            assert self._frame is not None
            try:
                out = self._frame.read(size)
            except zstandard.ZstdError as exc:
                raise CompressionError(str(exc)) from None
            if out:
                self._produced += len(out)
                return out
            self._end_frame()

    def _next_frame(self) -> bool:
        """Opens the next frame after any skippable ones; False at the end of the data."""
        view, pos = self._view, self._pos
        while len(view) - pos >= 8 and (int.from_bytes(view[pos : pos + 4], "little")
                                        & 0xFFFFFFF0) == _ZSTD_SKIPPABLE:
            pos += 8 + int.from_bytes(view[pos + 4 : pos + 8], "little")
            self._frames += 1
        if pos == len(view) and self._frames:
            return False
        if pos > len(view) or len(view) - pos < 4:
            raise CompressionError("zstd: incomplete frame")
        try:
            params = zstandard.get_frame_parameters(view[pos:])
        except zstandard.ZstdError as exc:
            raise CompressionError(str(exc)) from None
        self._frame_end = _zstd_frame_end(view, pos + 4)
        self._content_size = params.content_size
        if self._content_size == zstandard.CONTENTSIZE_UNKNOWN:
            self._content_size = -1
        self._frame = self._dctx.stream_reader(view[pos : self._frame_end])
        self._produced = 0
        self._frames += 1
        self._pos = pos
        return True

    def _end_frame(self) -> None:
        if self._frame_end > len(self._view):
            raise CompressionError("zstd: incomplete frame")
        if self._content_size >= 0 and self._produced != self._content_size:
            raise CompressionError(f"zstd: the frame declares {self._content_size} bytes and "
                                   f"holds {self._produced}")
        self._frame = None
        self._pos = self._frame_end

    def close(self, small: bool) -> None:
        """Returns the context to the pool after a small batch (a large one may have grown
        its window buffer)."""
        if small and len(_zstd_pool.idle) < _ZSTD_POOL_MAX:
            _zstd_pool.idle.append(self._dctx)


def _zstd_frame_end(view: memoryview, pos: int) -> int:
    """The end of the frame whose header descriptor is at `pos`: past the data's end when
    the frame is cut."""
    end = len(view)
    if pos >= end:
        return end + 1
    desc = view[pos]
    single_segment = (desc >> 5) & 1
    fcs_size = (single_segment, 2, 4, 8)[desc >> 6]
    pos += 1 + (1 - single_segment) + (0, 1, 2, 4)[desc & 3] + fcs_size
    last = False
    while not last:
        if pos + 3 > end:
            return end + 1
        block = int.from_bytes(view[pos : pos + 3], "little")
        last = bool(block & 1)
        pos += 3 + (1 if (block >> 1) & 3 == 1 else block >> 3)  # an RLE block holds 1 byte
    return pos + 4 * ((desc >> 2) & 1)  # the content checksum
