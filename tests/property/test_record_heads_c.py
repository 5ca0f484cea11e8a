"""The C `record_heads` (schema validation's walk, strom.protocol._record_walk) against the
Python `record_heads_py`.

On records the produce validation accepted (what the broker calls it on) both answer the same
set of heads, for keys and values and any head length. On damaged and random bytes, which the
broker never passes it, the C walk must still read nothing outside the buffer and answer a set
or raise RecordsError (INVALID_RECORD), never crash; it need not agree with the Python parse
there (it skips header contents and offset deltas, which the walk before it checked).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.protocol.record_errors import RecordsError, RecordsErrorCode
from strom.protocol.record_walk import record_heads_py, walk_records_py
from tests.property.test_record_walk_c import (
    REINSTALL,
    SETTINGS,
    damaged,
    interesting_bytes,
    sections,
)


def c_heads() -> Any:
    try:
        from strom.protocol._record_walk import record_heads
    except ImportError as exc:
        pytest.fail(f"{REINSTALL}: {exc}")
    return record_heads


def outcome(fn: Any, buf: Any, pos: int, count: int, value: bool, n: int) -> Any:
    try:
        return ("ok", fn(buf, pos, count, value, n))
    except RecordsError as exc:
        return ("error", exc.error_code)


def test_c_heads_are_the_ones_in_use() -> None:
    from strom.protocol import record_walk

    assert record_walk.record_heads is c_heads()


@SETTINGS
@given(section=sections, value=st.booleans(), n=st.integers(0, 8))
def test_valid_records_agree(section: tuple[bytes, int, Any], value: bool, n: int) -> None:
    data, count, _ = section
    walk_records_py(data, 0, count)  # what the broker checked first
    expected = record_heads_py(data, 0, count, value, n)
    padded = memoryview(b"\x00\x01" + data + b"\x00\x00\x00")[2: 2 + len(data)]
    for buf in (data, bytearray(data), padded):
        assert c_heads()(buf, 0, count, value, n) == expected


@SETTINGS
@given(case=damaged(), value=st.booleans(), n=st.integers(0, 8))
def test_damaged_records_are_refused_or_read_safely(case: tuple[bytes, int, int], value: bool,
                                                    n: int) -> None:
    data, pos, count = case
    padded = memoryview(b"\x00\x01" + data + b"\x00\x00\x00")[2: 2 + len(data)]
    result = outcome(c_heads(), padded, pos, count, value, n)
    if result[0] == "error":
        assert result[1] == RecordsErrorCode.INVALID_RECORD
    else:
        assert all(h is None or (len(h) <= n and h in data) for h in result[1])


@SETTINGS
@given(data=st.lists(interesting_bytes, max_size=80).map(bytes), pos=st.integers(-3, 90),
       count=st.integers(-1, 30), value=st.booleans())
def test_random_bytes_are_refused_or_read_safely(data: bytes, pos: int, count: int,
                                                 value: bool) -> None:
    result = outcome(c_heads(), data, pos, count, value, 5)
    assert result[0] == "ok" or result[1] == RecordsErrorCode.INVALID_RECORD
