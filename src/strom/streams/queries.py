"""Interactive queries across instances (Kafka Streams' queryMetadataForKey and
allMetadata): which instance holds a key of a store, and what every instance holds.

A key of a store lives in the task of the store's sub-topology whose partition is the
partition of the serialized key (murmur2, Java's default partitioner, which strom.streams'
collector uses too); the instance running that task answers for it (strom.streams.membership
says which one, from the group's last stable description). A global store is held whole by
every instance: this one answers. Endpoints are the instances' `application.server`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strom.streams.membership import GroupView
from strom.streams.murmur2 import partition_for
from strom.streams.serdes import Serde
from strom.streams.topology import Topology


@dataclass(frozen=True)
class KeyQueryMetadata:
    """Where a key of a store is: `active` is the host:port of the instance running its task
    (None: no instance runs it now, as during a rebalance), `standbys` those keeping a
    standby of it."""

    active: str | None
    standbys: tuple[str, ...]
    partition: int
    task_id: str | None
    process_id: str | None


@dataclass(frozen=True)
class StreamsMetadata:
    """One instance of the application: its endpoint (None: it published none), the tasks and
    stores it runs and those it keeps standbys of."""

    process_id: str
    endpoint: str | None
    active_tasks: tuple[str, ...]
    standby_tasks: tuple[str, ...]
    stores: tuple[str, ...]
    standby_stores: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"process_id": self.process_id, "endpoint": self.endpoint,
                "active_tasks": list(self.active_tasks),
                "standby_tasks": list(self.standby_tasks), "stores": list(self.stores),
                "standby_stores": list(self.standby_stores)}


def _stores_of(topology: Topology, tasks: frozenset[str]) -> tuple[str, ...]:
    subs = {int(t.partition("_")[0]) for t in tasks}
    return tuple(sorted({store for sub in topology.sub_topologies() if sub.id in subs
                         for store in sub.stores}))


def all_metadata(topology: Topology, view: GroupView, endpoints: dict[str, str]
                 ) -> list[StreamsMetadata]:
    """Every instance in the group (by process id)."""
    found = []
    global_stores = tuple(sorted(topology.global_stores))
    for process in sorted(view.active):
        active, standby = view.active[process], view.standby.get(process, frozenset())
        found.append(StreamsMetadata(process, endpoints.get(process), tuple(sorted(active)),
                                     tuple(sorted(standby)),
                                     tuple(sorted(set(_stores_of(topology, active))
                                                  | set(global_stores))),
                                     _stores_of(topology, standby)))
    return found


def metadata_for_key(topology: Topology, sub_partitions: dict[int, int], view: GroupView,
                     endpoints: dict[str, str], own: tuple[str, str | None], store: str,
                     key: Any, key_serde: Serde[Any],
                     partitioner: Callable[[bytes, int], int] | None = None
                     ) -> KeyQueryMetadata:
    """Where `key` of `store` is (own: this instance's process id and endpoint;
    partitioner(key bytes, partitions): murmur2's unless given)."""
    if store in topology.global_stores:
        return KeyQueryMetadata(own[1], (), -1, None, own[0])
    sub = next((s for s in topology.sub_topologies() if store in s.stores), None)
    if sub is None:
        raise KeyError(f"no store named {store!r}")
    data = key_serde.serialize(store, key)
    if data is None:
        raise ValueError("a key of a store is never None")
    partition = (partitioner or partition_for)(data, sub_partitions[sub.id])
    task_id = f"{sub.id}_{partition}"
    owner = view.owner(task_id)
    standbys = tuple(e for p in view.standbys_of(task_id)
                     if (e := endpoints.get(p)) is not None)
    return KeyQueryMetadata(endpoints.get(owner) if owner is not None else None, standbys,
                            partition, task_id, owner)
