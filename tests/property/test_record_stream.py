"""Walking and parsing a compressed batch as it decompresses gives the one-shot verdicts.

The one-shot path decompresses the whole records section (compression.decompress, cramjam)
and walks it with walk_records or parses it with parse_records; record_stream walks (and
parses, for iter_records) the chunks of decompress_stream, its own decoders. On valid, damaged
and random record sections, compressed with every codec (both snappy framings, several gzip
members, lz4 and zstd frames, tiny xerial blocks) and sometimes damaged, with chunks and
windows forced tiny so that records straddle chunks and outgrow the window (the streaming
skipper), and with caps above and below the decompressed size, both must accept with the same
results or refuse with the same error code, and with the same message for record errors (a
codec's own text differs between the two decoders). One leeway: damaged compressed data that
also decompresses past the cap may be MESSAGE_TOO_LARGE or INVALID_RECORD, depending on how
far ahead of its output each decoder inflates before it notices the damage.
"""

from __future__ import annotations

import struct
from typing import Any

import cramjam
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from strom.protocol import compression
from strom.protocol.record_errors import RecordsError
from strom.protocol.record_stream import (
    parse_stream,
    record_chunks,
    record_summaries,
    walk_stream,
)
from strom.protocol.record_walk import parse_records, walk_records
from tests.property.test_record_walk_c import damaged, sections

