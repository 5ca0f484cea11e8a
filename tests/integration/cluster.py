"""Three strom brokers in this process sharing one PostgreSQL database: the cluster the
client-level cluster tests (test_cluster_*.py) run real clients against.

    with Cluster(postgres_server.new_database()) as cluster:
        cluster.wait_whole()
        producer(cluster.bootstrap) ...
        cluster.stop(2)        # a clean stop: its leases are handed over
        cluster.restart(2)

Each broker is an `EmbeddedBroker` with `node.id` 1, 2 or 3, short heartbeats (300 ms) and
sessions (2 s) so that leases move within seconds, and the group settings of the group tests.
Metadata, FindCoordinator and the like are asked with strom's own Kafka client
(`strom.protocol.client.KafkaConnection`) where the test needs fields that the client libraries
do not expose (leader epochs, the coordinator of a key as each broker answers it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

from strom.coordinator.hashing import partition_for
from strom.coordinator.internal_topics import OFFSETS_TOPIC, TXN_TOPIC
from strom.protocol.client import KafkaConnection
from strom.protocol.messages import RequestBuilder
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, unique_name
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

NODES: Final = (1, 2, 3)
CLUSTER_SETTINGS: Final[Mapping[str, str]] = {
    **GROUP_BROKER_SETTINGS,
    "broker.heartbeat.interval.ms": "300",
    "broker.session.timeout.ms": "2000",
    "group.consumer.heartbeat.interval.ms": "300",
    "group.consumer.session.timeout.ms": "6000",
}
METADATA, FIND_COORDINATOR = 3, 10
GROUP_KEY, TXN_KEY = 0, 1  # FindCoordinator key types
INTERNAL_PARTITIONS: Final = 50  # offsets.topic.num.partitions, transaction.state.log...


def eventually(check: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S,
               interval_s: float = 0.1) -> None:
    """Polls `check` until it holds; fails with `what` after `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(interval_s)


class Cluster:
    """The three brokers; `urls` gives a node its own storage URL (e.g. through a proxy)."""

    def __init__(self, url: str, settings: Mapping[str, str] | None = None,
                 urls: Mapping[int, str] | None = None) -> None:
        self.url = url
        self.brokers: dict[int, EmbeddedBroker] = {
            node: EmbeddedBroker(
                storage=(urls or {}).get(node, url),
                settings={**CLUSTER_SETTINGS, **(settings or {}), "node.id": str(node)})
            for node in NODES}
        self.stopped: set[int] = set()
        self.ports: dict[int, int] = {}  # kept while a broker is stopped

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> Cluster:
        try:
            for node, broker in self.brokers.items():
                broker.start()
                self.ports[node] = broker.port
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for broker in self.brokers.values():
            broker.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def stop(self, node: int) -> None:
        """A clean stop (the SIGTERM path: leases handed over, session ended)."""
        self.brokers[node].stop()
        self.stopped.add(node)

    def restart(self, node: int) -> None:
        """Starts a stopped broker again on its port."""
        self.brokers[node].start()
        self.stopped.discard(node)

    # -- addresses -------------------------------------------------------------------------

    def running(self) -> list[int]:
        return [n for n in NODES if n not in self.stopped]

    def port(self, node: int) -> int:
        return self.ports[node]

    def address(self, node: int) -> str:
        return f"127.0.0.1:{self.ports[node]}"

    @property
    def bootstrap(self) -> str:
        """Every broker's address (stopped ones too: a client's bootstrap list stays fixed)."""
        return ",".join(self.address(node) for node in NODES)

    # -- asking one broker -----------------------------------------------------------------------

    def ask(self, node: int, api_key: int, max_version: int,
            build: Callable[[RequestBuilder], Any]) -> Any:
        """One request to `node` on a new connection with strom's Kafka client."""
        async def main() -> Any:
            connection = await KafkaConnection.open("127.0.0.1", self.port(node), "cluster-test",
                                                    connect_timeout_s=5, request_timeout_s=10)
            try:
                version = connection.version_for(api_key, max_version)
                return await connection.request(build(RequestBuilder(api_key, version)))
            finally:
                await connection.close()

        return asyncio.run(main())

    def metadata(self, node: int, topics: Sequence[str] | None = None) -> Any:
        """Node's Metadata answer (v12 at most) for `topics` (None: every topic)."""
        return self.ask(node, METADATA, 12, lambda b: b.make(
            "MetadataRequest", allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
            include_cluster_authorized_operations=False,
            topics=None if topics is None else tuple(
                b.make("MetadataRequestTopic", name=n, topic_id=None) for n in topics)))

    def partitions(self, node: int, topic: str) -> dict[int, Any]:
        """{partition index: Metadata's partition entry} of `topic` as `node` answers it."""
        answer = self.metadata(node, [topic])
        (entry,) = answer.topics
        return {int(p.partition_index): p for p in entry.partitions}

    def leaders(self, node: int, topic: str) -> dict[int, int]:
        """{partition: leader id (-1: none)} of `topic` as `node` answers it."""
        return {i: int(p.leader_id) for i, p in self.partitions(node, topic).items()}

    def coordinators(self, node: int, keys: Sequence[str], key_type: int = GROUP_KEY
                     ) -> dict[str, int]:
        """{key: coordinator node id (-1 with an error)} as `node` answers FindCoordinator."""
        answer = self.ask(node, FIND_COORDINATOR, 4, lambda b: b.make(
            "FindCoordinatorRequest", key_type=key_type, coordinator_keys=tuple(keys)))
        return {c.key: (int(c.node_id) if int(c.error_code) == 0 else -1)
                for c in answer.coordinators}

    def listed(self, node: int) -> list[int]:
        return sorted(int(b.node_id) for b in self.metadata(node, []).brokers)

    # -- waiting for the cluster -------------------------------------------------------------------

    def whole(self, topics: Iterable[str] = ()) -> bool:
        """Every running broker lists exactly the running brokers, and all of them name the
        same leader, a running broker, for every partition of `topics` and of
        __consumer_offsets."""
        running = self.running()
        names = [OFFSETS_TOPIC, *topics]
        views = []
        for node in running:
            if self.listed(node) != running:
                return False
            view = {name: self.leaders(node, name) for name in names}
            if any(leader not in running for leaders in view.values()
                   for leader in leaders.values()):
                return False
            views.append(view)
        return all(v == views[0] for v in views)

    def wait_whole(self, topics: Iterable[str] = (), deadline_s: float = DEADLINE_S) -> float:
        """Waits until `whole`; returns how long that took."""
        started = time.monotonic()
        names = list(topics)
        eventually(lambda: self.whole(names),
                   f"the cluster never became whole again with {self.running()} running",
                   deadline_s, interval_s=0.2)
        return time.monotonic() - started

    # -- topics and keys ------------------------------------------------------------------------

    def spread_topic(self, prefix: str, partitions: int = 6) -> str:
        """A new topic whose partitions are led by every running broker: placement hashes
        partition ids, so a few partitions may by chance all land on two brokers; then
        another topic is made (each try has a chance of about 3 * (2/3)^partitions to miss)."""
        for _ in range(10):
            name = create_topic(self.address(self.running()[0]), unique_name(prefix),
                                partitions)
            self.wait_whole([name])
            if set(self.leaders(self.running()[0], name).values()) == set(self.running()):
                return name
        raise AssertionError(f"10 topics of {partitions} partitions all missed a broker")

    def key_on(self, prefix: str, node: int, key_type: int = GROUP_KEY) -> str:
        """A new group (or transactional) id whose coordinator is `node`."""
        topic = OFFSETS_TOPIC if key_type == GROUP_KEY else TXN_TOPIC
        leaders = self.leaders(self.running()[0], topic)
        for _ in range(200):
            key = unique_name(prefix)
            if leaders[partition_for(key, INTERNAL_PARTITIONS)] == node:
                return key
        raise AssertionError(f"no {prefix} id hashes to a shard led by node {node}")

    def ensure_txn_topic(self) -> None:
        """__transaction_state is created by the first FindCoordinator of a transactional
        id; waits until every running broker agrees on its leaders."""
        probe = unique_name("probe")
        eventually(lambda: self.coordinators(self.running()[0], [probe], TXN_KEY)[probe] != -1,
                   "no transaction coordinator")
        self.wait_whole([TXN_TOPIC])

    # -- where keys live ---------------------------------------------------------------------

    def coordinator_of(self, key: str, key_type: int = GROUP_KEY) -> int:
        """The node leading the internal partition that `key` hashes to (what FindCoordinator
        should answer), as the first running broker's Metadata says."""
        topic = OFFSETS_TOPIC if key_type == GROUP_KEY else TXN_TOPIC
        return self.leaders(self.running()[0], topic)[partition_for(key, INTERNAL_PARTITIONS)]
