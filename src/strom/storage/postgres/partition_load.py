"""Loading a PostgreSQL partition's state from the database: at open, and after a commit
whose outcome is unknown.

The partition row gives the log start offset, the next offset (the high watermark) and the
leader epoch; the producer state is the stored snapshot (strom_producer_snapshot, written by
`write_snapshot` now and then) replayed forward over the headers of the batches after it, as
Kafka's log recovery rebuilds ProducerStateManager from its snapshot and the segments' tail.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from strom.protocol.batch_header import read_batch_header
from strom.protocol.control_batch import CONTROL_KEY_WINDOW
from strom.storage.api import CorruptLog, NotLeader, UnknownTopic, batch_control_type
from strom.storage.postgres.status import Status
from strom.storage.producer_state import ProducerStateManager

if TYPE_CHECKING:
    from strom.storage.postgres.partition import PostgresPartitionLog

log = logging.getLogger(__name__)

PAGE_ROWS: Final = 5000
HEADERS: Final = f"""
SELECT base_offset, substring(data FROM 1 FOR {CONTROL_KEY_WINDOW}) AS head
FROM strom_batch
WHERE partition_id = $1 AND base_offset >= $2 AND base_offset < $3
ORDER BY base_offset LIMIT {PAGE_ROWS}
"""


async def reload(plog: PostgresPartitionLog) -> None:
    """Replaces the partition's offsets and producer state by the database's."""
    health, pool = plog.db.health, plog.db.pool
    epoch = plog.leader_epoch
    with health.statement(f"load {plog.name}"):
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT leader_epoch, log_start, next_offset FROM strom_partition "
                "WHERE partition_id = $1", plog.partition_id)
            if row is None:
                plog.closed = True
                raise UnknownTopic(f"{plog.name} was deleted")
            if row["leader_epoch"] != epoch:
                plog.release(f"its lease moved to epoch {row['leader_epoch']}")
                raise NotLeader(f"{plog.name} moved to leader epoch {row['leader_epoch']}")
            log_start, next_offset = row["log_start"], row["next_offset"]
            state, snap, replayed = await _producer_state(conn, plog, next_offset)
            size = await conn.fetchval(
                "SELECT coalesce(sum(size), 0) FROM strom_batch WHERE partition_id = $1",
                plog.partition_id)
    if plog.status is Status.FENCED or plog.leader_epoch != epoch:
        raise NotLeader(f"{plog.name}'s lease moved while it loaded")
    state.prune_aborted(log_start)
    state.adopt_verifications(plog.state)
    moved = next_offset != plog.committed
    plog.state = state
    plog.log_start, plog.committed, plog.assigned = log_start, next_offset, next_offset
    plog.size_bytes = int(size)
    plog.snapshot_end = -1 if snap is None else snap["end_offset"]
    plog.since_snapshot = replayed
    plog.tail.clear()
    log.debug("%s loaded at leader epoch %d: log end %d", plog.name, epoch, next_offset)
    plog.status = Status.LOADED
    if moved:
        plog.db.appended(plog.topic, plog.partition)


async def _producer_state(conn: Any, plog: PostgresPartitionLog, next_offset: int
                          ) -> tuple[ProducerStateManager, Any, int]:
    """(the producer state as of `next_offset`, the snapshot row it started from or None,
    batches replayed after the snapshot)."""
    snap = await conn.fetchrow(
        "SELECT end_offset, state FROM strom_producer_snapshot WHERE partition_id = $1",
        plog.partition_id)
    state = ProducerStateManager(plog.db.producer_id_expiration_ms)
    start = 0
    if snap is not None and snap["end_offset"] <= next_offset:
        try:
            state.load_snapshot(snap["state"])
            start = snap["end_offset"]
        except ValueError as exc:
            log.warning("%s: the producer state snapshot is unreadable (%s); rebuilding "
                        "from the whole log", plog.name, exc)
            state = ProducerStateManager(plog.db.producer_id_expiration_ms)
    replayed = 0
    while start < next_offset:
        rows = await conn.fetch(HEADERS, plog.partition_id, start, next_offset)
        if not rows:
            break
        for r in rows:
            _replay(state, r["head"], plog.name)
        replayed += len(rows)
        start = read_batch_header(rows[-1]["head"]).last_offset + 1
    return state, snap, replayed


def _replay(state: ProducerStateManager, head: bytes, name: str) -> None:
    try:
        header = read_batch_header(head)
        kind = batch_control_type(head) if header.is_control else None
    except ValueError as exc:
        raise CorruptLog(f"{name}: an unreadable batch header in the database: {exc}") from None
    state.apply_batch(header, kind)


async def write_snapshot(plog: PostgresPartitionLog) -> bool:
    """Stores the producer state as of the high watermark, if no commit is in flight (the
    state would be ahead of the log); returns whether it did."""
    if plog.busy or plog.status is not Status.LOADED or plog.closed:
        return False
    end, image = plog.committed, plog.state.snapshot()
    with plog.db.health.statement(f"snapshot {plog.name}"):
        await plog.db.pool.execute(
            "INSERT INTO strom_producer_snapshot (partition_id, end_offset, state) "
            "VALUES ($1, $2, $3) ON CONFLICT (partition_id) DO UPDATE "
            "SET end_offset = excluded.end_offset, state = excluded.state",
            plog.partition_id, end, image)
    plog.snapshot_end = end
    plog.since_snapshot = 0
    return True
