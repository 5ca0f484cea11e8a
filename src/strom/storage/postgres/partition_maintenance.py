"""Moving a PostgreSQL partition's log start: DeleteRecords and retention by time and size.

The partition row's log start moves (never backwards, and only at the leader epoch this broker
holds) in the same transaction that deletes the batch rows wholly below it. Retention works per
batch row, as the local engine works per segment: by time, the oldest batches whose max
timestamp is older than retention.ms; by size, the oldest batches while the rest still hold
retention.bytes; never the newest batch (as Kafka never deletes the active segment).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from strom.storage.api import NotLeader, OffsetOutOfRange
from strom.storage.local.retention import deletes_by_policy
from strom.storage.meter import RETENTION_SIZE, RETENTION_TIME

if TYPE_CHECKING:
    from strom.storage.postgres.partition import PostgresPartitionLog

MOVE_LOG_START: Final = """
UPDATE strom_partition SET log_start = greatest(log_start, $2)
WHERE partition_id = $1 AND leader_epoch = $3 RETURNING log_start
"""
DELETE_BELOW: Final = """
WITH gone AS (DELETE FROM strom_batch WHERE partition_id = $1 AND last_offset < $2
              RETURNING size)
SELECT count(*), coalesce(sum(size), 0) FROM gone
"""
# The first batch retention keeps by time: the oldest whose max timestamp is recent enough.
KEPT_BY_TIME: Final = """
SELECT min(base_offset) FROM strom_batch
WHERE partition_id = $1 AND base_offset >= $2 AND max_timestamp >= $3
"""
# ... by size: the oldest whose later batches (itself excluded) hold less than retention.bytes.
KEPT_BY_SIZE: Final = """
SELECT base_offset FROM (
    SELECT base_offset, size, sum(size) OVER (ORDER BY base_offset DESC) AS from_here
    FROM strom_batch WHERE partition_id = $1 AND last_offset >= $2) AS b
WHERE from_here - size < $3 ORDER BY base_offset LIMIT 1
"""
NEWEST: Final = """
SELECT max(base_offset) FROM strom_batch WHERE partition_id = $1
"""


async def delete_records_before(plog: PostgresPartitionLog, offset: int) -> int:
    if offset == -1:  # Kafka's DeleteRecords: -1 means the high watermark
        offset = plog.committed
    if offset < 0 or offset > plog.committed:
        raise OffsetOutOfRange(f"cannot delete records before {offset}: the high watermark "
                               f"is {plog.committed} in {plog.name}")
    async with plog.maintenance_lock:
        await advance_log_start(plog, offset)
    return plog.log_start


async def advance_log_start(plog: PostgresPartitionLog, offset: int) -> int:
    """Moves the log start to `offset` if it is ahead; returns how many batches went."""
    if offset <= plog.log_start:
        return 0
    with plog.db.health.statement(f"move the log start of {plog.name}"):
        async with plog.db.pool.acquire() as conn, conn.transaction():
            start = await conn.fetchval(MOVE_LOG_START, plog.partition_id, offset,
                                        plog.leader_epoch)
            if start is None:  # fenced: another broker leads it now
                raise NotLeader(f"{plog.name}: its lease moved; the log start was not moved")
            gone = await conn.fetchrow(DELETE_BELOW, plog.partition_id, start)
    if start > plog.log_start:
        plog.log_start = start
        plog.size_bytes -= int(gone[1])
        plog.state.prune_aborted(start)
    return int(gone[0])


async def run_retention(plog: PostgresPartitionLog, now_ms: int) -> int:
    """One retention pass; returns how many batches it deleted."""
    config = plog.config
    if plog.closed or not deletes_by_policy(config.cleanup_policy):
        return 0
    plog.state.expire(now_ms)
    if config.retention_ms < 0 and config.retention_bytes < 0:
        return 0
    async with plog.maintenance_lock:
        with plog.db.health.statement(f"retention of {plog.name}"):
            pool = plog.db.pool
            newest = await pool.fetchval(NEWEST, plog.partition_id)
            if newest is None or newest <= plog.log_start:
                return 0
            start = by_time = plog.log_start
            if config.retention_ms >= 0:
                kept = await pool.fetchval(KEPT_BY_TIME, plog.partition_id, plog.log_start,
                                           now_ms - config.retention_ms)
                start = by_time = max(start, newest if kept is None else kept)
            if config.retention_bytes >= 0:
                kept = await pool.fetchval(KEPT_BY_SIZE, plog.partition_id, plog.log_start,
                                           config.retention_bytes)
                start = max(start, newest if kept is None else kept)
        deleted = await advance_log_start(plog, min(start, newest))
        meter = plog.db.meters.meter
        if meter is not None and deleted:  # the reason that moved the log start furthest
            meter.retention_deleted(RETENTION_TIME if by_time >= start else RETENTION_SIZE,
                                    deleted)
        return deleted
