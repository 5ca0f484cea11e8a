"""Validating or reading a compressed batch takes memory bounded by the streaming window, not
by what the batch decompresses to.

Each batch (a compression bomb at the 256 MiB cap, one valid record of zeros that big, the
fuzz campaign's 22,974,098 tiny records) is built here with streaming compressors and handed
to a fresh Python process, which reports how far its peak RSS (VmHWM) rose over its
baseline while validating it or iterating its records. Decompressing whole, as strom did
before, took the decompressed size and more (hundreds of MiB); streaming stays under 64 MiB.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import lz4.frame  # type: ignore[import-untyped]
import pytest
import zstandard

from strom.protocol import compression
from strom.protocol.record_builder import encode_record, reseal

MIB = 1024 * 1024
CAP = 256 * MIB  # message.max.decompressed.bytes' default
RSS_LIMIT_KIB = 64 * 1024
NOW = 1_700_000_000_000
TINY_RECORDS = 22_974_098  # the fuzz campaign's zstd batch

# Runs in a fresh process: argv = batch file, "validate" or "iterate", cap, before_max_ms.
CHILD = r"""
import json, sys
from strom.protocol.records import RecordsError, iter_records, validate_produce_records

def peak_kib():
    # VmHWM, the peak of this process's own memory: ru_maxrss would start at the peak of the
    # pytest worker that spawned it (Linux carries it over exec), hiding any rise below that.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

def validate(data, cap, before):
    return validate_produce_records(
        data, max_message_bytes=1 << 30, timestamp_type="CreateTime", now_ms=NOW_MS,
        timestamp_before_max_ms=before, timestamp_after_max_ms=2**63 - 1,
        max_decompressed_bytes=cap)

path, mode, cap, before = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = open(path, "rb").read()
warm = open(path + ".small", "rb").read()
validate(warm, cap, before)  # imports, pools and buffers in place before the baseline
list(iter_records(warm))
baseline = peak_kib()
outcome = "ok"
try:
    if mode == "validate":
        validate(data, cap, before)
    else:
        count = sum(1 for _ in iter_records(data, max_decompressed_bytes=cap))
        outcome = f"ok {count}"
except RecordsError as exc:
    outcome = exc.error_code
peak = peak_kib()
print(json.dumps({"outcome": outcome, "rss_kib": peak - baseline}))
""".replace("NOW_MS", str(NOW))


def varint(value: int) -> bytes:
    raw = 2 * value if value >= 0 else -2 * value - 1
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)
    return bytes(out)


def batch(codec: int, payload: bytes, count: int, base_ts: int = NOW) -> bytes:
    header = struct.pack(">qiibIhiqqqhii", 0, 49 + len(payload), -1, 2, 0, codec, count - 1,
                         base_ts, base_ts, -1, -1, -1, count)
    out = bytearray(header + payload)
    reseal(out)
    return bytes(out)


def zeros_record(total: int) -> tuple[bytes, int, bytes]:
    """(bytes before the value, value size, bytes after) of one record of `total` bytes
    whose value is zeros: null key, offset and timestamp deltas 0, no headers."""
    value = total - 7
    while True:
        body_head = b"\x00\x00\x00\x01" + varint(value)
        length = len(body_head) + value + 1
        size = len(varint(length)) + length
        if size == total:
            return varint(length) + body_head, value, b"\x00"
        value += total - size


def pieces(head: bytes, zeros: int, tail: bytes) -> Iterator[bytes]:
    yield head
    chunk = bytes(MIB)
    for _ in range(zeros // MIB):
        yield chunk
    yield bytes(zeros % MIB)
    yield tail


def compress_stream(codec: int, parts: Iterator[bytes]) -> bytes:
    """The parts compressed as one stream, the way a client's streaming compressor does."""
    if codec == compression.GZIP:
        gz = zlib.compressobj(6, zlib.DEFLATED, 31)
        return b"".join([*(gz.compress(p) for p in parts), gz.flush()])
    if codec == compression.ZSTD:
        zc = zstandard.ZstdCompressor(level=3).compressobj()
        return b"".join([*(zc.compress(p) for p in parts), zc.flush()])
    if codec == compression.LZ4:
        lc = lz4.frame.LZ4FrameCompressor(block_size=lz4.frame.BLOCKSIZE_MAX64KB,
                                          block_linked=False)
        return b"".join([lc.begin(), *(lc.compress(p) for p in parts), lc.flush()])
    raise AssertionError(codec)


def xerial_zeros(head: bytes, zeros: int, tail: bytes) -> bytes:
    """head + zeros + tail in snappy-java's framing, 32 KiB blocks (zero blocks shared)."""
    block_size = compression.XERIAL_BLOCK_SIZE
    total = len(head) + zeros + len(tail)
    zero_block = bytes(cramjam.snappy.compress_raw(bytes(block_size)))
    out = bytearray(compression.XERIAL_MAGIC + struct.pack(">ii", 1, 1))
    for start in range(0, total, block_size):
        end = min(total, start + block_size)
        if start >= len(head) and end <= len(head) + zeros and end - start == block_size:
            raw = zero_block
        else:
            data = bytearray(end - start)
            data[: max(0, len(head) - start)] = head[start:end]
            tail_from = len(head) + zeros
            if end > tail_from:
                data[max(0, tail_from - start) :] = tail[max(0, start - tail_from) :
                                                         end - tail_from]
            raw = bytes(cramjam.snappy.compress_raw(bytes(data)))
        out += struct.pack(">i", len(raw)) + raw
    return bytes(out)


