"""What the admin APIs read of a PostgreSQL cluster's leases, from memory (as of this broker's
last heartbeat): where a partition belongs (ElectLeaders, ListPartitionReassignments) and the
partitions this broker serves (DescribeLogDirs).

A partition belongs to the first live broker a reassignment pinned it to, else to the broker
the balanced placement gives it (placement.py); the lease gets there at the holder's next
heartbeat, or at once after `rebalance` wakes every broker. Kafka's preferred leader is the
first replica of the assignment whether it is live or not, so a partition pinned to a broker
that is down has a preferred leader that cannot lead (PREFERRED_LEADER_NOT_AVAILABLE).
"""

from __future__ import annotations

from strom.storage.api import Assignment, PartitionSize
from strom.storage.postgres.cluster_sync import ClusterSync
from strom.storage.postgres.partition import PostgresPartitionLog
from strom.storage.postgres.placement import desired_owner


def assignment(cluster: ClusterSync, plog: PostgresPartitionLog) -> Assignment:
    lease = cluster.leases.by_partition.get(plog.partition_id)
    pinned = lease.assigned if lease is not None and lease.assigned else None
    target = desired_owner(plog.partition_id, cluster.live_ids(), pinned)
    return Assignment(pinned[0] if pinned else target, target, pinned)


async def rebalance(cluster: ClusterSync) -> None:
    """Wakes every broker's cluster loop (a NOTIFY; this one's directly): each hands over the
    leases it holds that belong elsewhere and takes those that belong to it and are free."""
    await cluster.leases.notify()
    cluster.wake()


def led_partition_sizes(cluster: ClusterSync) -> list[PartitionSize]:
    """The size of each partition this broker holds the lease of (as of its last load and
    the appends, retention and compaction since); the others' sizes are their leaders' to
    tell."""
    return [PartitionSize(p.topic, p.partition, p.size_bytes) for p in cluster.held()]
