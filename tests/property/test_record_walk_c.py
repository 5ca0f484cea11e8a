"""The C record walk (strom.protocol._record_walk) against the Python one (walk_records_py).

On valid record sections, on damaged ones and on random bytes, with any start position and
count, both must return the same tuple or both raise RecordsError with the same code and
message. The C walk is checked on bytes, bytearray and a memoryview slice of a padded buffer
(so a read past the slice's end would show). The extension is part of the product: if it is not
built, these tests fail rather than skip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from strom.protocol import record_walk
from strom.protocol.batch_header import BATCH_HEADER_SIZE
from strom.protocol.record_builder import build_batch
from strom.protocol.record_errors import RecordsError, RecordsErrorCode
from strom.protocol.record_walk import walk_records_py

Walk = Callable[[Any, int, int], tuple[int, int, int]]
Outcome = tuple[Any, ...]

REINSTALL = ("strom.protocol._record_walk (the C record walk) is not importable: rebuild it "
             "with `.venv/bin/pip install -e '.[test]'` (needs a C compiler)")
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
VARLONG_MIN, VARLONG_MAX = -(2**69), 2**69 - 1  # what 10 zigzag LEB128 bytes can hold
SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def c_walk() -> Walk:
    try:
        from strom.protocol._record_walk import walk_records
    except ImportError as exc:
        pytest.fail(f"{REINSTALL}: {exc}")
    return walk_records


def outcome(walk: Walk, buf: Any, pos: int, count: int) -> Outcome:
    try:
        return ("ok", walk(buf, pos, count))
    except RecordsError as exc:
        return ("error", exc.error_code, exc.message, str(exc))


def agree(data: bytes, pos: int, count: int) -> Outcome:
    """Both walks on `data`, the C one on three kinds of buffer; returns the outcome."""
    expected = outcome(walk_records_py, data, pos, count)
    walk = c_walk()
    padded = memoryview(b"\x80\x81" + data + b"\xff\x80\x01")[2 : 2 + len(data)]
    for buf in (data, bytearray(data), padded):
        assert outcome(walk, buf, pos, count) == expected, (type(buf).__name__, data, pos, count)
    if expected[0] == "error":
        assert expected[1] == RecordsErrorCode.INVALID_RECORD
    return expected


# --- encoding records by hand: any delta, non-canonical varints, negative lengths ---

def varint(value: int, pad: int = 0) -> bytes:
    """Zigzag LEB128 of any int, with `pad` extra (zero-payload) continuation bytes."""
    raw = 2 * value if value >= 0 else -2 * value - 1
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    for _ in range(pad):
        out.append(raw | 0x80)
        raw = 0
    out.append(raw)
    return bytes(out)


def small_pad(value: int, limit: int) -> st.SearchStrategy[int]:
    """Padding that keeps the varint within `limit` bytes."""
    return st.integers(0, max(0, limit - len(varint(value))))


@st.composite
def length_field(draw: st.DrawFn, *, key: bool) -> tuple[bytes, int | None]:
    """(encoded length + bytes, length read) of a key/value; negative lengths read as null."""
    kind = draw(st.sampled_from(["bytes", "null", "negative", "empty"]))
    if kind == "bytes":
        data = draw(st.binary(max_size=40))
        return varint(len(data), draw(small_pad(len(data), 5))) + data, len(data)
    if kind == "empty":
        return varint(0), 0
    n = -1 if kind == "null" else draw(st.integers(-(2**34), -2))
    return varint(n, draw(small_pad(n, 5))), None if key else n


@st.composite
def custom_record(draw: st.DrawFn, index: int) -> tuple[bytes, int, bool]:
    """(encoded record, timestamp delta, key is null)."""
    delta = draw(st.one_of(st.integers(-300, 300), st.integers(LONG_MIN, LONG_MAX),
                           st.integers(VARLONG_MIN, VARLONG_MAX),
                           st.sampled_from([VARLONG_MIN, VARLONG_MAX, LONG_MIN, LONG_MAX,
                                            LONG_MIN - 1, LONG_MAX + 1, 2**64, -(2**64),
                                            2**64 + 1, -(2**64) - 1])))
    key, key_len = draw(length_field(key=True))
    value, _ = draw(length_field(key=False))
    body = bytearray([draw(st.integers(0, 255))])  # attributes: skipped, never read
    body += varint(delta, draw(small_pad(delta, 10)))
    body += varint(index, draw(small_pad(index, 5)))
    body += key + value
    headers = draw(st.lists(st.tuples(st.binary(max_size=8), length_field(key=False)),
                            max_size=3))
    body += varint(len(headers), draw(small_pad(len(headers), 5)))
    for header_key, (header_value, _) in headers:
        body += varint(len(header_key)) + header_key + header_value
    return varint(len(body)) + bytes(body), delta, key_len is None


@st.composite
def custom_section(draw: st.DrawFn) -> tuple[bytes, int, tuple[int, int, int]]:
    """(records, count, the walk's expected result)."""
    count = draw(st.integers(0, 12))
    records = [draw(custom_record(i)) for i in range(count)]
    deltas = [delta for _, delta, _ in records]
    expected = (min([2**64, *deltas]), max([-(2**64), *deltas]),
                sum(null for *_, null in records))
    return b"".join(r for r, _, _ in records), count, expected


# --- records the way a producer writes them ---

blobs = st.one_of(st.none(), st.binary(max_size=120))
headers = st.lists(st.tuples(st.text(max_size=8), blobs), max_size=3)
# Deltas within a long (build_batch's zigzag is a long's); extremes included.
timestamps = st.one_of(st.integers(-1, 2**45), st.integers(-(2**62), 2**62 - 1),
                       st.sampled_from([-(2**62), 2**62 - 1, 0, -1]))
built_records = st.lists(st.tuples(blobs, blobs, headers, timestamps), min_size=1, max_size=30)


@st.composite
def built_section(draw: st.DrawFn) -> tuple[bytes, int, tuple[int, int, int]]:
    records = draw(built_records)
    section = build_batch(records)[BATCH_HEADER_SIZE:]
    deltas = [ts - records[0][3] for *_, ts in records]
    return section, len(records), (min(deltas), max(deltas), sum(k is None for k, *_ in records))


sections = st.one_of(built_section(), custom_section())
interesting_bytes = st.one_of(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0xFF]),
                              st.integers(0, 255))


