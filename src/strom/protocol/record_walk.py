"""Reading the records inside a v2 batch: a fast validating walk and a parsing iterator.

A record is: length (varint), attributes (int8), timestampDelta (varlong), offsetDelta
(varint), key and value (varint length, -1 for null, then bytes), a header count (varint) and
that many headers (key: varint length >= 0 and bytes; value: like the record value).
Varints are zigzag-encoded LEB128, at most 5 bytes (10 for a varlong), as in Kafka's ByteUtils.

Both readers work on a buffer that ends exactly where the records end, so a read past the end
is an IndexError, which they turn into INVALID_RECORD as Kafka does for malformed records.

The walk runs for every produced batch, so ``walk_records`` is the C extension
``strom.protocol._record_walk`` when it was built (``WALK_IMPLEMENTATION == "c"``), with exactly
the semantics of the pure-Python ``walk_records_py``, used otherwise (no compiler at install).
So are ``walk_chunk`` (the walk resumed at any record, and a partial walk that stops before a
record cut by the end of the buffer) and ``walk_headers``, with which record_stream walks a
compressed batch as it decompresses. ``records_region`` decompresses whole: it is the one-shot
reference that the streaming path is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Literal

from strom.protocol import compression
from strom.protocol.batch_header import BATCH_HEADER_SIZE, BatchHeader
from strom.protocol.record_errors import (
    PREMATURE_EOF,
    RECORDS_REMAINING,
    VARINT_TOO_LONG,
    RecordsError,
    RecordsErrorCode,
    decompression_failed,
    invalid,
)

ReadBuffer = bytes | bytearray | memoryview
Header = tuple[bytes, bytes | None]

# Zigzag decoding of the one-byte varints (0..127) and of the two-byte ones (the 14 payload
# bits, low group first), looked up in the hot loop.
_ZZ: Final = tuple((b >> 1) ^ -(b & 1) for b in range(1 << 7))
_ZZ2: Final = tuple((v >> 1) ^ -(v & 1) for v in range(1 << 14))
_INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Record:
    """One record; its offset is base_offset + offset_delta and, in a CreateTime batch, its
    timestamp is base_timestamp + timestamp_delta (in a LogAppendTime batch: max_timestamp)."""

    offset_delta: int
    timestamp_delta: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


def _varint_n(buf: ReadBuffer, pos: int, max_bytes: int) -> tuple[int, int]:
    raw = 0
    shift = 0
    for p in range(pos, pos + max_bytes):
        b = buf[p]
        raw |= (b & 0x7F) << shift
        if b < 0x80:
            return (raw >> 1) ^ -(raw & 1), p + 1
        shift += 7
    raise invalid(VARINT_TOO_LONG)


def _varint_more(buf: ReadBuffer, pos: int) -> tuple[int, int]:
    """A varint whose first byte has the continuation bit; two-byte varints are common."""
    b2 = buf[pos + 1]
    if b2 < 0x80:
        raw = (buf[pos] & 0x7F) | (b2 << 7)
        return (raw >> 1) ^ -(raw & 1), pos + 2
    return _varint_n(buf, pos, 5)


def _varlong_more(buf: ReadBuffer, pos: int) -> tuple[int, int]:
    b2 = buf[pos + 1]
    if b2 < 0x80:
        raw = (buf[pos] & 0x7F) | (b2 << 7)
        return (raw >> 1) ^ -(raw & 1), pos + 2
    return _varint_n(buf, pos, 10)


def read_varint(buf: ReadBuffer, pos: int) -> tuple[int, int]:
    """(value, next position) of the zigzag varint at pos."""
    b = buf[pos]
    return (_ZZ[b], pos + 1) if b < 0x80 else _varint_more(buf, pos)


def read_varlong(buf: ReadBuffer, pos: int) -> tuple[int, int]:
    b = buf[pos]
    return (_ZZ[b], pos + 1) if b < 0x80 else _varlong_more(buf, pos)


def _skip_headers(buf: ReadBuffer, pos: int) -> int:
    count, pos = read_varint(buf, pos)
    if count < 0:
        raise invalid(f"Found invalid number of record headers {count}")
    for _ in range(count):
        key_len, pos = read_varint(buf, pos)
        if key_len < 0:
            raise invalid(f"Invalid negative header key size {key_len}")
        value_len, pos = read_varint(buf, pos + key_len)
        pos += value_len if value_len > 0 else 0
    return pos


def walk_records_py(buf: ReadBuffer, pos: int, count: int) -> tuple[int, int, int]:
    """Checks that `count` well-formed records with offset deltas 0..count-1 fill buf[pos:].

    Returns (min timestamp delta, max timestamp delta, number of null keys). Creates no
    per-record objects: this runs for every produced batch. Negative key/value lengths other
    than -1 read as null, as in Kafka's DefaultRecord.
    """
    return _walk(buf, pos, 0, count, True)[2:]


def walk_chunk_py(buf: ReadBuffer, pos: int, index: int, count: int,
                  final: bool) -> tuple[int, int, int, int, int]:
    """Walks records index..count-1 from buf[pos:]; returns (pos, index, lo, hi, nulls).

    `pos` and `index` are where the walk stopped; lo, hi and nulls are walk_records_py's
    results for the records walked (2**64, -2**64, 0 for none). A final walk is
    walk_records_py's, its offset deltas and record numbers counted from `index`. A partial
    walk (`final` false), for a buffer that more bytes will follow, stops before the first
    record that is not wholly inside it (its length varint, its declared extent or any of its
    reads reach past the end) and never raises for what more bytes could change: the caller
    walks that record again with more bytes. Needs 0 <= pos <= len(buf) and index >= 0.
    """
    if not 0 <= pos <= len(buf) or index < 0:
        raise ValueError("walk_chunk: pos must be in [0, len(buf)] and index >= 0")
    return _walk(buf, pos, index, count, final)


def _walk(buf: ReadBuffer, pos: int, index: int, count: int,
          final: bool) -> tuple[int, int, int, int, int]:
    """The walk behind walk_records_py and walk_chunk_py.

    Each varint is read inline as ``zz[b]`` when one byte long, ``zz2[...]`` when two bytes
    long, else by a call; the inlining makes the walk ~20% faster than calls for every field.
    A record's results are added once it has passed all its checks.
    """
    zz = _ZZ
    zz2 = _ZZ2
    more = _varint_more
    end = len(buf)
    lo = 1 << 64
    hi = -lo
    nulls = 0
    i = index - 1
    start = pos
    b2 = 0
    try:
        for i in range(index, count):
            start = pos
            b = buf[pos]
            length, pos = ((zz[b], pos + 1) if b < 0x80
                           else (zz2[(b & 0x7F) | (b2 << 7)], pos + 2)
                           if (b2 := buf[pos + 1]) < 0x80 else more(buf, pos))
            record_end = pos + length
            if record_end > end:
                if not final:
                    return start, i, lo, hi, nulls
                raise invalid(f"Invalid record size: expected {length} bytes in record payload, "
                              f"but the batch has only {end - pos} remaining bytes")
            pos += 1  # the attributes byte
            b = buf[pos]
            delta, pos = ((zz[b], pos + 1) if b < 0x80
                          else (zz2[(b & 0x7F) | (b2 << 7)], pos + 2)
                          if (b2 := buf[pos + 1]) < 0x80 else _varint_n(buf, pos, 10))
            b = buf[pos]
            offset_delta, pos = ((zz[b], pos + 1) if b < 0x80
                                 else (zz2[(b & 0x7F) | (b2 << 7)], pos + 2)
                                 if (b2 := buf[pos + 1]) < 0x80 else more(buf, pos))
            if offset_delta != i:
                raise invalid(f"Record {i} has offset delta {offset_delta}, expected {i}")
            b = buf[pos]
            key_len, pos = ((zz[b], pos + 1) if b < 0x80
                            else (zz2[(b & 0x7F) | (b2 << 7)], pos + 2)
                            if (b2 := buf[pos + 1]) < 0x80 else more(buf, pos))
            if key_len >= 0:
                pos += key_len
            b = buf[pos]
            value_len, pos = ((zz[b], pos + 1) if b < 0x80
                              else (zz2[(b & 0x7F) | (b2 << 7)], pos + 2)
                              if (b2 := buf[pos + 1]) < 0x80 else more(buf, pos))
            pos += value_len if value_len > 0 else 0
            pos = pos + 1 if buf[pos] == 0 else _skip_headers(buf, pos)
            if pos != record_end:
                raise invalid(f"Invalid record size: expected to read {length} bytes in record "
                              f"payload, but instead read {length + pos - record_end}")
            lo = delta if delta < lo else lo
            hi = delta if delta > hi else hi
            nulls += key_len < 0
    except IndexError:
        if not final:
            return start, i, lo, hi, nulls
        raise invalid(f"{PREMATURE_EOF} (record {i})") from None
    i += 1
    if final and pos != end:
        raise invalid(RECORDS_REMAINING)
    return pos, i, lo, hi, nulls


def walk_headers_py(buf: ReadBuffer, pos: int, count: int) -> tuple[int, int]:
    """Skips up to `count` record headers from buf[pos:] as the walk does: (pos, headers left).

    Stops before the first header whose key-length or value-length varint runs past the end
    of buf; header values are skipped unread, so pos may pass the end. A negative key length
    or a varint over 5 bytes raises RecordsError (INVALID_RECORD). Needs 0 <= pos <= len(buf).
    """
    if not 0 <= pos <= len(buf):
        raise ValueError("walk_headers: pos must be in [0, len(buf)]")
    left = min(max(count, 0), _INT64_MAX)
    try:
        while left > 0:
            key_len, p = read_varint(buf, pos)
            if key_len < 0:
                raise invalid(f"Invalid negative header key size {key_len}")
            value_len, p = read_varint(buf, p + key_len)
            pos = p + (value_len if value_len > 0 else 0)
            left -= 1
    except IndexError:
        pass
    return pos, left


def record_heads_py(buf: ReadBuffer, pos: int, count: int, value: bool, n: int
                    ) -> set[bytes | None]:
    """The distinct heads (the first min(n, len) bytes; None for null) of the keys (`value`
    false) or values of the `count` records at buf[pos:]: what the broker's schema validation
    looks at (the magic byte and the schema id). RecordsError if a record is malformed."""
    heads: set[bytes | None] = set()
    for record in parse_records(buf, pos, count):
        data = record.value if value else record.key
        heads.add(None if data is None else data[:n])
    return heads


WalkRecords = Callable[[ReadBuffer, int, int], tuple[int, int, int]]
RecordHeads = Callable[[ReadBuffer, int, int, bool, int], set[bytes | None]]
WalkChunk = Callable[[ReadBuffer, int, int, int, bool], tuple[int, int, int, int, int]]
WalkHeaders = Callable[[ReadBuffer, int, int], tuple[int, int]]


def _c_walk() -> tuple[WalkRecords, WalkChunk, WalkHeaders] | None:
    try:
        from strom.protocol._record_walk import walk_chunk as c_chunk
        from strom.protocol._record_walk import walk_headers as c_headers
        from strom.protocol._record_walk import walk_records as c_walk
    except ImportError:  # built without a C compiler: the Python walk it is
        return None
    return c_walk, c_chunk, c_headers


_C_WALK: Final = _c_walk()
walk_records: Final[WalkRecords] = walk_records_py if _C_WALK is None else _C_WALK[0]
"""walk_records_py's contract and results, in C when the extension is built."""
walk_chunk: Final[WalkChunk] = walk_chunk_py if _C_WALK is None else _C_WALK[1]
"""walk_chunk_py's contract and results, in C when the extension is built."""
walk_headers: Final[WalkHeaders] = walk_headers_py if _C_WALK is None else _C_WALK[2]
"""walk_headers_py's contract and results, in C when the extension is built."""