def zeros_batch(codec: int, total: int, base_ts: int = NOW) -> bytes:
    head, zeros, tail = zeros_record(total)
    if codec == compression.SNAPPY:
        payload = xerial_zeros(head, zeros, tail)
    else:
        payload = compress_stream(codec, pieces(head, zeros, tail))
    return batch(codec, payload, 1, base_ts)


def run_child(tmp_path: Path, data: bytes, mode: str = "validate", cap: int = CAP,
              before_max_ms: int = 2**63 - 1) -> dict[str, Any]:
    path = tmp_path / "batch"
    path.write_bytes(data)
    codec = struct.unpack_from(">h", data, 21)[0] & 7
    small = batch(codec, compression.compress(codec, one_record(0, bytes(1000))), 1)
    (tmp_path / "batch.small").write_bytes(small)
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(cap),
                           str(before_max_ms)], capture_output=True, text=True, timeout=240,
                          check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


CODECS = [compression.GZIP, compression.SNAPPY, compression.LZ4, compression.ZSTD]
CODEC_IDS = ["gzip", "xerial-snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_IDS)
def test_bomb_just_below_and_just_above_the_cap(codec: int, tmp_path: Path) -> None:
    """A record of zeros decompressing to exactly the cap is accepted, one byte more is
    MESSAGE_TOO_LARGE; neither takes more than the window's memory."""
    below = run_child(tmp_path, zeros_batch(codec, CAP))
    above = run_child(tmp_path, zeros_batch(codec, CAP + 1))
    assert below["outcome"] == "ok" and above["outcome"] == 10
    assert below["rss_kib"] < RSS_LIMIT_KIB, below
    assert above["rss_kib"] < RSS_LIMIT_KIB, above


@pytest.mark.parametrize("codec", [compression.GZIP, compression.LZ4, compression.ZSTD],
                         ids=["gzip", "lz4", "zstd"])
def test_valid_200_mib_record_is_accepted_in_bounded_memory(codec: int,
                                                            tmp_path: Path) -> None:
    result = run_child(tmp_path, zeros_batch(codec, 200 * MIB))
    assert result["outcome"] == "ok" and result["rss_kib"] < RSS_LIMIT_KIB, result


def test_late_200_mib_record_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """The slow pass that names the records with a bad timestamp streams too."""
    data = zeros_batch(compression.ZSTD, 200 * MIB, base_ts=NOW - 10**9)
    result = run_child(tmp_path, data, before_max_ms=1000)
    assert result["outcome"] == 32 and result["rss_kib"] < RSS_LIMIT_KIB, result


def tiny_records(first: int, end: int) -> Iterator[bytes]:
    """Records first..end-1 (null key and value, no headers, offset delta = index), ~1 MiB at
    a time. Within a run of 64 records whose offset-delta varint has w >= 2 bytes, only its
    first byte differs: a template per width, its shared bytes filled in per run."""
    for start, stop in ((0, 64), (64, 8192), (8192, 1 << 20), (1 << 20, 1 << 27)):
        lo, hi = max(first, start), min(end, stop)
        if lo >= hi:
            continue
        if start == 0:
            yield b"".join(one_record(i) for i in range(lo, hi))
            continue
        width = len(varint(start))
        size = 6 + width
        filler = b"\xff" * (width - 1)  # no other byte of the template is 0xff
        template = b"".join(bytes([2 * (5 + width), 0, 0, 2 * k | 0x80]) + filler
                            + b"\x01\x01\x00" for k in range(64))
        out = []
        for run in range(lo // 64, -(-hi // 64)):
            data = template.replace(filler, varint(64 * run)[1:])
            out.append(data[max(lo - 64 * run, 0) * size : min(hi - 64 * run, 64) * size])
            if len(out) == 2048:
                yield b"".join(out)
                out = []
        yield b"".join(out)


def one_record(i: int, value: bytes | None = None) -> bytes:
    out = bytearray()
    encode_record(out, i, 0, None, value, [])
    return bytes(out)


def test_tiny_records_helper_writes_what_the_record_builder_writes() -> None:
    for first, end in ((0, 70000), ((1 << 20) - 100, (1 << 20) + 100)):
        assert b"".join(tiny_records(first, end)) == b"".join(
            one_record(i) for i in range(first, end))


def test_fuzz_campaigns_23_million_tiny_records_validate_in_bounded_memory(
        tmp_path: Path) -> None:
    payload = compress_stream(compression.ZSTD, tiny_records(0, TINY_RECORDS))
    result = run_child(tmp_path, batch(compression.ZSTD, payload, TINY_RECORDS))
    assert result["outcome"] == "ok" and result["rss_kib"] < RSS_LIMIT_KIB, result


def test_iter_records_holds_one_record_at_a_time(tmp_path: Path) -> None:
    """2000 records of 128 KiB (250 MiB in all) read through iter_records."""
    value = bytes(128 * 1024)
    payload = compress_stream(compression.ZSTD, (one_record(i, value) for i in range(2000)))
    result = run_child(tmp_path, batch(compression.ZSTD, payload, 2000), mode="iterate")
    assert result["outcome"] == "ok 2000" and result["rss_kib"] < RSS_LIMIT_KIB, result
