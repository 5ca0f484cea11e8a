"""Creating an internal topic (`__consumer_offsets`, `__transaction_state`) for its
coordinator: its partition count and configs, and a replication factor of
min(offsets.topic.replication.factor / transaction.state.log.replication.factor, the live
brokers).

Kafka refuses to create the topic until that many brokers are live (COORDINATOR_NOT_AVAILABLE
meanwhile); strom must also work with one broker, and its replicas are a line of succession
for a lease, not copies that need brokers to hold them (the storage keeps the data), so it
creates the topic at once with as many replicas as there are live brokers, up to the
setting. Like any topic's, the replication factor stays what it was created with.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

from strom.storage.api import StorageEngine, TopicExists

log = logging.getLogger(__name__)


async def live_broker_count(engine: StorageEngine, node_id: int) -> int:
    """The live brokers, this one always counted (it may not be registered yet: the
    coordinators start before the broker registers)."""
    return len({node_id} | {b.node_id for b in await engine.brokers()})


async def create_internal_topic(engine: StorageEngine, name: str, partitions: int,
                                configs: Mapping[str, str], node_id: int,
                                replication_factor: int) -> None:
    """Creates `name` unless it exists (another broker may create it meanwhile: not an
    error). Raises StorageError or OSError if the engine cannot create it."""
    live = await live_broker_count(engine, node_id)
    replicas = max(1, min(replication_factor, live))
    with contextlib.suppress(TopicExists):
        await engine.create_topic(name, partitions, configs, replicas)
        if replicas < replication_factor:
            log.info("created %s with replication factor %d: %d broker(s) live, fewer than "
                     "the %d asked for", name, replicas, live, replication_factor)
