"""Who runs what: the application's instances, their tasks and endpoints, seen from any one
of them, for standby placement and interactive queries across instances.

Tasks. Each stream thread's consumer has the client id `<application.id>-<process id>-<thread
index>-consumer`, and owning partition p of a sub-topology's anchor topic means running task
`<sub-topology>_<p>` (strom.streams.thread). An AdminClient's DescribeConsumerGroups of the
application's group therefore tells every instance's active tasks. A description is used only
when the group is Stable (the last stable one is kept meanwhile); it is asked for every
second, and at once after a rebalance of this instance's threads.

Endpoints. `application.server=host:port` is published in the compacted internal topic
`<application.id>-instances` (one partition): key = the process id, value = JSON
{"endpoint": "host:port"}, a tombstone when the instance closes cleanly. Every instance reads
the topic whole and keeps reading it. This works against any Kafka cluster: librdkafka gives
an application no way to put its own data in the group's member metadata (its assignors
own the subscription's user data), and a client id is no place for addresses. Endpoints of
instances that are not in the group are ignored, so an entry a crashed instance left behind
does no harm.

Standby placement (`num.standby.replicas` = N): the instances in the group are sorted by
process id; each takes standbys of the stateful tasks of the N instances after it in that
order (wrapping around; at most all the others), never of a task it runs itself. Every
instance computes this from the same description, so they agree without talking; each task
gets min(N, instances - 1) standbys, all on instances other than its own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from strom.streams.collector import close_client
from strom.streams.config import StreamsConfig
from strom.streams.topology import Topology

log = logging.getLogger(__name__)

REFRESH_S: Final = 1.0
DESCRIBE_TIMEOUT_S: Final = 10.0


def instances_topic(application_id: str) -> str:
    return f"{application_id}-instances"


def consumer_client_id(application_id: str, process_id: str, index: int) -> str:
    return f"{application_id}-{process_id}-{index}-consumer"


def process_of(client_id: str, application_id: str) -> str | None:
    """The process id in a stream thread consumer's client id (None: not one)."""
    prefix, suffix = f"{application_id}-", "-consumer"
    if not (client_id.startswith(prefix) and client_id.endswith(suffix)):
        return None
    middle = client_id[len(prefix):-len(suffix)]
    process, _, index = middle.rpartition("-")
    return process if process and index.isdigit() else None


def place_standbys(active: Mapping[str, Iterable[str]], replicas: int,
                   stateful: Callable[[str], bool]) -> dict[str, set[str]]:
    """Process id -> the task ids it keeps standbys of: with the processes sorted, each takes
    the stateful tasks of the `replicas` processes after it (wrapping around), never one of
    its own."""
    processes = sorted(active)
    placed: dict[str, set[str]] = {p: set() for p in processes}
    count = len(processes)
    for i, process in enumerate(processes):
        own = set(active[process])
        for step in range(1, min(replicas, count - 1) + 1):
            other = processes[(i + step) % count]
            placed[process].update(t for t in active[other] if stateful(t) and t not in own)
    return placed


@dataclass(frozen=True)
class GroupView:
    """The application's instances as one description of its group showed them."""

    active: dict[str, frozenset[str]] = field(default_factory=dict)  # process -> task ids
    standby: dict[str, frozenset[str]] = field(default_factory=dict)
    when: float = 0.0  # time.monotonic() of the description

    def owner(self, task_id: str) -> str | None:
        return next((p for p, tasks in self.active.items() if task_id in tasks), None)

    def standbys_of(self, task_id: str) -> list[str]:
        return sorted(p for p, tasks in self.standby.items() if task_id in tasks)


