"""Kafka's internal topics: which they are, who owns them, and what clients may do to them.

`__consumer_offsets` belongs to the group coordinator and `__transaction_state` to the
transaction coordinator. Each is created by its coordinator alone, with its own partition
count (offsets.topic.num.partitions, transaction.state.log.num.partitions), replication
factor (offsets.topic.replication.factor, transaction.state.log.replication.factor, at most
the live brokers: broker/internal_topic_create.py) and configs, and
the coordinator maps a group or transactional id to a partition by the topic's actual
partition count (Kafka reads it at start-up), so an existing topic with another count works.

Kafka's own broker lets an admin client delete, grow or reconfigure these topics, and each of
those breaks the coordinator for good (a deleted `__consumer_offsets` came back with one
partition; a grown one moves groups away from their committed offsets). strom refuses them
with the error code Kafka uses for what its broker does refuse on internal topics:

| request | answer |
|---|---|
| Metadata naming a missing one | UNKNOWN_TOPIC_OR_PARTITION (never auto-created) |
| CreateTopics | TOPIC_ALREADY_EXISTS if it exists, else INVALID_REQUEST (as `__cluster_metadata`) |
| DeleteTopics | INVALID_TOPIC_EXCEPTION (as Produce and DeleteRecords on internal topics) |
| CreatePartitions | INVALID_PARTITIONS |
| AlterConfigs, IncrementalAlterConfigs | INVALID_CONFIG if cleanup.policy would not be `compact` |
| Produce, DeleteRecords | INVALID_TOPIC_EXCEPTION (Kafka's ReplicaManager) |

Reading them (Fetch, ListOffsets, DescribeConfigs) is allowed, as in Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

OFFSETS_TOPIC: Final = "__consumer_offsets"
TXN_TOPIC: Final = "__transaction_state"
SHARE_STATE_TOPIC: Final = "__share_group_state"
CLUSTER_METADATA_TOPIC: Final = "__cluster_metadata"

# org.apache.kafka.common.internals.Topic.INTERNAL_TOPICS (Kafka 4.x).
INTERNAL_TOPICS: Final = frozenset({OFFSETS_TOPIC, TXN_TOPIC, SHARE_STATE_TOPIC})
# Names no client may create: the internal topics and KRaft's metadata log.
RESERVED_TOPICS: Final = INTERNAL_TOPICS | {CLUSTER_METADATA_TOPIC}

_SEGMENT_BYTES: Final = str(100 * 2**20)  # offsets.topic.segment.bytes' default
# GroupCoordinatorService.groupMetadataTopicConfigs
OFFSETS_TOPIC_CONFIGS: Final[Mapping[str, str]] = {
    "cleanup.policy": "compact", "segment.bytes": _SEGMENT_BYTES}
# TransactionStateManager.transactionTopicConfigs (minus the replication settings)
TXN_TOPIC_CONFIGS: Final[Mapping[str, str]] = {
    "cleanup.policy": "compact", "segment.bytes": _SEGMENT_BYTES}
REQUIRED_CLEANUP_POLICY: Final = "compact"

# The coordinator owning each topic, for messages.
OWNERS: Final[Mapping[str, str]] = {
    OFFSETS_TOPIC: "the group coordinator", TXN_TOPIC: "the transaction coordinator"}
PARTITION_SETTINGS: Final[Mapping[str, str]] = {
    OFFSETS_TOPIC: "offsets.topic.num.partitions",
    TXN_TOPIC: "transaction.state.log.num.partitions"}
REPLICATION_SETTINGS: Final[Mapping[str, str]] = {
    OFFSETS_TOPIC: "offsets.topic.replication.factor",
    TXN_TOPIC: "transaction.state.log.replication.factor"}


def is_internal(name: str) -> bool:
    return name in INTERNAL_TOPICS


def _owner(name: str) -> str:
    return OWNERS.get(name, "no coordinator of this broker")


def creation_refusal(name: str) -> str | None:
    """Why CreateTopics (or auto-creation) may not create `name`; None if it may."""
    if name == CLUSTER_METADATA_TOPIC:
        return f"Creation of internal topic {name} is prohibited."
    if name in INTERNAL_TOPICS:
        return (f"Creation of internal topic {name} is prohibited: it is created by "
                f"{_owner(name)} with its own settings.")
    return None


def deletion_refusal(name: str) -> str | None:
    if name in INTERNAL_TOPICS:
        return (f"Topic {name} is an internal topic of {_owner(name)} and cannot be "
                "deleted.")
    return None


def growth_refusal(name: str) -> str | None:
    if name in INTERNAL_TOPICS:
        return (f"The partition count of internal topic {name} cannot change: "
                f"{_owner(name)} maps ids to its partitions by that count.")
    return None


def config_refusal(name: str, overrides: Mapping[str, str], default_cleanup_policy: str,
                   ) -> str | None:
    """Why `overrides` (a topic's complete new overrides) would make the internal topic
    `name` unusable for its coordinator; None if they would not (or it is not internal)."""
    if name not in INTERNAL_TOPICS:
        return None
    policy = overrides.get("cleanup.policy", default_cleanup_policy)
    if {p.strip() for p in policy.split(",")} != {REQUIRED_CLEANUP_POLICY}:
        return (f"Internal topic {name} needs cleanup.policy={REQUIRED_CLEANUP_POLICY}, not "
                f"{policy!r}: {_owner(name)} keeps its state there.")
    return None