SETTINGS = settings(max_examples=500, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# (codec, xerial framing)
CODECS = st.sampled_from([(1, False), (2, False), (2, True), (3, False), (4, False)])
Outcome = tuple[Any, ...]


def xerial(data: bytes, block: int) -> bytes:
    out = bytearray(compression.XERIAL_MAGIC + struct.pack(">ii", 1, 1))
    for pos in range(0, len(data), block):
        raw = bytes(cramjam.snappy.compress_raw(data[pos : pos + block]))
        out += struct.pack(">i", len(raw)) + raw
    return bytes(out)


@st.composite
def compressed(draw: st.DrawFn, section: bytes) -> tuple[int, bytes, bool]:
    """(codec, payload, damaged): `section` compressed, in one or several members, frames or
    blocks, and maybe damaged."""
    codec, framed = draw(CODECS)
    pieces = draw(st.integers(1, 3))
    step = max(1, -(-len(section) // pieces))
    if codec == compression.SNAPPY and framed:
        payload = xerial(section, draw(st.integers(1, 40)))
    elif codec == compression.SNAPPY:
        payload = compression.compress(codec, section)
    else:
        payload = b"".join(compression.compress(codec, section[p : p + step])
                           for p in range(0, max(len(section), 1), step))
    damage = draw(st.integers(0, 4)) == 0
    if damage:
        data = bytearray(payload)
        at = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:
            del data[at:]
        payload = bytes(data)
    return codec, payload, damage


def one_shot(codec: int, payload: bytes, cap: int) -> bytes | Outcome:
    if codec == compression.NONE:
        return payload
    try:
        return bytes(compression.decompress(codec, payload, cap))
    except compression.DecompressedTooLarge:
        return ("error", 10, "too large")
    except compression.CompressionError:
        return ("error", 87, "undecodable")


def verdict(exc: RecordsError) -> Outcome:
    if exc.error_code == 10:
        return ("error", 10, "too large")
    if exc.message.startswith("Failed to decompress"):
        return ("error", 87, "undecodable")
    return ("error", exc.error_code, exc.message)


def walked_one_shot(codec: int, payload: bytes, count: int, cap: int) -> Outcome:
    buf = one_shot(codec, payload, cap)
    if isinstance(buf, tuple):
        return buf
    try:
        return ("ok", walk_records(buf, 0, count))
    except RecordsError as exc:
        return verdict(exc)


def walked_streaming(codec: int, payload: bytes, count: int, cap: int, chunk: int,
                     window: int) -> Outcome:
    try:
        return ("ok", walk_stream(record_chunks(payload, codec, cap, chunk), count, window))
    except RecordsError as exc:
        return verdict(exc)


def parsed_one_shot(codec: int, payload: bytes, count: int, cap: int) -> Outcome:
    buf = one_shot(codec, payload, cap)
    if isinstance(buf, tuple):
        return ([], buf)
    records: list[Any] = []
    try:
        records.extend(parse_records(buf, 0, count))
    except RecordsError as exc:
        return (records, verdict(exc))
    return (records, ("ok",))


def parsed_streaming(codec: int, payload: bytes, count: int, cap: int, chunk: int) -> Outcome:
    records: list[Any] = []
    try:
        records.extend(parse_stream(record_chunks(payload, codec, cap, chunk), count))
    except RecordsError as exc:
        return (records, verdict(exc))
    return (records, ("ok",))


DECOMPRESSION_ERRORS = ("too large", "undecodable")


def same(got: Outcome, expected: Outcome, damage: bool) -> bool:
    either = (damage and got[0] == expected[0] == "error"
              and got[2] in DECOMPRESSION_ERRORS and expected[2] in DECOMPRESSION_ERRORS)
    return either or got == expected


caps = st.one_of(st.just(1 << 20), st.integers(0, 400))
chunks = st.one_of(st.integers(1, 8), st.integers(9, 100))
windows = st.one_of(st.integers(0, 8), st.integers(9, 100))


Case = tuple[bytes, int, int, bytes, bool]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """(section, count, codec, payload, payload damaged) for valid, damaged and random
    record sections."""
    kind = draw(st.sampled_from(["valid", "damaged", "random"]))
    if kind == "valid":
        section, count, _ = draw(sections)
    elif kind == "damaged":
        data, pos, count = draw(damaged())
        section = data[pos:]
    else:
        section, count = draw(st.binary(max_size=80)), draw(st.integers(0, 12))
    codec, payload, damage = draw(compressed(section))
    return section, count, codec, payload, damage


@SETTINGS
@given(case=cases(), cap=caps, chunk=chunks, window=windows)
@example(case=(b"\x00", 1, 4, compression.compress(4, b"\x00" * 300), False), cap=200,
         chunk=3, window=0)  # a record error at once, then past the cap: TOO_LARGE wins
@example(case=(b"", 1, 4, b"(\xb5/\xfd \x02\x01\x00\x00", True), cap=1 << 20, chunk=1,
         window=0)  # a frame that declares 2 bytes and holds none
def test_streaming_walk_gives_the_one_shot_verdict(case: Case, cap: int, chunk: int,
                                                   window: int) -> None:
    _, count, codec, payload, damage = case
    expected = walked_one_shot(codec, payload, count, cap)
    assert same(walked_streaming(codec, payload, count, cap, chunk, window), expected, damage)


@SETTINGS
@given(case=cases(), cap=caps, chunk=chunks)
def test_streaming_parse_gives_the_one_shot_records_and_verdict(case: Case, cap: int,
                                                                 chunk: int) -> None:
    section, count, codec, payload, damage = case
    records, outcome = parsed_one_shot(codec, payload, count, cap)
    got_records, got_outcome = parsed_streaming(codec, payload, count, cap, chunk)
    assert same(got_outcome, outcome, damage)
    if outcome[0] == "ok" or outcome[2] not in DECOMPRESSION_ERRORS:
        assert got_records == records
    elif not damage:  # the records before the decompression error, of all there would be
        all_records, _ = parsed_one_shot(0, section, count, 1 << 20)
        assert got_records == all_records[: len(got_records)]


@SETTINGS
@given(section=sections, codec=CODECS, chunk=chunks, window=windows)
def test_record_summaries_are_each_records_delta_and_null_key(
        section: tuple[bytes, int, tuple[int, int, int]], codec: tuple[int, bool], chunk: int,
        window: int) -> None:
    data, count, _ = section
    payload = (xerial(data, 5) if codec[1]
               else compression.compress(codec[0], data))
    got = list(record_summaries(record_chunks(payload, codec[0], 1 << 20, chunk), count,
                                window))
    assert got == [(r.timestamp_delta, r.key is None) for r in parse_records(data, 0, count)]