def view_of(description: Any, application_id: str, anchors: Mapping[str, int],
            replicas: int, stateful: Callable[[str], bool]) -> GroupView:
    """A GroupView from a ConsumerGroupDescription (anchors: anchor topic -> sub-topology)."""
    active: dict[str, set[str]] = {}
    for member in description.members:
        process = process_of(member.client_id or "", application_id)
        if process is None:
            continue
        tasks = active.setdefault(process, set())
        assignment = member.assignment
        for tp in (assignment.topic_partitions if assignment is not None else []):
            sub = anchors.get(tp.topic)
            if sub is not None:
                tasks.add(f"{sub}_{tp.partition}")
    standby = place_standbys(active, replicas, stateful) if replicas > 0 else {}
    return GroupView({p: frozenset(t) for p, t in active.items()},
                     {p: frozenset(t) for p, t in standby.items()}, time.monotonic())


class Membership:
    """Keeps a GroupView and the instances' endpoints up to date (one thread calls
    `refresh`; any thread reads `view` and `endpoints`)."""

    def __init__(self, topology: Topology, config: StreamsConfig, process_id: str,
                 endpoint: str | None, stateful: Callable[[str], bool]) -> None:
        self.config = config
        self.app = config.application_id
        self.process_id = process_id
        self.endpoint = endpoint
        self.stateful = stateful
        self.anchors = {topology.physical(self.app, sub.source_topics[0]): sub.id
                        for sub in topology.sub_topologies()}
        self.view = GroupView()
        self.endpoints: dict[str, str] = {process_id: endpoint} if endpoint else {}
        self.admin = AdminClient({**config.client_settings("admin"),
                                  "client.id": f"{self.app}-{process_id}-admin"})
        self._due = 0.0
        self._topic = instances_topic(self.app)
        self._reader: Consumer | None = None
        self._writer: Producer | None = None
        if endpoint is not None:
            plain = {**config.client_settings("consumer"), "enable.auto.commit": False,
                     "group.id": f"{self.app}-instances-{process_id}",
                     "client.id": f"{self.app}-{process_id}-instances-consumer"}
            self._reader = Consumer(plain)
            self._reader.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
            self._writer = Producer({**config.client_settings("producer"),
                                     "client.id": f"{self.app}-{process_id}-instances"})
            self._publish(json.dumps({"endpoint": endpoint}).encode())

    def _publish(self, value: bytes | None) -> None:
        assert self._writer is not None
        self._writer.produce(self._topic, key=self.process_id.encode(), value=value,
                             partition=0)
        if self._writer.flush(DESCRIBE_TIMEOUT_S):
            log.warning("could not publish this instance's endpoint in %s", self._topic)

    def refresh_soon(self) -> None:
        """Describe the group at the next `refresh` (this instance's tasks changed)."""
        self._due = 0.0

    def refresh(self) -> bool:
        """Reads new endpoints; describes the group when due. True if the view changed."""
        self._read_endpoints()
        now = time.monotonic()
        if now < self._due:
            return False
        self._due = now + REFRESH_S
        try:
            future = self.admin.describe_consumer_groups([self.app])[self.app]
            description = future.result(DESCRIBE_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("describing the group %s failed: %s", self.app, exc)
            return False
        if not str(description.state).upper().endswith("STABLE"):
            self._due = now + 0.2  # a rebalance: look again soon
            return False
        view = view_of(description, self.app, self.anchors,
                       self.config.num_standby_replicas, self.stateful)
        changed = (view.active, view.standby) != (self.view.active, self.view.standby)
        self.view = view
        return changed

    def _read_endpoints(self) -> None:
        if self._reader is None:
            return
        for message in self._reader.consume(100, 0):
            if message.error() is not None or message.key() is None:
                continue
            process = (message.key() or b"").decode()
            value = message.value()
            if value is None:
                self.endpoints.pop(process, None)
                continue
            try:
                endpoint = json.loads(value)["endpoint"]
            except (ValueError, KeyError, TypeError):
                continue
            self.endpoints[process] = str(endpoint)

    def close(self, clean: bool = True) -> None:
        if self._writer is not None and clean:
            self._publish(None)  # a tombstone: this instance is gone
        if self._writer is not None:
            close_client(self._writer)
        if self._reader is not None:
            self._reader.close()