@st.composite
def damaged(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """(data, pos, count): a valid section, mutated a few times, with a count near the truth."""
    section, count, _ = draw(sections)
    data = bytearray(section)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "flip", "truncate", "extend", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if op in ("set", "flip") and at < len(data):
            data[at] = (draw(interesting_bytes) if op == "set"
                        else data[at] ^ (1 << draw(st.integers(0, 7))))
        elif op == "truncate":
            del data[at:]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=12))
        elif op == "insert":
            data[at:at] = bytes([draw(interesting_bytes)])
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 3))]
    count = draw(st.one_of(st.just(count), st.integers(count - 2, count + 2)))
    prefix = draw(st.binary(max_size=4))
    return prefix + bytes(data), len(prefix), count


positions = st.one_of(st.integers(-40, 40), st.integers(-(2**70), 2**70),
                      st.sampled_from([-(2**63), 2**63 - 1, 2**63, 2**64]))
counts = st.one_of(st.integers(-3, 40), st.integers(-(2**70), 2**70),
                   st.sampled_from([2**31 - 1, 2**63 - 1, 2**63, 2**64]))


def test_c_walk_is_the_one_in_use() -> None:
    assert record_walk.WALK_IMPLEMENTATION == "c", REINSTALL
    assert record_walk.walk_records is c_walk()


@SETTINGS
@given(section=built_section())
def test_valid_produced_records_agree(section: tuple[bytes, int, tuple[int, int, int]]) -> None:
    data, count, expected = section
    assert agree(data, 0, count) == ("ok", expected)
    batch = b"\x00" * BATCH_HEADER_SIZE + data
    assert agree(batch, BATCH_HEADER_SIZE, count) == ("ok", expected)


@SETTINGS
@given(section=custom_section(), prefix=st.binary(max_size=5))
@example(section=(b"", 0, (2**64, -(2**64), 0)), prefix=b"")
def test_valid_hand_encoded_records_agree(section: tuple[bytes, int, tuple[int, int, int]],
                                          prefix: bytes) -> None:
    """Timestamp deltas up to 2**69 in magnitude, padded varints, negative lengths."""
    data, count, expected = section
    assert agree(prefix + data, len(prefix), count) == ("ok", expected)


@SETTINGS
@given(case=damaged())
def test_damaged_records_agree(case: tuple[bytes, int, int]) -> None:
    agree(*case)


@SETTINGS
@given(data=st.binary(max_size=200), pos=st.integers(-5, 10), count=st.integers(-2, 60))
def test_random_bytes_agree(data: bytes, pos: int, count: int) -> None:
    agree(data, pos, count)


@SETTINGS
@given(data=st.lists(interesting_bytes, max_size=80).map(bytes), pos=st.integers(-3, 3),
       count=st.integers(-1, 30))