def _c_heads() -> RecordHeads | None:
    try:
        from strom.protocol._record_walk import record_heads as c_heads
    except ImportError:  # no compiler, or an extension built before record_heads existed
        return None
    return c_heads


_C_HEADS: Final = _c_heads()
record_heads: Final[RecordHeads] = record_heads_py if _C_HEADS is None else _C_HEADS
"""record_heads_py's contract and results, in C when the extension is built."""
WALK_IMPLEMENTATION: Final[Literal["c", "python"]] = "python" if _C_WALK is None else "c"


def _bytes_field(buf: ReadBuffer, pos: int) -> tuple[bytes | None, int]:
    size, pos = read_varint(buf, pos)
    if size < 0:
        return None, pos
    if pos + size > len(buf):
        raise IndexError
    return bytes(buf[pos : pos + size]), pos + size


def parse_record(buf: ReadBuffer, pos: int) -> tuple[Record, int]:
    """The record at buf[pos:] and the position after it; IndexError when a read or a key,
    value or header runs past the end of buf."""
    length, pos = read_varint(buf, pos)
    record_end = pos + length
    if record_end > len(buf):
        raise invalid(f"Invalid record size: expected {length} bytes in record payload")
    delta, pos = read_varlong(buf, pos + 1)
    offset_delta, pos = read_varint(buf, pos)
    key, pos = _bytes_field(buf, pos)
    value, pos = _bytes_field(buf, pos)
    count, pos = read_varint(buf, pos)
    if count < 0:
        raise invalid(f"Found invalid number of record headers {count}")
    headers: list[Header] = []
    for _ in range(count):
        header_key, pos = _bytes_field(buf, pos)
        if header_key is None:
            raise invalid("Invalid negative header key size")
        header_value, pos = _bytes_field(buf, pos)
        headers.append((header_key, header_value))
    if pos != record_end:
        raise invalid(f"Invalid record size: expected to read {length} bytes in record payload")
    return Record(offset_delta, delta, key, value, tuple(headers)), pos


