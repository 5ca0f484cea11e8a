"""Partition leases in PostgreSQL: who owns each partition, and the statements that move them.

A partition's lease is its row's (`owner`, `owner_session`, `leader_epoch`): it is valid while
the owner's session is live (membership.py), and every append is fenced by the leader epoch in
the same statement (partition.py), so a broker that lost its lease cannot write even before it
knows. A lease changes hands only by one statement that moves the epoch up by one and records
where the new epoch starts (`strom_epoch_start`, Kafka's leader-epoch cache):

* ACQUIRE takes partitions whose lease is not valid (no owner, or an owner whose session
  expired or was replaced), checked against the database's clock in the statement itself, so
  two brokers racing for one partition cannot both win;
* HAND_OVER gives partitions this broker owns, at the epoch it holds, to a live broker (a
  balanced placement moving, or a clean stop); the new owner adopts them as they are.

A broker adopts a partition (without moving its epoch) only when the row names this broker's
*current* session as owner: another broker handed it over, or created it there. A partition
owned by an earlier session of the same node id is acquired, not adopted, so that a paused
process of that node id, still holding the old epoch, is fenced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from strom.storage.postgres.connect import Health

log = logging.getLogger(__name__)

CHANNEL: Final = "strom_cluster"  # NOTIFY channel: topics or leases changed

READ: Final = """
SELECT partition_id, owner, owner_session, leader_epoch, assigned FROM strom_partition
"""
ACQUIRE: Final = """
WITH taken AS (
    UPDATE strom_partition p
    SET owner = $2, owner_session = $3, leader_epoch = p.leader_epoch + 1
    WHERE p.partition_id = ANY($1::bigint[])
      AND EXISTS (SELECT 1 FROM strom_broker me
                  WHERE me.node_id = $2 AND me.session_epoch = $3
                    AND me.expires_at > clock_timestamp())
      AND NOT EXISTS (SELECT 1 FROM strom_broker b
                      WHERE b.node_id = p.owner AND b.session_epoch = p.owner_session
                        AND b.expires_at > clock_timestamp())
    RETURNING p.partition_id, p.leader_epoch, p.next_offset),
started AS (
    INSERT INTO strom_epoch_start (partition_id, leader_epoch, start_offset)
    SELECT partition_id, leader_epoch, next_offset FROM taken
    ON CONFLICT DO NOTHING)
SELECT partition_id, leader_epoch FROM taken
"""
HAND_OVER: Final = """
WITH moved AS (
    UPDATE strom_partition p
    SET owner = b.node_id, owner_session = b.session_epoch, leader_epoch = p.leader_epoch + 1
    FROM unnest($1::bigint[], $2::int[], $3::int[]) AS h(partition_id, epoch, target),
         strom_broker b
    WHERE p.partition_id = h.partition_id AND p.leader_epoch = h.epoch
      AND p.owner = $4 AND p.owner_session = $5
      AND b.node_id = h.target AND b.node_id <> $4 AND b.expires_at > clock_timestamp()
    RETURNING p.partition_id, p.leader_epoch, p.next_offset, p.owner),
started AS (
    INSERT INTO strom_epoch_start (partition_id, leader_epoch, start_offset)
    SELECT partition_id, leader_epoch, next_offset FROM moved
    ON CONFLICT DO NOTHING)
SELECT partition_id, leader_epoch, owner FROM moved
"""
REASSIGN: Final = "UPDATE strom_partition SET assigned = $2 WHERE partition_id = $1"
EPOCHS: Final = """
SELECT leader_epoch, start_offset FROM strom_epoch_start
WHERE partition_id = $1 ORDER BY leader_epoch
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A partition's lease as the database last showed it."""

    owner: int | None
    owner_session: int | None
    epoch: int
    assigned: tuple[int, ...] | None

    def held_by(self, node_id: int, session: int) -> bool:
        return self.owner == node_id and self.owner_session == session

    def valid(self, sessions: Mapping[int, int]) -> bool:
        """Whether the owner's session is live (as of the last list of live brokers)."""
        return self.owner is not None and sessions.get(self.owner) == self.owner_session


class Leases:
    """Every partition's lease as of the last read, and the statements that move them."""

    def __init__(self, pool: Any, health: Health, node_id: int) -> None:
        self.pool = pool
        self.health = health
        self.node_id = node_id
        self.by_partition: dict[int, Lease] = {}

    async def read(self, timeout_s: float) -> dict[int, Lease]:
        with self.health.statement("read the partition leases"):
            rows = await self.pool.fetch(READ, timeout=timeout_s)
        self.by_partition = {
            r["partition_id"]: Lease(r["owner"], r["owner_session"], r["leader_epoch"],
                                     None if r["assigned"] is None else tuple(r["assigned"]))
            for r in rows}
        return self.by_partition

    def set(self, partition_id: int, lease: Lease) -> None:
        self.by_partition[partition_id] = lease

    async def acquire(self, partition_ids: Sequence[int], session: int,
                      timeout_s: float) -> dict[int, int]:
        """Takes the partitions whose lease is not valid; returns the new epoch of each one
        taken (the others are validly held by someone else, or gone)."""
        if not partition_ids:
            return {}
        with self.health.statement("acquire partition leases"):
            rows = await self.pool.fetch(ACQUIRE, list(partition_ids), self.node_id, session,
                                         timeout=timeout_s)
        taken = {r["partition_id"]: r["leader_epoch"] for r in rows}
        for pid, epoch in taken.items():
            old = self.by_partition.get(pid)
            self.set(pid, Lease(self.node_id, session, epoch,
                                None if old is None else old.assigned))
        return taken

    async def hand_over(self, moves: Iterable[tuple[int, int, int]], session: int,
                        timeout_s: float) -> dict[int, tuple[int, int]]:
        """Gives partitions (partition id, the epoch held, the target node) to live brokers;
        returns {partition id: (new epoch, new owner)} of those moved."""
        moves = list(moves)
        if not moves:
            return {}
        with self.health.statement("hand partition leases over"):
            rows = await self.pool.fetch(
                HAND_OVER, [m[0] for m in moves], [m[1] for m in moves], [m[2] for m in moves],
                self.node_id, session, timeout=timeout_s)
        return {r["partition_id"]: (r["leader_epoch"], r["owner"]) for r in rows}

    async def reassign(self, partition_id: int, replicas: Sequence[int] | None) -> None:
        with self.health.statement("reassign a partition"):
            await self.pool.execute(REASSIGN, partition_id,
                                    None if replicas is None else list(replicas))
        old = self.by_partition.get(partition_id)
        if old is not None:
            self.set(partition_id, Lease(old.owner, old.owner_session, old.epoch,
                                         None if replicas is None else tuple(replicas)))

    async def epochs(self, partition_id: int) -> list[tuple[int, int]]:
        """(leader epoch, start offset) of every epoch the partition has had, in order."""
        with self.health.statement("read the leader epochs"):
            rows = await self.pool.fetch(EPOCHS, partition_id)
        return [(r["leader_epoch"], r["start_offset"]) for r in rows]

    async def notify(self) -> None:
        """Tells the other brokers to look at the leases and topics now, not at their next
        heartbeat (a hint: losing it costs only that wait)."""
        try:
            with self.health.statement("notify the brokers"):
                await self.pool.execute("SELECT pg_notify($1, $2)", CHANNEL,
                                        str(self.node_id))
        except Exception as exc:  # a hint; the heartbeat gets there anyway
            log.debug("NOTIFY failed: %s", exc)
