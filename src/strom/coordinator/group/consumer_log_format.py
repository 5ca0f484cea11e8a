"""Kafka's `__consumer_offsets` records of KIP-848 consumer groups (key versions 3-8).

The key version is the record type; keys are non-flexible (int16 version, group id as an int16
string, then the member id for per-member records). Values are version 0 in the flexible
encoding (compact strings and arrays, tagged fields after every struct), as Kafka 3.8+ writes
them:

  3 ConsumerGroupMetadata               Epoch int32
  4 ConsumerGroupPartitionMetadata      Topics [TopicId uuid, TopicName, NumPartitions int32,
                                        PartitionMetadata [Partition int32, Racks [string]]]
  5 ConsumerGroupMemberMetadata         InstanceId?, RackId?, ClientId, ClientHost,
                                        SubscribedTopicNames [string], SubscribedTopicRegex?,
                                        ServerAssignor?, RebalanceTimeoutMs int32
  6 ConsumerGroupTargetAssignmentMetadata  AssignmentEpoch int32
  7 ConsumerGroupTargetAssignmentMember    TopicPartitions [TopicId uuid, Partitions [int32]]
  8 ConsumerGroupCurrentMemberAssignment   MemberEpoch int32, PreviousMemberEpoch int32,
                                        State int8, AssignedPartitions [TopicPartitions],
                                        PartitionsPendingRevocation [TopicPartitions]

A null value is a tombstone. Decoding checks every length and raises `LogFormatError`.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from strom.coordinator.log_codec import LogFormatError, LogReader, legacy_string, uvarint

GROUP_METADATA: Final = 3
PARTITION_METADATA: Final = 4
MEMBER_METADATA: Final = 5
TARGET_ASSIGNMENT_METADATA: Final = 6
TARGET_ASSIGNMENT_MEMBER: Final = 7
CURRENT_MEMBER_ASSIGNMENT: Final = 8
CONSUMER_KEY_VERSIONS: Final = frozenset(range(GROUP_METADATA, CURRENT_MEMBER_ASSIGNMENT + 1))
_MEMBER_KEYS: Final = frozenset({MEMBER_METADATA, TARGET_ASSIGNMENT_MEMBER,
                                 CURRENT_MEMBER_ASSIGNMENT})
VALUE_VERSION: Final = 0

# Kafka's MemberState bytes
STATE_STABLE: Final = 0
STATE_UNREVOKED_PARTITIONS: Final = 1
STATE_UNRELEASED_PARTITIONS: Final = 2

TopicPartitions = tuple[tuple[uuid.UUID, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class ConsumerKey:
    """Key of record type `kind` (3-8); `member_id` is set for types 5, 7 and 8 only."""

    kind: int
    group_id: str
    member_id: str | None = None


@dataclass(frozen=True, slots=True)
class GroupEpochValue:
    epoch: int


@dataclass(frozen=True, slots=True)
class TopicMetadataValue:
    topic_id: uuid.UUID
    name: str
    partitions: int


@dataclass(frozen=True, slots=True)
class PartitionMetadataValue:
    topics: tuple[TopicMetadataValue, ...]


@dataclass(frozen=True, slots=True)
class MemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    server_assignor: str | None
    rebalance_timeout_ms: int


@dataclass(frozen=True, slots=True)
class AssignmentEpochValue:
    epoch: int


@dataclass(frozen=True, slots=True)
class TargetMemberValue:
    partitions: TopicPartitions


@dataclass(frozen=True, slots=True)
class CurrentAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int
    assigned: TopicPartitions
    pending_revocation: TopicPartitions


ConsumerValue = (GroupEpochValue | PartitionMetadataValue | MemberMetadataValue
                 | AssignmentEpochValue | TargetMemberValue | CurrentAssignmentValue)

_KINDS: Final[dict[type, int]] = {
    GroupEpochValue: GROUP_METADATA, PartitionMetadataValue: PARTITION_METADATA,
    MemberMetadataValue: MEMBER_METADATA, AssignmentEpochValue: TARGET_ASSIGNMENT_METADATA,
    TargetMemberValue: TARGET_ASSIGNMENT_MEMBER,
    CurrentAssignmentValue: CURRENT_MEMBER_ASSIGNMENT,
}


def kind_of(value: ConsumerValue) -> int:
    return _KINDS[type(value)]


# -- encoding ------------------------------------------------------------------------------






def _cstring(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    raw = value.encode()
    return uvarint(len(raw) + 1) + raw


def _carray(items: Iterable[bytes]) -> bytes:
    parts = list(items)
    return uvarint(len(parts) + 1) + b"".join(parts)


_NO_TAGS: Final = b"\x00"


def _topic_partitions(value: TopicPartitions) -> bytes:
    return _carray(topic.bytes + _carray(struct.pack(">i", p) for p in partitions) + _NO_TAGS
                   for topic, partitions in value)


def encode_key(key: ConsumerKey) -> bytes:
    if key.kind not in CONSUMER_KEY_VERSIONS:
        raise LogFormatError(f"not a consumer group record type: {key.kind}")
    out = struct.pack(">h", key.kind) + legacy_string(key.group_id)
    if key.kind in _MEMBER_KEYS:
        if key.member_id is None:
            raise LogFormatError(f"record type {key.kind} needs a member id")
        out += legacy_string(key.member_id)
    return out


def _encode_body(value: ConsumerValue) -> bytes:
    if isinstance(value, GroupEpochValue | AssignmentEpochValue):
        return struct.pack(">i", value.epoch)
    if isinstance(value, PartitionMetadataValue):
        return _carray(t.topic_id.bytes + _cstring(t.name) + struct.pack(">i", t.partitions)
                       + _carray(()) + _NO_TAGS for t in value.topics)
    if isinstance(value, MemberMetadataValue):
        return b"".join((
            _cstring(value.instance_id), _cstring(value.rack_id), _cstring(value.client_id),
            _cstring(value.client_host),
            _carray(_cstring(name) for name in value.subscribed_topic_names),
            _cstring(value.subscribed_topic_regex), _cstring(value.server_assignor),
            struct.pack(">i", value.rebalance_timeout_ms)))
    if isinstance(value, TargetMemberValue):
        return _topic_partitions(value.partitions)
    return (struct.pack(">iib", value.member_epoch, value.previous_member_epoch, value.state)
            + _topic_partitions(value.assigned) + _topic_partitions(value.pending_revocation))


def encode_value(value: ConsumerValue) -> bytes:
    return struct.pack(">h", VALUE_VERSION) + _encode_body(value) + _NO_TAGS


# -- decoding ------------------------------------------------------------------------------


def key_version(buf: bytes) -> int:
    """The key's version (record type), or -1 if it has fewer than two bytes."""
    if len(buf) < 2:
        return -1
    version: int = struct.unpack_from(">h", buf)[0]
    return version


