"""Validating scan over a segment file, batch by batch: the basis of recovery and rebuilds.

A batch is valid if its header is sane (batch_length >= 49, magic 2, fits in the file), its
base offset is exactly the expected next offset (the local engine never leaves gaps), its
offsets fit the segment's int32 relative offsets, and its CRC-32C matches. The scan stops at
the first invalid batch and reports why; everything before it is whole and intact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from strom.protocol.batch_header import (
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    crc_matches,
    read_batch_header,
)
from strom.storage.local.files import pread_exact

MIN_BATCH_LENGTH: Final = BATCH_HEADER_SIZE - LOG_OVERHEAD  # 49
MAX_RELATIVE_OFFSET: Final = 2**31 - 1
RECOVERY_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    valid_end: int  # file position just after the last valid batch
    next_offset: int  # offset after the last valid batch
    problem: str | None  # why the scan stopped before `end`, None if it reached it


def header_problem(h: BatchHeader, remaining: int, expected_offset: int,
                   base_offset: int) -> str | None:
    """Why a batch header cannot be trusted, or None."""
    if h.batch_length < MIN_BATCH_LENGTH:
        return f"batch length {h.batch_length} < {MIN_BATCH_LENGTH}"
    if h.size > remaining:
        return f"batch of {h.size} bytes overruns the {remaining} bytes left (torn write)"
    if h.magic != 2:
        return f"magic {h.magic} != 2"
    if h.base_offset != expected_offset:
        return f"base offset {h.base_offset}, expected {expected_offset}"
    if h.last_offset_delta < 0:
        return f"negative last offset delta {h.last_offset_delta}"
    if h.last_offset - base_offset > MAX_RELATIVE_OFFSET:
        return f"offset {h.last_offset} does not fit a segment based at {base_offset}"
    return None


def scan_batches(fd: int, start: int, end: int, expected_offset: int, base_offset: int,
                 on_batch: Callable[[int, BatchHeader], None]) -> ScanOutcome:
    """Validates batches in [start, end) of `fd`, calling on_batch(position, header) for each
    valid one, in order; `expected_offset` is the base offset the first batch must have."""
    pos = start
    buf = b""
    buf_start = start
    problem: str | None = None
    while pos < end:
        remaining = end - pos
        if remaining < BATCH_HEADER_SIZE:
            problem = f"{remaining} trailing bytes, less than a batch header (torn write)"
            break
        rel = pos - buf_start
        if rel + BATCH_HEADER_SIZE > len(buf):
            buf, buf_start, rel = pread_exact(fd, min(RECOVERY_CHUNK, remaining), pos), pos, 0
            if len(buf) < BATCH_HEADER_SIZE:
                problem = "the file is shorter than expected"
                break
        h = read_batch_header(buf, rel)
        problem = header_problem(h, remaining, expected_offset, base_offset)
        if problem is not None:
            break
        if rel + h.size > len(buf):
            want = min(max(RECOVERY_CHUNK, h.size), remaining)
            buf, buf_start, rel = pread_exact(fd, want, pos), pos, 0
            if len(buf) < h.size:
                problem = "the file is shorter than expected"
                break
        if not crc_matches(buf, rel, h):
            problem = f"CRC mismatch in the batch at offset {h.base_offset}"
            break
        on_batch(pos, h)
        expected_offset = h.next_offset
        pos += h.size
    return ScanOutcome(pos, expected_offset, problem)
