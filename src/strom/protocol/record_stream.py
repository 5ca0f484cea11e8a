"""Walking and parsing a compressed batch's records as they decompress, in bounded memory.

Kafka validates a compressed batch with a streaming iterator that skips key and value bytes
(DefaultRecordBatch.skipKeyValueIterator). strom streams too, and gives exactly the verdicts of
the one-shot path (``records_region``: decompress whole, then ``walk_records`` or
``parse_records``), error codes and messages included:

* The decompressed chunks (``decompress_stream.chunks``, at most ``CHUNK_BYTES`` each) are
  walked by ``walk_chunk``'s partial walk: the records wholly inside the chunk, the first
  incomplete one carried over into the next chunk. At most ``WINDOW_BYTES`` of a record are
  carried: a longer record (a valid 200 MiB record, say) is walked by a streaming skipper
  that reads its fields as they pass and skips its key, value and header bytes unheld.
* The one-shot path decompresses everything before it walks, so a decompression error
  (undecodable data; MESSAGE_TOO_LARGE past the cap) wins over any record error: a record
  error met while streaming is raised once the rest of the data has decompressed cleanly.
* A record's verdict depends only on the bytes it reads and on where the data ends: the
  partial walk never judges a record that more bytes could change, and the skipper checks
  that the data reaches the record's declared end before it reports a field error, as the
  one-shot walk checks that first.

Memory per batch: a chunk, at most ``WINDOW_BYTES`` carried over, and the decoder's state (see
decompress_stream), whatever the decompressed size. ``parse_stream`` (behind iter_records)
holds each record whole while it parses it, as the Record it yields holds its key and value.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Final, NoReturn

from strom.protocol import compression, decompress_stream
from strom.protocol.decompress_stream import CHUNK_BYTES
from strom.protocol.record_errors import (
    PREMATURE_EOF,
    RECORDS_REMAINING,
    VARINT_TOO_LONG,
    RecordsError,
    RecordsErrorCode,
    decompression_failed,
    invalid,
)
from strom.protocol.record_walk import (
    ReadBuffer,
    Record,
    parse_record,
    read_varint,
    walk_chunk,
    walk_headers,
)

WINDOW_BYTES: Final = 1024 * 1024
"""The most bytes of one record carried over from chunk to chunk: a longer record is walked
by the streaming skipper."""
_NO_RECORDS: Final = (1 << 64, -(1 << 64), 0)

Chunks = Iterator[ReadBuffer]


def record_chunks(payload: ReadBuffer, codec: int, max_decompressed_bytes: int,
                  chunk_size: int = CHUNK_BYTES) -> Chunks:
    """The decompressed records section of a batch, in chunks; decompression errors are
    RecordsErrors (records_region's), raised as the chunks are read."""
    if codec not in compression.CODEC_NAMES or codec == compression.NONE:
        raise RecordsError(RecordsErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
                           f"Unknown compression type id: {codec}")
    return _mapped_chunks(payload, codec, max_decompressed_bytes, chunk_size)


def _mapped_chunks(payload: ReadBuffer, codec: int, max_decompressed_bytes: int,
                   chunk_size: int) -> Chunks:
    try:
        yield from decompress_stream.chunks(codec, payload, max_decompressed_bytes, chunk_size)
    except compression.CompressionError as exc:
        too_large = isinstance(exc, compression.DecompressedTooLarge)
        raise decompression_failed(compression.CODEC_NAMES[codec], exc,
                                   max_decompressed_bytes, too_large) from None


def walk_stream(chunks: Chunks, count: int, window: int = WINDOW_BYTES) -> tuple[int, int, int]:
    """walk_records over the concatenated chunks, for `count` records from the start."""
    lo, hi, nulls = _NO_RECORDS
    for step_lo, step_hi, step_nulls in _walk_steps(chunks, count, window, count):
        lo = min(lo, step_lo)
        hi = max(hi, step_hi)
        nulls += step_nulls
    return lo, hi, nulls


def record_summaries(chunks: Chunks, count: int,
                     window: int = WINDOW_BYTES) -> Iterator[tuple[int, bool]]:
    """(timestamp delta, key is null) of each record, walked as walk_stream walks them."""
    for lo, hi, null in _walk_steps(chunks, count, window, 1):
        # lo and hi start at 2**64 and -2**64, so one of them is the record's delta.
        yield (lo if lo < _NO_RECORDS[0] else hi), null > 0


def _walk_steps(chunks: Chunks, count: int, window: int,
                step: int) -> Iterator[tuple[int, int, int]]:
    """(lo, hi, nulls) of the next records, at most `step` at a time."""
    buf: ReadBuffer = b""
    pos = i = 0
    while i < count:
        try:
            pos, done, lo, hi, nulls = walk_chunk(buf, pos, i, min(count, i + step), False)
            if done == i and len(buf) - pos > window:
                cursor = _Cursor(buf, pos, chunks)
                delta, null, record_end = _skip_record(cursor, i)
                buf, pos, done = cursor.rest(record_end), 0, i + 1
                lo, hi, nulls = delta, delta, int(null)
        except RecordsError as err:
            _fail(err, chunks)
        except _DecompressionFailed as failed:
            raise failed.error from None
        if done > i:
            i = done
            yield lo, hi, nulls
            continue
        chunk = next(chunks, None)
        if chunk is None:  # record i runs past the end of the data: a final walk says how
            walk_chunk(buf, pos, i, count, True)
            raise AssertionError(f"record {i} was cut by the end of the data, yet it walked")
        buf, pos = _append(buf, pos, chunk), 0
    if pos < len(buf) or next(chunks, None) is not None:
        _fail(invalid(RECORDS_REMAINING), chunks)


def _fail(err: RecordsError, chunks: Chunks) -> NoReturn:
    """Raises `err` once the rest of the data has decompressed: a decompression error, which
    the one-shot path meets before any record, wins."""
    for _ in chunks:
        pass
    raise err


class _End(Exception):
    """The decompressed data ended."""


class _DecompressionFailed(Exception):
    """A decompression error met by the skipper, which must not take it for a record's."""

    def __init__(self, error: RecordsError) -> None:
        super().__init__(error.message)
        self.error = error


class _Cursor:
    """The decompressed bytes from a record's start (position 0) on, read forward: the rest of
    the current buffer, then the next chunks, each dropped once passed."""

    __slots__ = ("_chunks", "base", "data")

    def __init__(self, buf: ReadBuffer, pos: int, chunks: Chunks) -> None:
        self.data = buf
        self.base = -pos  # the position of data[0]
        self._chunks = chunks

    def at(self, p: int) -> int:
        """data's index of position p (>= base), reading chunks forward; _End past the data."""
        while p >= self.base + len(self.data):
            self._next()
        return p - self.base

    def byte(self, p: int) -> int:
        index = self.at(p)  # may move on to the next chunk: data is read after
        return self.data[index]

    def reaches(self, p: int) -> bool:
        """Whether the data goes on to position p (p <= its end)."""
        try:
            while p > self.base + len(self.data):
                self._next()
        except _End:
            return False
        return True

    def rest(self, p: int) -> ReadBuffer:
        """The bytes from position p (reached, and >= base) to the end of the current chunk."""
        return memoryview(self.data)[p - self.base :]

    def _next(self) -> None:
        self.base += len(self.data)
        self.data = b""  # at the end, base is where the data ends
        try:
            chunk = next(self._chunks, None)
        except RecordsError as exc:
            raise _DecompressionFailed(exc) from None
        if chunk is None:
            raise _End
        self.data = chunk


def _varint(cur: _Cursor, p: int, max_bytes: int) -> tuple[int, int]:
    raw = 0
    for k in range(max_bytes):
        b = cur.byte(p + k)
        raw |= (b & 0x7F) << (7 * k)
        if b < 0x80:
            return (raw >> 1) ^ -(raw & 1), p + k + 1
    raise invalid(VARINT_TOO_LONG)


def _skip_record(cur: _Cursor, i: int) -> tuple[int, bool, int]:
    """Walks record i (at position 0) as walk_records does, its bytes read as they stream:
    (timestamp delta, key is null, the record's end)."""
    try:
        length, start = _varint(cur, 0, 5)
    except _End:
        raise invalid(f"{PREMATURE_EOF} (record {i})") from None
    record_end = start + length
    error: RecordsError | None = None
    delta, key_null = 0, False
    try:
        delta, key_null, pos = _skip_fields(cur, start, i)
        if pos != record_end:
            error = invalid(f"Invalid record size: expected to read {length} bytes in record "
                            f"payload, but instead read {length + pos - record_end}")
    except _End:
        error = invalid(f"{PREMATURE_EOF} (record {i})")
    except RecordsError as exc:
        error = exc
    if not cur.reaches(record_end):  # the one-shot walk checks the declared size first
        raise invalid(f"Invalid record size: expected {length} bytes in record payload, but "
                      f"the batch has only {cur.base - start} remaining bytes")
    if error is not None:
        raise error
    return delta, key_null, record_end


def _skip_fields(cur: _Cursor, pos: int, i: int) -> tuple[int, bool, int]:
    """The fields after the length (the attributes byte is not read): (delta, null, end)."""
    delta, pos = _varint(cur, pos + 1, 10)
    offset_delta, pos = _varint(cur, pos, 5)
    if offset_delta != i:
        raise invalid(f"Record {i} has offset delta {offset_delta}, expected {i}")
    key_len, pos = _varint(cur, pos, 5)
    value_len, pos = _varint(cur, pos + max(key_len, 0), 5)
    count, pos = _varint(cur, pos + max(value_len, 0), 5)
    if count < 0:
        raise invalid(f"Found invalid number of record headers {count}")
    return delta, key_len < 0, _skip_headers(cur, pos, count)


def _skip_headers(cur: _Cursor, pos: int, count: int) -> int:
    """Skips `count` headers: those inside a chunk in C, one cut by a chunk's end here."""
    while count > 0:
        index = cur.at(pos)  # may move on to the next chunk: data is read after
        end, left = walk_headers(cur.data, index, count)
        if left < count:
            pos, count = cur.base + end, left
            continue
        key_len, pos = _varint(cur, pos, 5)
        if key_len < 0:
            raise invalid(f"Invalid negative header key size {key_len}")
        value_len, pos = _varint(cur, pos + key_len, 5)
        pos += max(value_len, 0)
        count -= 1
    return pos


def parse_stream(chunks: Chunks, count: int) -> Iterator[Record]:
    """parse_records over the concatenated chunks: the same records and errors. A record is
    held whole (from the chunks it spans) only while it is parsed."""
    first = list(itertools.islice(chunks, 2))  # a batch of one chunk fails here, as before
    chunks = itertools.chain(first, chunks)
    return _parse_chunks(chunks, count)


def _parse_chunks(chunks: Chunks, count: int) -> Iterator[Record]:
    buf: ReadBuffer = b""
    pos = 0
    for i in range(count):
        while (parsed := _parse_whole(buf, pos, chunks)) is None:
            chunk = next(chunks, None)
            if chunk is None:
                _parse_last(buf, pos, i)
            buf, pos = _append(buf, pos, chunk), 0
        record, pos = parsed
        yield record
    if pos < len(buf) or next(chunks, None) is not None:
        _fail(invalid(RECORDS_REMAINING), chunks)


def _parse_whole(buf: ReadBuffer, pos: int, chunks: Chunks) -> tuple[Record, int] | None:
    """The record at buf[pos:], or None while more bytes could change what it is."""
    try:
        if isinstance(buf, bytearray):
            with memoryview(buf) as view:  # keys and values copied once, not twice
                return parse_record(view, pos)
        return parse_record(buf, pos)
    except IndexError:
        return None
    except RecordsError as err:
        if _cut(buf, pos):  # its declared size passes the end of buf: wait for more
            return None
        _fail(err, chunks)


def _cut(buf: ReadBuffer, pos: int) -> bool:
    try:
        length, start = read_varint(buf, pos)
    except RecordsError:
        return False
    return start + length > len(buf)


def _parse_last(buf: ReadBuffer, pos: int, i: int) -> NoReturn:
    """Raises parse_records' error for record i, which the end of the data cut."""
    try:
        parse_record(buf, pos)
    except IndexError:
        raise invalid(f"{PREMATURE_EOF} (record {i})") from None
    raise AssertionError(f"record {i} was cut by the end of the data, yet it parsed")


class _Carry(bytearray):
    """The bytes of a record cut by the end of a chunk, then the next chunk: a buffer of our
    own, trimmed in place (decoders hand out bytes or memoryviews)."""


def _append(buf: ReadBuffer, pos: int, chunk: ReadBuffer) -> ReadBuffer:
    """buf[pos:] followed by chunk."""
    if pos >= len(buf):
        return chunk
    if isinstance(buf, _Carry):
        carry = buf
        del carry[:pos]
    else:
        carry = _Carry(memoryview(buf)[pos:])
    carry += chunk
    return carry
