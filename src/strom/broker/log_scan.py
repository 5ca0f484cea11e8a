"""Reading an internal topic's partition batch by batch, for the coordinators' replay at start
(`__consumer_offsets`, `__transaction_state`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from strom.protocol.batch_header import BATCH_HEADER_SIZE, BatchHeader, read_batch_header
from strom.storage.api import PartitionLog, chunks_bytes

READ_CHUNK_BYTES: Final = 4 * 2**20

# (header, the whole batch, the offset the read started at): records below it are not new.
OnBatch = Callable[[BatchHeader, memoryview, int], None]


async def scan_partition(plog: PartitionLog, on_batch: OnBatch) -> None:
    """Calls `on_batch` for every batch from the log start offset to the high watermark, in
    log order."""
    offsets = await plog.offsets()
    offset = offsets.log_start
    while offset < offsets.high_watermark:
        result = await plog.read(offset, READ_CHUNK_BYTES, True)
        data = chunks_bytes(result.chunks)
        if not data:
            return
        view = memoryview(data)
        pos, next_offset = 0, offset
        while pos + BATCH_HEADER_SIZE <= len(data):
            header = read_batch_header(view, pos)
            batch = view[pos: pos + header.size]
            pos += header.size
            if header.next_offset > offset:
                on_batch(header, batch, offset)
            next_offset = header.next_offset
        offset = next_offset
        offsets = await plog.offsets()


async def replay_partition(plog: PartitionLog, on_batch: OnBatch) -> None:
    """`scan_partition` after waiting for the appends already made (answered or in flight) to
    be durable: with flush.messages=1 the high watermark waits for their fsync, and a replay
    that stopped below them would forget state that was (or is about to be) answered."""
    await plog.wait_durable((await plog.offsets()).log_end)
    await scan_partition(plog, on_batch)