def parse_records(buf: ReadBuffer, pos: int, count: int) -> Iterator[Record]:
    """Yields `count` records from buf[pos:], which they must fill exactly."""
    for i in range(count):
        try:
            record, pos = parse_record(buf, pos)
        except IndexError:
            raise invalid(f"{PREMATURE_EOF} (record {i})") from None
        yield record
    if pos != len(buf):
        raise invalid(RECORDS_REMAINING)


def records_region(data: ReadBuffer, header: BatchHeader,
                   max_decompressed_bytes: int) -> tuple[ReadBuffer, int]:
    """(buffer, start) of the batch's records, decompressed if the batch is compressed.

    `data` holds exactly the batch. Decompression stops at `max_decompressed_bytes`.
    """
    codec = header.compression
    if codec == compression.NONE:
        return data, BATCH_HEADER_SIZE
    if codec not in compression.CODEC_NAMES:
        raise RecordsError(RecordsErrorCode.UNSUPPORTED_COMPRESSION_TYPE,
                           f"Unknown compression type id: {codec}")
    name = compression.CODEC_NAMES[codec]
    try:
        payload = memoryview(data)[BATCH_HEADER_SIZE:]
        return compression.decompress(codec, payload, max_decompressed_bytes), 0
    except compression.CompressionError as exc:
        too_large = isinstance(exc, compression.DecompressedTooLarge)
        raise decompression_failed(name, exc, max_decompressed_bytes, too_large) from None
