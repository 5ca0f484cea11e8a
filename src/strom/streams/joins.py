"""Joins in the DSL: the options (JoinWindows, StreamJoined, Joined), what every join does to
its inputs first (a stream whose key changed goes through a repartition topic; the topics a
join reads are recorded as a co-partition group), and the wiring of stream-stream joins
(processors and stores in `stream_join`). Stream-table and table-table joins are in
`table_joins`, foreign-key joins in `fk_join`, global tables in `global_table`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from strom.streams.operators import PassThroughProcessor
from strom.streams.serdes import Serde
from strom.streams.stream_join import (
    JoinSpec,
    JoinWindowStoreBuilder,
    StreamStreamJoinProcessor,
    ValueJoiner,
    outer_buffer_builder,
)
from strom.streams.topology import SourceNode, Topology

if TYPE_CHECKING:
    from strom.streams.dsl import KStream


@dataclass(frozen=True)
class JoinWindows:
    """How far apart in time two records of one key may be to join (Kafka's JoinWindows): a
    left record at t joins right records with timestamps in [t - before_ms, t + after_ms],
    bounds included; a record may arrive until the stream time passes its window's end by more
    than `grace_ms`. Each side's records are kept for before + after + grace of stream time."""

    before_ms: int
    after_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        if self.before_ms + self.after_ms < 0:
            raise ValueError(f"a join window of before {self.before_ms} ms and after "
                             f"{self.after_ms} ms is empty (before + after must be >= 0)")
        if self.grace_ms < 0:
            raise ValueError(f"the grace period ({self.grace_ms} ms) must be >= 0")

    @classmethod
    def of_time_difference_with_no_grace(cls, time_difference_ms: int) -> JoinWindows:
        """Records within `time_difference_ms` of each other join; no record may be late."""
        return cls(time_difference_ms, time_difference_ms, 0)

    @classmethod
    def of_time_difference_and_grace(cls, time_difference_ms: int, grace_ms: int
                                     ) -> JoinWindows:
        """Records within `time_difference_ms` of each other join; records may arrive up to
        `grace_ms` after their window's end."""
        return cls(time_difference_ms, time_difference_ms, grace_ms)

    def before(self, ms: int) -> JoinWindows:
        """The same windows reaching `ms` back from a left record (may be negative if after is
        larger)."""
        return replace(self, before_ms=ms)

    def after(self, ms: int) -> JoinWindows:
        """The same windows reaching `ms` on from a left record."""
        return replace(self, after_ms=ms)

    @property
    def size_ms(self) -> int:
        return self.before_ms + self.after_ms

    @property
    def retention_ms(self) -> int:
        return self.before_ms + self.after_ms + self.grace_ms


@dataclass(frozen=True)
class StreamJoined:
    """A stream-stream join's serdes and names (Kafka's StreamJoined): `name` names its
    processors and repartition topics (`<name>-left-repartition`), `store_name` its window
    stores and their changelogs (`<store_name>-this-join-store`, ...)."""

    key_serde: Serde[Any] | None = None
    value_serde: Serde[Any] | None = None
    other_value_serde: Serde[Any] | None = None
    name: str | None = None
    store_name: str | None = None
    logging: bool = True


@dataclass(frozen=True)
class Joined:
    """A stream-table join's serdes and name (Kafka's Joined): the stream's key and value
    serdes (for its repartition topic), the table's value serde, and the processor's name."""

    key_serde: Serde[Any] | None = None
    value_serde: Serde[Any] | None = None
    other_value_serde: Serde[Any] | None = None
    name: str | None = None


# -- what every join does to its inputs ------------------------------------------------------

def upstream_topics(topology: Topology, node: str) -> set[str]:
    """The topics of the sources whose records reach `node`."""
    topics: set[str] = set()
    seen: set[str] = set()
    stack = [node]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        current = topology.nodes[name]
        if isinstance(current, SourceNode):
            topics.update(current.topics)
        else:
            stack.extend(current.parents)
    return topics


def copartition(topology: Topology, *nodes: str) -> None:
    """Records that the topics feeding `nodes` must be co-partitioned (one join reads them)."""
    topology.add_copartition_group(*set().union(*(upstream_topics(topology, n) for n in nodes)))


def repartitioned(stream: KStream, name: str | None, key_serde: Serde[Any] | None,
                  value_serde: Serde[Any] | None) -> KStream:
    """The stream, or, if its key changed, the stream written through the repartition topic
    `<name or node>-repartition` (a second join of the same stream reads the same topic)."""
    if not stream.repartition_required:
        return stream
    base = name or stream.node
    if f"{base}-repartition" in stream.builder.topology.internal_topics:
        return type(stream)(stream.builder, f"{base}-source", key_serde, value_serde)
    return stream._through_topic(base, key_serde, value_serde, None)


# -- stream-stream -----------------------------------------------------------------------------

def stream_stream_join(left: KStream, right: KStream, joiner: ValueJoiner,
                       windows: JoinWindows, stream_joined: StreamJoined | None = None, *,
                       kind: str) -> tuple[str, Serde[Any] | None]:
    """Adds a windowed join of two streams ("inner", "left" or "outer"); returns the node the
    results come from and their key serde."""
    joined = stream_joined or StreamJoined()
    builder, topology = left.builder, left.builder.topology
    key_serde = joined.key_serde or left.key_serde or right.key_serde
    left_serde = joined.value_serde or left.value_serde
    right_serde = joined.other_value_serde or right.value_serde
    left = repartitioned(left, joined.name and f"{joined.name}-left", key_serde, left_serde)
    right = repartitioned(right, joined.name and f"{joined.name}-right", key_serde, right_serde)
    left_outer, right_outer = kind in ("left", "outer"), kind == "outer"
    this = (f"{joined.name}-this-join" if joined.name else
            builder.new_name("KSTREAM-OUTERTHIS-" if right_outer else "KSTREAM-JOINTHIS-"))
    other = (f"{joined.name}-other-join" if joined.name else
             builder.new_name("KSTREAM-OUTEROTHER-" if left_outer else "KSTREAM-JOINOTHER-"))
    merge = f"{joined.name}-merge" if joined.name else builder.new_name("KSTREAM-MERGE-")
    stores = _store_names(joined, this, other, kind)
    spec = JoinSpec(stores[0], stores[1], stores[2], windows.before_ms, windows.after_ms,
                    windows.grace_ms, joiner, left_outer, right_outer,
                    trackers={})
    topology.add_processor(this, lambda: StreamStreamJoinProcessor(spec, True), left.node)
    topology.add_processor(other, lambda: StreamStreamJoinProcessor(spec, False), right.node)
    for store, value_serde in ((stores[0], left_serde), (stores[1], right_serde)):
        topology.add_state_store(JoinWindowStoreBuilder(
            store, key_serde, value_serde, windows.retention_ms, logging=joined.logging),
            this, other)
    if stores[2] is not None:
        topology.add_state_store(outer_buffer_builder(stores[2], joined.logging), this, other)
    topology.add_processor(merge, PassThroughProcessor, this, other)
    copartition(topology, left.node, right.node)
    return merge, key_serde


def _store_names(joined: StreamJoined, this: str, other: str, kind: str
                 ) -> tuple[str, str, str | None]:
    """The window stores' and the outer buffer's names: from `store_name`, else from the
    processors' (the buffer's from the join's name, else KSTREAM-OUTERSHARED-<this's number>)."""
    base = joined.store_name or joined.name
    shared = None
    if kind != "inner":
        shared = (f"{base}-{kind}-shared-join-store" if base else
                  f"KSTREAM-OUTERSHARED-{this.rsplit('-', 1)[-1]}-store")
    if joined.store_name is None:
        return f"{this}-store", f"{other}-store", shared
    outer = "outer-" if kind == "outer" else ""
    return (f"{base}-{outer}this-join-store", f"{base}-{outer}other-join-store", shared)