def test_varint_heavy_bytes_agree(data: bytes, pos: int, count: int) -> None:
    agree(data, pos, count)


@SETTINGS
@given(section=sections, pos=positions, count=counts)
def test_any_position_and_count_agree(section: tuple[bytes, int, tuple[int, int, int]],
                                      pos: int, count: int) -> None:
    agree(section[0], pos, count)


def rec(body: bytes) -> bytes:
    return varint(len(body)) + body


@pytest.mark.parametrize(("data", "pos", "count"), [
    (b"", 0, 0), (b"", 0, -5), (b"", 0, 1), (b"", 5, 0), (b"", -1, 0), (b"\x00", 0, 0),
    (b"\x00", 1, 0), (b"\x00", 2**70, 0), (b"\x00", -(2**70), 1), (b"", 0, 2**70),
    (rec(b"\x00\x00\x00\x01\x01\x00"), 0, 1),  # null key, null value
    (rec(b"\x00\x00\x00\x01\x01\x00"), 0, 2**64),  # then EOF at record 1
    (rec(b"\x00\x00\x00\x01\x01\x00"), -7, 1),  # a negative start counts from the end
    (rec(b"\x00\x00\x00\x01\x01\x00"), -8, 1),
    (rec(b"\x00\x00\x02\x01\x01\x00"), 0, 1),  # offset delta 1, expected 0
    (rec(b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00\x01\x01\x00"), 0, 1),  # -2**69
    (rec(b"\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00\x01\x01\x00"), 0, 1),  # 2**69-1
    (rec(b"\x00\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02\x00\x01\x01\x00"), 0, 1),  # too long
    (rec(b"\x00\x00\x00\x80\x80\x80\x80\x80\x01\x01\x00"), 0, 1),  # varint too long
    (rec(b"\x00\x00\x00\x01\x01\x01"), 0, 1),  # header count -1
    (rec(b"\x00\x00\x00\x01\x01\x02\x03\x00"), 0, 1),  # header key size -2
    (rec(b"\x00\x00\x00\x01\x01\x02\x00\x05\x00"), 0, 1),  # header value size -3: no bytes
    (rec(b"\x00\x00\x00\x01\x01\x00") + b"\x00", 0, 1),  # bytes left over
    (b"\x7f", 0, 1),  # record size -64
    (b"\x0c\x00\x00\x00\x01\x01\x00", 0, 1),  # record size 6 of 5 remaining
    (b"\x04\x00\x00\x00\x01\x01\x00", 0, 1),  # reads 5 bytes of a declared 2
    (b"\x80", 0, 1), (b"\x80\x80\x80\x80\x80", 0, 1), (b"\x80\x80\x80\x80\x00", 0, 1),
])
def test_corners_agree(data: bytes, pos: int, count: int) -> None:
    agree(data, pos, count)


def test_results_are_python_ints_of_any_size() -> None:
    data = (rec(b"\x00" + varint(VARLONG_MAX) + b"\x00\x01\x01\x00")
            + rec(b"\x00" + varint(VARLONG_MIN) + b"\x02\x01\x01\x00"))
    assert c_walk()(data, 0, 2) == (VARLONG_MIN, VARLONG_MAX, 2)
    assert c_walk()(b"", 0, 0) == (2**64, -(2**64), 0)
    # lo and hi start at +-2**64, as in Python: a lone delta above 2**64 leaves lo at 2**64.
    assert c_walk()(rec(b"\x00" + varint(2**65) + b"\x00\x00\x00\x00"), 0, 1) == (
        2**64, 2**65, 0)


def test_eof_error_is_raised_from_none() -> None:
    with pytest.raises(RecordsError) as info:
        c_walk()(b"\x80", 0, 1)
    assert info.value.message == (
        "Incorrect declared batch size, premature EOF reached (record 0)")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_bad_arguments() -> None:
    walk: Any = c_walk()
    with pytest.raises(TypeError):
        walk("text", 0, 0)
    with pytest.raises(TypeError):
        walk(b"", 0.0, 0)
    with pytest.raises(TypeError):
        walk(b"", 0)


# --- the partial walk (walk_chunk) and the header skip (walk_headers) of streaming ---

def c_chunk() -> Any:
    try:
        from strom.protocol._record_walk import walk_chunk
    except ImportError as exc:
        pytest.fail(f"{REINSTALL}: {exc}")
    return walk_chunk


def c_headers() -> Any:
    try:
        from strom.protocol._record_walk import walk_headers
    except ImportError as exc:
        pytest.fail(f"{REINSTALL}: {exc}")
    return walk_headers


def call(fn: Any, *args: Any) -> Outcome:
    try:
        return ("ok", fn(*args))
    except RecordsError as exc:
        return ("error", exc.error_code, exc.message, str(exc))
    except ValueError as exc:
        return ("value-error", str(exc))


def agree_fn(c_fn: Any, py_fn: Any, data: bytes, *args: Any) -> Outcome:
    expected = call(py_fn, data, *args)
    padded = memoryview(b"\x80\x81" + data + b"\xff\x80\x01")[2 : 2 + len(data)]
    for buf in (data, bytearray(data), padded):
        assert call(c_fn, buf, *args) == expected, (type(buf).__name__, data, args)
    return expected


def test_new_c_functions_are_the_ones_in_use() -> None:
    assert record_walk.walk_chunk is c_chunk()
    assert record_walk.walk_headers is c_headers()


@SETTINGS
@given(section=sections, cut=st.integers(0, 10**6), index=st.integers(0, 3),
       final=st.booleans())
def test_walk_chunk_agrees(section: tuple[bytes, int, tuple[int, int, int]], cut: int,
                           index: int, final: bool) -> None:
    data, count, _ = section
    agree_fn(c_chunk(), record_walk.walk_chunk_py, data[: cut % (len(data) + 1)], 0, index,
             count, final)


@SETTINGS
@given(case=damaged(), cut=st.integers(0, 10**6), final=st.booleans())
def test_walk_chunk_agrees_on_damage(case: tuple[bytes, int, int], cut: int,
                                     final: bool) -> None:
    data, pos, count = case
    data = data[: pos + cut % (len(data) - pos + 1)]
    agree_fn(c_chunk(), record_walk.walk_chunk_py, data, pos, 0, count, final)


@SETTINGS
@given(data=st.binary(max_size=120), pos=st.integers(-2, 125), index=st.integers(-2, 5),
       count=st.integers(-2, 40), final=st.booleans())
def test_walk_chunk_agrees_on_random_bytes(data: bytes, pos: int, index: int, count: int,
                                           final: bool) -> None:
    agree_fn(c_chunk(), record_walk.walk_chunk_py, data, pos, index, count, final)


def split_walk(data: bytes, count: int, cut: int) -> Outcome:
    """A partial walk of data[:cut], then a final walk of all of data from where it stopped."""
    try:
        pos, index, lo, hi, nulls = record_walk.walk_chunk(data[:cut], 0, 0, count, False)
        _, _, lo2, hi2, nulls2 = record_walk.walk_chunk(data, pos, index, count, True)
    except RecordsError as exc:
        return ("error", exc.error_code, exc.message)
    return ("ok", (min(lo, lo2), max(hi, hi2), nulls + nulls2))


@SETTINGS
@given(section=st.one_of(sections, damaged().map(lambda c: (c[0][c[1]:], c[2], None))),
       cut=st.integers(0, 10**6))
def test_partial_walk_never_judges_what_more_bytes_change(
        section: tuple[bytes, int, Any], cut: int) -> None:
    """Resuming after a partial walk of any prefix gives walk_records' verdict on the whole."""
    data, count, _ = section
    expected = outcome(walk_records_py, data, 0, count)
    assert split_walk(data, count, cut % (len(data) + 1)) == expected[:3]


@st.composite
def header_section(draw: st.DrawFn) -> tuple[bytes, int]:
    headers = draw(st.lists(st.tuples(st.binary(max_size=6), length_field(key=False)),
                            max_size=6))
    body = b"".join(varint(len(k)) + k + v for k, (v, _) in headers)
    return body, len(headers)


@SETTINGS
@given(section=header_section(), cut=st.integers(0, 100), count=st.integers(-1, 8))
def test_walk_headers_agrees(section: tuple[bytes, int], cut: int, count: int) -> None:
    body, n = section
    assert agree_fn(c_headers(), record_walk.walk_headers_py, body, 0, n) == (
        "ok", (len(body), 0))
    agree_fn(c_headers(), record_walk.walk_headers_py, body[:cut], 0, count)


@SETTINGS
@given(data=st.lists(interesting_bytes, max_size=60).map(bytes), pos=st.integers(-2, 62),
       count=st.one_of(st.integers(-2, 30), st.sampled_from([2**63 - 1, 2**63, 2**70])))
def test_walk_headers_agrees_on_random_bytes(data: bytes, pos: int, count: int) -> None:
    agree_fn(c_headers(), record_walk.walk_headers_py, data, pos, count)