def decode_key(buf: bytes) -> ConsumerKey:
    reader = LogReader(bytes(buf))
    kind = reader.int16("key version")
    if kind not in CONSUMER_KEY_VERSIONS:
        raise LogFormatError(f"not a consumer group key version: {kind}")
    group_id = reader.string("group")
    member_id = reader.string("member") if kind in _MEMBER_KEYS else None
    reader.end("key")
    return ConsumerKey(kind, group_id, member_id)


def _uuid(reader: LogReader, what: str) -> uuid.UUID:
    return uuid.UUID(bytes=reader.take(16, what))


def _int8(reader: LogReader, what: str) -> int:
    value: int = struct.unpack(">b", reader.take(1, what))[0]
    return value


def _read_topic_partitions(reader: LogReader, what: str) -> TopicPartitions:
    out = []
    for _ in range(reader.array_count(what)):
        topic = _uuid(reader, f"{what} topic id")
        partitions = tuple(reader.int32(f"{what} partition")
                           for _ in range(reader.array_count(f"{what} partitions")))
        reader.skip_tagged_fields(what)
        out.append((topic, partitions))
    return tuple(out)


def _read_partition_metadata(reader: LogReader) -> PartitionMetadataValue:
    topics = []
    for _ in range(reader.array_count("topics")):
        topic_id = _uuid(reader, "topic id")
        name = reader.string("topic name")
        partitions = reader.int32("partitions")
        if partitions < 0:
            raise LogFormatError(f"topic {name}: {partitions} partitions")
        for _ in range(reader.array_count("partition metadata")):
            reader.int32("partition")
            for _ in range(reader.array_count("racks")):
                reader.string("rack")
            reader.skip_tagged_fields("partition metadata")
        reader.skip_tagged_fields("topic metadata")
        topics.append(TopicMetadataValue(topic_id, name, partitions))
    return PartitionMetadataValue(tuple(topics))


def _read_member_metadata(reader: LogReader) -> MemberMetadataValue:
    instance_id = reader.nullable_string("instance id")
    rack_id = reader.nullable_string("rack id")
    client_id = reader.string("client id")
    client_host = reader.string("client host")
    names = tuple(reader.string("subscribed topic")
                  for _ in range(reader.array_count("subscribed topics")))
    regex = reader.nullable_string("subscribed regex")
    assignor = reader.nullable_string("server assignor")
    timeout = reader.int32("rebalance timeout")
    return MemberMetadataValue(instance_id, rack_id, client_id, client_host, names, regex,
                               assignor, timeout)


def _read_current(reader: LogReader) -> CurrentAssignmentValue:
    epoch = reader.int32("member epoch")
    previous = reader.int32("previous member epoch")
    state = _int8(reader, "state")
    assigned = _read_topic_partitions(reader, "assigned partitions")
    pending = _read_topic_partitions(reader, "partitions pending revocation")
    return CurrentAssignmentValue(epoch, previous, state, assigned, pending)


def decode_value(kind: int, buf: bytes) -> ConsumerValue:
    """The value of a record whose key has version (type) `kind`."""
    reader = LogReader(bytes(buf))
    version = reader.int16("value version")
    if version != VALUE_VERSION:
        raise LogFormatError(f"record type {kind}: unsupported value version {version}")
    reader.flexible = True
    value: ConsumerValue
    if kind == GROUP_METADATA:
        value = GroupEpochValue(reader.int32("epoch"))
    elif kind == PARTITION_METADATA:
        value = _read_partition_metadata(reader)
    elif kind == MEMBER_METADATA:
        value = _read_member_metadata(reader)
    elif kind == TARGET_ASSIGNMENT_METADATA:
        value = AssignmentEpochValue(reader.int32("assignment epoch"))
    elif kind == TARGET_ASSIGNMENT_MEMBER:
        value = TargetMemberValue(_read_topic_partitions(reader, "target partitions"))
    elif kind == CURRENT_MEMBER_ASSIGNMENT:
        value = _read_current(reader)
    else:
        raise LogFormatError(f"not a consumer group record type: {kind}")
    reader.skip_tagged_fields(f"record type {kind}")
    reader.end(f"record type {kind}")
    return value
