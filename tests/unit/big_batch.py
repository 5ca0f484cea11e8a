"""A partition holding one zstd batch of millions of tiny keyed records, and one cleaning pass
over it measured in a fresh process (peak RSS by the kernel's VmHWM, CPU time).

    python -m tests.unit.big_batch write DIR RECORDS KEYS
    python -m tests.unit.big_batch clean DIR [DEDUPE_BUFFER_BYTES]   # prints a JSON line

Record i has the 8-byte key b"k%07d" % (i % KEYS) and a 1-byte value; its bytes are built
here directly (record_builder's per-record path is too slow for millions).
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from pathlib import Path
from typing import Final

import cramjam
import crc32c

from strom.config.broker import BrokerConfig
from strom.storage.api import AppendBatch
from strom.storage.local import LocalEngine

T0: Final = 1_000_000
TOPIC: Final = "big"
CONFIGS: Final = {"cleanup.policy": "compact", "segment.bytes": str(1024 * 1024),
                  "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1000"}
_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
_ZSTD: Final = 4


def _varint(value: int) -> bytes:
    zz = value << 1  # zigzag of a non-negative value
    out = bytearray()
    while zz >= 0x80:
        out.append((zz & 0x7F) | 0x80)
        zz >>= 7
    out.append(zz)
    return bytes(out)


def records_payload(count: int, keys: int) -> bytearray:
    """`count` records with offset deltas 0..count-1, timestamp delta 0, no headers."""
    out = bytearray()
    tail = b"\x02v\x00"  # value length 1, b"v", no headers
    for i in range(count):
        body = b"\x00\x00" + _varint(i) + b"\x10" + b"k%07d" % (i % keys) + tail
        out += _varint(len(body))
        out += body
    return out


def big_batch(count: int, keys: int) -> bytearray:
    payload = bytes(cramjam.zstd.compress(records_payload(count, keys)))
    size = _HEADER.size + len(payload)
    batch = bytearray(_HEADER.pack(0, size - 12, 0, 2, 0, _ZSTD, count - 1, T0, T0, -1, -1, -1,
                                   count))
    batch += payload
    struct.pack_into(">I", batch, 17, crc32c.crc32c(memoryview(batch)[21:]))
    return batch


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries that over exec, so a
    process spawned by a pytest worker of 350 MiB would report at least 350 MiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def _engine(data_dir: Path) -> LocalEngine:
    return LocalEngine(data_dir, BrokerConfig.build(data_dir, "localhost", 0, {}))


async def write(data_dir: Path, count: int, keys: int) -> None:
    """The topic, the big batch, then a small one in a new segment: the big one is cleanable."""
    engine = _engine(data_dir)
    await engine.open()
    try:
        await engine.create_topic(TOPIC, 1, CONFIGS)
        plog = engine.partition(TOPIC, 0)
        await plog.append([AppendBatch(big_batch(count, keys), count, T0, T0)])
        await plog.append([AppendBatch(big_batch(1, 1), 1, T0, T0)])
        await plog.flush()
    finally:
        await engine.close()


async def clean(data_dir: Path, dedupe_buffer_bytes: int | None) -> dict[str, float]:
    engine = _engine(data_dir)
    await engine.open()
    try:
        if dedupe_buffer_bytes is not None:
            engine.cleaner.dedupe_buffer_bytes = dedupe_buffer_bytes
        plog = engine.partition(TOPIC, 0)
        start = time.process_time()
        cleaned = await engine.run_cleaner(T0 + 10_000)
        seconds = time.process_time() - start
        first_dirty = engine.cleaner.first_dirty_offset(plog)
    finally:
        await engine.close()
    peak_kib = peak_rss_kib()
    return {"cleaned": cleaned, "first_dirty": first_dirty, "peak_rss_mib": peak_kib / 1024,
            "cpu_seconds": seconds}


def main(argv: list[str]) -> None:
    command, data_dir = argv[0], Path(argv[1])
    if command == "write":
        asyncio.run(write(data_dir, int(argv[2]), int(argv[3])))
    else:
        budget = int(argv[2]) if len(argv) > 2 else None
        print(json.dumps(asyncio.run(clean(data_dir, budget))))


if __name__ == "__main__":
    main(sys.argv[1:])
