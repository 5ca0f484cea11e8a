"""Server-side assignors of KIP-848 consumer groups: `uniform` and `range`.

Both are pure functions from the members' subscriptions, the topics' partition counts and the
current target assignment to a new target assignment, deterministic for equal inputs.

- `uniform` (Kafka's UniformAssignor): balanced (member counts differ by at most one among
  members with the same subscription) and sticky: a partition stays with its current target
  owner while that owner is subscribed to it and within its quota. strom uses one greedy
  builder for homogeneous and heterogeneous subscriptions instead of Kafka's two; the result
  satisfies the same balance and stickiness properties but is not bit-identical to Kafka's.
- `range` (Kafka's RangeAssignor): per topic, the subscribed members sorted by member id get
  contiguous ranges, the first `partitions % members` one partition more; co-partitioned topics
  are assigned alike. Like the client-side range assignor it is not sticky.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Final

TopicId = uuid.UUID
Assignment = dict[TopicId, frozenset[int]]
# member id -> subscribed topic ids (only topics that exist)
Subscriptions = Mapping[str, frozenset[TopicId]]
# topic id -> partition count
PartitionCounts = Mapping[TopicId, int]

UNIFORM: Final = "uniform"
RANGE: Final = "range"
DEFAULT_ASSIGNOR: Final = UNIFORM


def uniform(subscriptions: Subscriptions, counts: PartitionCounts,
            current: Mapping[str, Assignment]) -> dict[str, Assignment]:
    members = sorted(subscriptions)
    owned: dict[str, set[tuple[TopicId, int]]] = {m: set() for m in members}
    owner: dict[tuple[TopicId, int], str] = {}
    # Keep current targets that are still valid.
    for member in members:
        for topic, partitions in sorted(current.get(member, {}).items()):
            if topic not in subscriptions[member]:
                continue
            for p in sorted(partitions):
                tp = (topic, p)
                if p < counts.get(topic, 0) and tp not in owner:
                    owner[tp] = member
                    owned[member].add(tp)
    # Every partition any member subscribes to, sorted; fewest subscribers first.
    all_tps = sorted(
        ((t, p) for t in {t for s in subscriptions.values() for t in s}
         for p in range(counts.get(t, 0))),
        key=lambda tp: (sum(1 for m in members if tp[0] in subscriptions[m]), str(tp[0]), tp[1]))
    for tp in all_tps:
        if tp in owner:
            continue
        candidates = [m for m in members if tp[0] in subscriptions[m]]
        best = min(candidates, key=lambda m: (len(owned[m]), m))
        owner[tp] = best
        owned[best].add(tp)
    _balance(members, subscriptions, owned, owner, len(all_tps))
    return {m: _as_assignment(owned[m]) for m in members}


def _balance(members: list[str], subscriptions: Subscriptions,
             owned: dict[str, set[tuple[TopicId, int]]],
             owner: dict[tuple[TopicId, int], str], total: int) -> None:
    """Moves partitions from the most to the least loaded eligible member until no move
    narrows the gap; each move lowers the sum of squares, so it ends (bounded anyway)."""
    for _ in range(total * max(1, len(members)) + 1):
        moved = False
        for giver in sorted(members, key=lambda m: (-len(owned[m]), m)):
            for tp in sorted(owned[giver], key=lambda x: (str(x[0]), x[1]), reverse=True):
                takers = [m for m in members
                          if tp[0] in subscriptions[m] and len(owned[m]) + 1 < len(owned[giver])]
                if not takers:
                    continue
                taker = min(takers, key=lambda m: (len(owned[m]), m))
                owned[giver].discard(tp)
                owned[taker].add(tp)
                owner[tp] = taker
                moved = True
                break
            if moved:
                break
        if not moved:
            return


def range_(subscriptions: Subscriptions, counts: PartitionCounts,
           current: Mapping[str, Assignment]) -> dict[str, Assignment]:
    out: dict[str, dict[TopicId, set[int]]] = {m: {} for m in subscriptions}
    for topic in sorted({t for s in subscriptions.values() for t in s}, key=str):
        members = sorted(m for m, s in subscriptions.items() if topic in s)
        partitions = counts.get(topic, 0)
        quota, extra = divmod(partitions, len(members))
        start = 0
        for index, member in enumerate(members):
            size = quota + (1 if index < extra else 0)
            if size:
                out[member][topic] = set(range(start, start + size))
            start += size
    return {m: {t: frozenset(ps) for t, ps in a.items()} for m, a in out.items()}


def _as_assignment(tps: set[tuple[TopicId, int]]) -> Assignment:
    out: dict[TopicId, set[int]] = {}
    for topic, p in tps:
        out.setdefault(topic, set()).add(p)
    return {t: frozenset(ps) for t, ps in out.items()}


Assignor = Callable[[Subscriptions, PartitionCounts, Mapping[str, Assignment]],
                    dict[str, Assignment]]

ASSIGNORS: Final[Mapping[str, Assignor]] = {UNIFORM: uniform, RANGE: range_}
