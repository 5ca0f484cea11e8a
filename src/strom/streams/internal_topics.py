"""The topics an application makes for itself, and how many partitions everything has.

Each sub-topology runs one task per partition of its source topics, so its source topics
must have one partition count (co-partitioned: Kafka Streams refuses to start otherwise).
A repartition topic takes the partition count of the sub-topology that writes it (unless
`Repartitioned(partitions=N)` fixed one), or, when a join reads it with other topics (a
co-partition group of the topology), theirs; a changelog topic has one partition per task of
the sub-topology its store belongs to, and is compacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from strom.streams.topology import SinkNode, Topology


class TopicLayoutError(ValueError):
    """Topics whose partition counts cannot work (or that do not exist); says which."""


@dataclass(frozen=True)
class TopicPlan:
    name: str  # on the cluster
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    sub_partitions: dict[int, int]  # sub-topology -> tasks (partitions of its sources)
    internal: tuple[TopicPlan, ...]  # repartition and changelog topics to have


def external_topics(topology: Topology) -> list[str]:
    return [t for t in topology.source_topics if t not in topology.internal_topics]


def global_topics(topology: Topology) -> list[str]:
    """The topics of the global stores (read whole by every instance; any partition count)."""
    return sorted({g.topic for g in topology.global_stores.values()})


def _writers(topology: Topology) -> dict[str, list[int]]:
    """Internal topic -> the sub-topologies whose sinks write it."""
    writers: dict[str, list[int]] = {}
    for sub in topology.sub_topologies():
        for name in sub.nodes:
            node = topology.nodes[name]
            if isinstance(node, SinkNode) and isinstance(node.topic, str) \
                    and node.topic in topology.internal_topics:
                writers.setdefault(node.topic, []).append(sub.id)
    return writers


def _copartition(topology: Topology, counts: dict[str, int]) -> None:
    """Internal topics that a join reads with topics of known partition counts take that count
    (Kafka's CopartitionedTopicsEnforcer); known counts that differ cannot be joined."""
    for group in topology.copartition_groups:
        known = {t: counts[t] for t in group if t in counts}
        if len(set(known.values())) > 1:
            shown = ", ".join(f"{t} ({n})" for t, n in sorted(known.items()))
            raise TopicLayoutError(f"the topics {shown} are joined but are not "
                                   "co-partitioned: give them one partition count, or "
                                   "repartition one side")
        for topic in group:
            if known and topic in topology.internal_topics:
                counts.setdefault(topic, next(iter(known.values())))


def _resolve(topology: Topology, counts: dict[str, int]) -> dict[int, int]:
    """Sub-topology partition counts (and, into `counts`, those of the repartition topics),
    each as soon as all of what decides it is known."""
    subs = topology.sub_topologies()
    writers = _writers(topology)
    sub_partitions: dict[int, int] = {}
    changed = True
    while changed:
        changed = False
        for sub in subs:
            known = [counts[t] for t in sub.source_topics if t in counts]
            if sub.id in sub_partitions or len(known) != len(sub.source_topics) or not known:
                continue
            if len(set(known)) > 1:
                shown = ", ".join(f"{t} ({counts[t]})" for t in sub.source_topics)
                raise TopicLayoutError(
                    f"the topics {shown} are read together (a join or a shared store) but "
                    "are not co-partitioned: give them one partition count, or repartition "
                    "one side")
            sub_partitions[sub.id] = known[0]
            changed = True
        for written, subs_writing in writers.items():
            if written not in counts and all(s in sub_partitions for s in subs_writing):
                counts[written] = max(sub_partitions[s] for s in subs_writing)
                changed = True
    unresolved = [s.id for s in subs if s.id not in sub_partitions]
    if unresolved:
        raise TopicLayoutError(f"cannot tell how many partitions sub-topologies {unresolved} "
                               "have (a cycle of repartition topics?)")
    return sub_partitions


def layout(topology: Topology, application_id: str, existing: Mapping[str, int]) -> Layout:
    """Partition counts from those of the existing topics (`existing`: topic -> count)."""
    missing = [t for t in external_topics(topology) + global_topics(topology)
               if t not in existing]
    if missing:
        raise TopicLayoutError(f"the source topics {', '.join(missing)} do not exist: create "
                               "them first")
    counts: dict[str, int] = {t: existing[t] for t in external_topics(topology)}
    for name, topic in topology.internal_topics.items():
        if topic.partitions is not None:
            counts[name] = topic.partitions
    _copartition(topology, counts)
    sub_partitions = _resolve(topology, counts)
    plans = [TopicPlan(topology.physical(application_id, name), counts[name],
                       {"cleanup.policy": "delete", **topic.config})
             for name, topic in topology.internal_topics.items()]
    for sub in topology.sub_topologies():
        for store in sub.stores:
            builder = topology.stores[store]
            if getattr(builder, "logging", False):
                plans.append(TopicPlan(f"{application_id}-{store}-changelog",
                                       sub_partitions[sub.id],
                                       {"cleanup.policy": "compact",
                                        **getattr(builder, "changelog_config", {})}))
    return Layout(sub_partitions, tuple(plans))
