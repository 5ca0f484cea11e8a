"""Record batches: random records round-trip through every codec, and damaged batches only
ever raise RecordsError."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strom.protocol import compression
from strom.protocol.record_builder import reseal
from strom.protocol.records import (
    RecordsError,
    ValidatedBatch,
    build_batch,
    iter_records,
    validate_produce_records,
)

LONG_MAX = 2**63 - 1
NOW = 1_700_000_000_000
CODECS = st.sampled_from([(0, False), (1, False), (2, False), (2, True), (3, False), (4, False)])
LEADER_EPOCH = range(12, 16)  # the only header bytes outside both the CRC and the checks

blobs = st.one_of(st.none(), st.binary(max_size=300))
headers = st.lists(st.tuples(st.text(max_size=10), blobs), max_size=3)
timestamps = st.one_of(st.just(-1), st.integers(0, 2**45))
records = st.lists(st.tuples(blobs, blobs, headers, timestamps), min_size=1, max_size=40)


def validate(data: bytes | bytearray, **kw: Any) -> ValidatedBatch:
    args: dict[str, Any] = dict(
        max_message_bytes=2**31 - 1, timestamp_type="CreateTime", now_ms=NOW,
        timestamp_before_max_ms=LONG_MAX, timestamp_after_max_ms=LONG_MAX,
        max_decompressed_bytes=256 * 1024)
    args.update(kw)
    [batch] = validate_produce_records(data, **args)
    return batch


@settings(max_examples=150, deadline=None)
@given(records=records, codec=CODECS, log_append=st.booleans())
def test_round_trip(records: list[Any], codec: tuple[int, bool], log_append: bool) -> None:
    batch = build_batch(records, compression=codec[0], snappy_xerial=codec[1])
    vb = validate(batch, timestamp_type="LogAppendTime" if log_append else "CreateTime")
    assert vb.record_count == len(records)
    got = list(iter_records(vb))
    assert [(r.key, r.value, [(k.decode(), v) for k, v in r.headers]) for r in got] == [
        (k, v, list(h)) for k, v, h, _ in records]
    assert [vb.header.base_timestamp + r.timestamp_delta for r in got] == [
        ts for *_, ts in records]
    if log_append:
        assert vb.header.is_log_append_time and vb.header.max_timestamp == NOW
    else:
        assert vb.data == batch and vb.header.max_timestamp == max(-1, *(r[3] for r in records))


@st.composite
def damaged(draw: st.DrawFn) -> tuple[bytes, bytearray, str, int]:
    codec = draw(CODECS)
    batch = build_batch(draw(records), compression=codec[0], snappy_xerial=codec[1])
    data = bytearray(batch)
    how = draw(st.sampled_from(["flip", "flip-resealed", "truncate", "append"]))
    where = draw(st.integers(0, len(data) - 1))
    if how == "flip-resealed" and where < 21:
        how = "flip"
    if how.startswith("flip"):
        data[where] ^= draw(st.integers(1, 255))
        if how == "flip-resealed":  # damage what the CRC covers, and fix the CRC
            reseal(data)
    elif how == "truncate":
        del data[where:]
    else:
        data += draw(st.binary(min_size=1, max_size=80))
    return batch, data, how, where


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=damaged())
def test_damage_only_raises_records_error(case: tuple[bytes, bytearray, str, int]) -> None:
    batch, data, how, where = case
    try:
        vb = validate(data)
    except RecordsError as exc:
        assert exc.error_code in (2, 10, 32, 76, 87)
        assert how != "append" or len(data) - len(batch) >= 12  # a short tail is trimmed
        return
    # Success: the damage was outside the CRC and the checks, resealed into a batch that
    # still holds, or appended bytes too short to be another batch.
    if how == "flip":
        assert where in LEADER_EPOCH
    if how == "truncate":
        raise AssertionError("a truncated batch was accepted")
    assert len(list(iter_records(vb))) == vb.record_count


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), prefix=st.booleans())
def test_garbage_only_raises_records_error(data: bytes, prefix: bool) -> None:
    if prefix:  # a plausible frame: base offset 0, a fitting length, magic 2
        data = struct.pack(">qiib", 0, len(data) + 5, 0, 2) + data
    with contextlib.suppress(RecordsError):
        validate(data)
    with contextlib.suppress(RecordsError):
        list(iter_records(data))


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=2000), codec=st.sampled_from([1, 2, 3, 4]),
       cap=st.integers(0, 5000))
def test_decompress_never_exceeds_the_cap(payload: bytes, codec: int, cap: int) -> None:
    packed = compression.compress(codec, payload)
    try:
        out = compression.decompress(codec, packed, cap)
    except compression.DecompressedTooLarge:
        assert len(payload) > cap
    else:
        assert out == payload and len(payload) <= cap
