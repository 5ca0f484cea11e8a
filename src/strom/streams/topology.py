"""A topology: source nodes reading topics, processor nodes, sink nodes writing topics, and
the state stores processors use (Kafka Streams' Topology, built by hand or by the DSL).

Nodes that are connected (parent and child, or sharing a store) form a sub-topology; a
topic written by one sub-topology's sink and read by another's source (a repartition topic)
separates them. Each sub-topology runs as one task per partition of its source topics
(task id `<sub-topology>_<partition>`), which is why a sub-topology's source topics must be
co-partitioned. Joins also record their inputs' topics as co-partition groups
(`copartition_groups`), so that a runtime can check their partition counts and give repartition
topics matching ones.

Global stores (`add_global_store`) hold every partition of their topic and are readable from every
task; their source and processor form no sub-topology (`sub_topologies()` leaves them out,
`global_sub_topology()` gives them). A runtime restores each global store from its whole topic,
all partitions up to their end offsets (`global_stores` names the topics), before any task
processes, then keeps feeding it the topic's new records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from strom.streams.processor import ProcessorSupplier
from strom.streams.record import Record
from strom.streams.serdes import Serde
from strom.streams.stores.api import StoreBuilder


class TopologyError(ValueError):
    """A topology that cannot run; the message says what to change."""


TimestampExtractor = Callable[[Record, int], int]  # (record, partition time) -> timestamp
TopicExtractor = Callable[[Record], str]
Partitioner = Callable[[str, Any, Any, int], int | None]  # (topic, key, value, count)


@dataclass
class SourceNode:
    name: str
    topics: tuple[str, ...]
    key_serde: Serde[Any] | None = None
    value_serde: Serde[Any] | None = None
    timestamp_extractor: TimestampExtractor | None = None
    children: list[str] = field(default_factory=list)


@dataclass
class ProcessorNode:
    name: str
    supplier: ProcessorSupplier
    parents: tuple[str, ...]
    stores: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)


@dataclass
class SinkNode:
    name: str
    topic: str | TopicExtractor
    parents: tuple[str, ...]
    key_serde: Serde[Any] | None = None
    value_serde: Serde[Any] | None = None
    partitioner: Partitioner | None = None


@dataclass
class InternalTopic:
    """A topic the application makes for itself (named <application.id>-<name>)."""

    name: str
    kind: str  # "repartition" or "changelog"
    partitions: int | None = None  # None: as the source topics of its sub-topology
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GlobalStore:
    """A store fed by every partition of `topic` through `source` and `processor`."""

    store: str
    topic: str
    source: str
    processor: str


@dataclass(frozen=True)
class SubTopology:
    id: int
    nodes: tuple[str, ...]
    source_topics: tuple[str, ...]
    sink_topics: tuple[str, ...]
    stores: tuple[str, ...]


Node = SourceNode | ProcessorNode | SinkNode


class Topology:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.stores: dict[str, StoreBuilder] = {}
        self.internal_topics: dict[str, InternalTopic] = {}
        self.global_stores: dict[str, GlobalStore] = {}
        self.copartition_groups: list[frozenset[str]] = []
        self._topic_sources: dict[str, str] = {}

    # -- building ------------------------------------------------------------------------

    def _new(self, name: str) -> None:
        if not name:
            raise TopologyError("a node needs a name")
        if name in self.nodes:
            raise TopologyError(f"a node named {name!r} was added already")

    def _parents(self, name: str, parents: Sequence[str]) -> tuple[str, ...]:
        if not parents:
            raise TopologyError(f"{name!r} needs at least one parent")
        for parent in parents:
            node = self.nodes.get(parent)
            if node is None:
                raise TopologyError(f"{name!r} names parent {parent!r}, which is not a node")
            if isinstance(node, SinkNode):
                raise TopologyError(f"{name!r} cannot follow sink {parent!r}")
        return tuple(parents)

    def add_source(self, name: str, *topics: str, key_serde: Serde[Any] | None = None,
                   value_serde: Serde[Any] | None = None,
                   timestamp_extractor: TimestampExtractor | None = None) -> Topology:
        self._new(name)
        if not topics:
            raise TopologyError(f"source {name!r} needs at least one topic")
        for topic in topics:
            if topic in self._topic_sources:
                raise TopologyError(f"topic {topic!r} is read by source "
                                    f"{self._topic_sources[topic]!r} already")
        self.nodes[name] = SourceNode(name, tuple(topics), key_serde, value_serde,
                                      timestamp_extractor)
        for topic in topics:
            self._topic_sources[topic] = name
        return self

    def add_processor(self, name: str, supplier: ProcessorSupplier, *parents: str) -> Topology:
        self._new(name)
        checked = self._parents(name, parents)
        self.nodes[name] = ProcessorNode(name, supplier, checked)
        for parent in checked:
            self._children_of(parent).append(name)
        return self

    def add_sink(self, name: str, topic: str | TopicExtractor, *parents: str,
                 key_serde: Serde[Any] | None = None, value_serde: Serde[Any] | None = None,
                 partitioner: Partitioner | None = None) -> Topology:
        self._new(name)
        checked = self._parents(name, parents)
        self.nodes[name] = SinkNode(name, topic, checked, key_serde, value_serde, partitioner)
        for parent in checked:
            self._children_of(parent).append(name)
        return self

    def add_state_store(self, builder: StoreBuilder, *processors: str) -> Topology:
        if builder.name in self.stores:
            raise TopologyError(f"a store named {builder.name!r} was added already")
        self.stores[builder.name] = builder
        self.connect_processor_and_state_stores(*processors, stores=(builder.name,))
        return self

    def connect_processor_and_state_stores(self, *processors: str,
                                           stores: Sequence[str]) -> Topology:
        for name in processors:
            node = self.nodes.get(name)
            if not isinstance(node, ProcessorNode):
                raise TopologyError(f"stores connect to processors; {name!r} is not one")
            for store in stores:
                if store not in self.stores:
                    raise TopologyError(f"no store named {store!r}")
                if store in self.global_stores:
                    raise TopologyError(f"{store!r} is a global store: every processor reads "
                                        "it without being connected")
                if store not in node.stores:
                    node.stores.append(store)
        return self

    def add_internal_topic(self, topic: InternalTopic) -> None:
        self.internal_topics[topic.name] = topic

    def add_global_store(self, builder: StoreBuilder, source: str, topic: str, processor: str,
                         supplier: ProcessorSupplier, *, key_serde: Serde[Any] | None = None,
                         value_serde: Serde[Any] | None = None,
                         timestamp_extractor: TimestampExtractor | None = None) -> Topology:
        """A store holding all partitions of `topic` (Kafka's addGlobalStore): each record goes
        through `source` to `processor`, which updates the store. The topic is the store's
        changelog, so the store may not log."""
        if builder.logging:
            raise TopologyError(f"global store {builder.name!r}: its topic is its changelog; "
                                "build it with logging=False")
        self.add_source(source, topic, key_serde=key_serde, value_serde=value_serde,
                        timestamp_extractor=timestamp_extractor)
        self.add_processor(processor, supplier, source)
        self.add_state_store(builder, processor)
        self.global_stores[builder.name] = GlobalStore(builder.name, topic, source, processor)
        return self

    def add_copartition_group(self, *topics: str) -> None:
        """These topics must have as many partitions (and one partitioner): a join reads them
        in one task. Groups that share a topic become one."""
        group = set(topics)
        for other in [g for g in self.copartition_groups if g & group]:
            group |= other
            self.copartition_groups.remove(other)
        self.copartition_groups.append(frozenset(group))

    def _children_of(self, name: str) -> list[str]:
        node = self.nodes[name]
        assert not isinstance(node, SinkNode)
        return node.children

    # -- reading -------------------------------------------------------------------------

    def physical(self, application_id: str, topic: str) -> str:
        """The topic's name on the cluster: internal topics carry the application id."""
        return f"{application_id}-{topic}" if topic in self.internal_topics else topic

    def source_for(self, topic: str) -> SourceNode | None:
        name = self._topic_sources.get(topic)
        node = self.nodes.get(name) if name is not None else None
        return node if isinstance(node, SourceNode) else None

    @property
    def source_topics(self) -> tuple[str, ...]:
        """The topics tasks read (global stores' topics are not among them)."""
        globals_ = {g.topic for g in self.global_stores.values()}
        return tuple(t for t in self._topic_sources if t not in globals_)

    def _connected(self) -> list[list[str]]:
        """The node names of each connected group, in the order of their first node."""
        parent: dict[str, str] = {n: n for n in self.nodes}

        def find(n: str) -> str:
            while parent[n] != n:
                parent[n] = parent[parent[n]]
                n = parent[n]
            return n

        by_store: dict[str, str] = {}
        for node in self.nodes.values():
            linked = list(node.parents) if isinstance(node, ProcessorNode | SinkNode) else []
            if isinstance(node, ProcessorNode):
                linked += [by_store.setdefault(store, node.name) for store in node.stores]
            for other in linked:
                parent[find(other)] = find(node.name)
        groups: dict[str, list[str]] = {}
        for name in self.nodes:
            groups.setdefault(find(name), []).append(name)
        return list(groups.values())

    def sub_topologies(self) -> list[SubTopology]:
        """Connected nodes (edges and shared stores), numbered in the order their first
        node was added; global stores' nodes are not among them."""
        global_nodes = {g.source for g in self.global_stores.values()}
        return self._sub_topologies([names for names in self._connected()
                                     if global_nodes.isdisjoint(names)])

    def global_sub_topology(self) -> SubTopology | None:
        """The nodes and stores of all global stores (None: the topology has none)."""
        global_nodes = {g.source for g in self.global_stores.values()}
        names = [n for group in self._connected() if not global_nodes.isdisjoint(group)
                 for n in group]
        return self._sub_topologies([names])[0] if names else None

    def _sub_topologies(self, groups: list[list[str]]) -> list[SubTopology]:
        result = []
        for number, names in enumerate(groups):
            members = [self.nodes[n] for n in names]
            sources = tuple(t for m in members if isinstance(m, SourceNode) for t in m.topics)
            sinks = tuple(m.topic for m in members
                          if isinstance(m, SinkNode) and isinstance(m.topic, str))
            stores = tuple(dict.fromkeys(st for m in members if isinstance(m, ProcessorNode)
                                         for st in m.stores))
            result.append(SubTopology(number, tuple(names), sources, sinks, stores))
        return result

    def describe(self) -> str:
        """Kafka Streams' TopologyDescription, as text."""
        lines = ["Topologies:"]
        global_sub = self.global_sub_topology()
        for sub in self.sub_topologies() + ([global_sub] if global_sub else []):
            lines.append(f"   Sub-topology: {sub.id}" if sub is not global_sub else
                         "   Sub-topology: global (global stores; generates no tasks)")
            for name in sub.nodes:
                node = self.nodes[name]
                if isinstance(node, SourceNode):
                    lines.append(f"    Source: {name} (topics: [{', '.join(node.topics)}])")
                elif isinstance(node, ProcessorNode):
                    lines.append(f"    Processor: {name} (stores: [{', '.join(node.stores)}])")
                else:
                    topic = node.topic if isinstance(node.topic, str) else "<extractor>"
                    lines.append(f"    Sink: {name} (topic: {topic})")
                if not isinstance(node, SinkNode):
                    lines.append(f"      --> {', '.join(node.children) or 'none'}")
                if not isinstance(node, SourceNode):
                    lines.append(f"      <-- {', '.join(node.parents)}")
        return "\n".join(lines)
