"""Where a partition should live: rendezvous (highest-random-weight) hashing over the live
brokers, so that every broker computes the same answer from the same list with no
coordination, and a broker joining or leaving moves only the partitions it gains or had.

Each (partition, broker) pair gets a pseudo-random weight; the partition's brokers in order of
weight are its line of succession: the first is where its lease belongs, the rest are next in
line, and the replicas Metadata reports are the owner followed by the next in line (different
racks first when brokers set `broker.rack`, as Kafka's rack-aware replica placement spreads
replicas over racks). A reassignment (`assigned`) pins the order to the chosen brokers, live
ones first in the order given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from strom.storage.api import BrokerRegistration


def weight(partition_id: int, node_id: int) -> int:
    """The pair's weight: stable across processes and versions (not Python's hash)."""
    digest = hashlib.blake2b(f"{partition_id}/{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def succession(partition_id: int, live: Sequence[int],
               assigned: Sequence[int] | None = None) -> list[int]:
    """The live node ids in the order they should hold the partition's lease."""
    if assigned:
        chosen = [n for n in dict.fromkeys(assigned) if n in live]
        if chosen:
            return chosen + [n for n in _by_weight(partition_id, live) if n not in chosen]
    return _by_weight(partition_id, live)


def _by_weight(partition_id: int, live: Sequence[int]) -> list[int]:
    return sorted(set(live), key=lambda n: (-weight(partition_id, n), n))


def desired_owner(partition_id: int, live: Sequence[int],
                  assigned: Sequence[int] | None = None) -> int | None:
    """Where the lease belongs now, None if no broker is live."""
    order = succession(partition_id, live, assigned)
    return order[0] if order else None


def replicas(partition_id: int, owner: int | None, brokers: Sequence[BrokerRegistration],
             count: int, assigned: Sequence[int] | None = None) -> tuple[int, ...]:
    """The owner first (if any), then live brokers next in line, preferring racks not yet
    used, `count` in all at most (fewer when fewer brokers are live)."""
    racks = {b.node_id: b.rack for b in brokers}
    order = succession(partition_id, list(racks), assigned)
    chosen: list[int] = [] if owner is None else [owner]
    used_racks = {racks.get(owner)} if owner is not None else set()
    rest = [n for n in order if n != owner]
    for pick_new_racks in (True, False):
        for node in rest:
            if len(chosen) >= count:
                return tuple(chosen)
            if node in chosen:
                continue
            rack = racks[node]
            if pick_new_racks and rack is not None and rack in used_racks:
                continue
            chosen.append(node)
            used_racks.add(rack)
    return tuple(chosen[:max(count, 1 if owner is not None else 0)])
