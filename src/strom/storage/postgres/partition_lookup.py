"""Timestamp lookups of a PostgreSQL partition (ListOffsets by time, and max timestamp): the
batch rows' max_timestamp column finds the batch, the batch's records the record, as the
local engine answers inside a batch (storage/local/timestamps.batch_first_at_or_after)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from strom.protocol.batch_header import read_batch_header
from strom.storage.local.timestamps import batch_first_at_or_after

if TYPE_CHECKING:
    from strom.storage.postgres.partition import PostgresPartitionLog

FIRST_AT_OR_AFTER: Final = """
SELECT data FROM strom_batch
WHERE partition_id = $1 AND max_timestamp >= $2 AND last_offset >= $3 AND base_offset < $4
ORDER BY base_offset LIMIT 16
"""
LATEST: Final = """
SELECT data FROM strom_batch
WHERE partition_id = $1 AND max_timestamp >= 0 AND last_offset >= $2 AND base_offset < $3
ORDER BY max_timestamp DESC, base_offset LIMIT 1
"""


async def offset_for_timestamp(plog: PostgresPartitionLog, timestamp_ms: int
                               ) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record with timestamp >= `timestamp_ms`."""
    start = plog.log_start
    while True:
        with plog.db.health.statement(f"look up a timestamp in {plog.name}"):
            rows = await plog.db.pool.fetch(FIRST_AT_OR_AFTER, plog.partition_id, timestamp_ms,
                                            start, plog.committed)
        if not rows:
            return None
        for r in rows:
            data = r["data"]
            h = read_batch_header(data)
            found = batch_first_at_or_after(h, data, timestamp_ms, plog.log_start)
            if found is not None:
                return found
            start = h.last_offset + 1


async def max_timestamp(plog: PostgresPartitionLog) -> tuple[int, int] | None:
    """(offset, timestamp) of the record with the largest timestamp."""
    with plog.db.health.statement(f"look up the max timestamp in {plog.name}"):
        data = await plog.db.pool.fetchval(LATEST, plog.partition_id, plog.log_start,
                                           plog.committed)
    if data is None:
        return None
    h = read_batch_header(data)
    found = batch_first_at_or_after(h, data, h.max_timestamp, plog.log_start)
    return (h.base_offset if found is None else found[0]), h.max_timestamp
