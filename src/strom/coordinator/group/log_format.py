"""Kafka's `__consumer_offsets` record formats, byte for byte, so Kafka's tools can read our log.

Keys and values start with an int16 version. Keys: OffsetCommitKey v0/v1 (group, topic,
partition) and GroupMetadataKey v2 (group). Values: OffsetCommitValue v0-v4 and
GroupMetadataValue v0-v4 are read; v3 of each is written (v4 is the flexible encoding).
A tombstone (null value) deletes the key. Decoding checks every length against the bytes left
and raises `LogFormatError` for anything it cannot read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from strom.coordinator.log_codec import LogFormatError, LogReader, legacy_string

OFFSET_COMMIT_KEY_VERSION: Final = 1
GROUP_METADATA_KEY_VERSION: Final = 2
OFFSET_COMMIT_VALUE_VERSION: Final = 3
GROUP_METADATA_VALUE_VERSION: Final = 3


@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group_id: str


@dataclass(frozen=True, slots=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int
    expire_timestamp_ms: int = -1


@dataclass(frozen=True, slots=True)
class MemberMetadataValue:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    protocol_type: str
    generation_id: int
    protocol_name: str | None
    leader_id: str | None
    current_state_timestamp_ms: int
    members: tuple[MemberMetadataValue, ...]


# -- encoding (legacy, non-flexible versions) ---------------------------------------------


def _string(value: str | None) -> bytes:
    return struct.pack(">h", -1) if value is None else legacy_string(value)


def _bytes(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


def encode_offset_commit_key(key: OffsetCommitKey) -> bytes:
    return (struct.pack(">h", OFFSET_COMMIT_KEY_VERSION) + _string(key.group_id)
            + _string(key.topic) + struct.pack(">i", key.partition))


def encode_group_metadata_key(key: GroupMetadataKey) -> bytes:
    return struct.pack(">h", GROUP_METADATA_KEY_VERSION) + _string(key.group_id)


def encode_offset_commit_value(value: OffsetCommitValue) -> bytes:
    return (struct.pack(">hqi", OFFSET_COMMIT_VALUE_VERSION, value.offset, value.leader_epoch)
            + _string(value.metadata) + struct.pack(">q", value.commit_timestamp_ms))


def _encode_member(member: MemberMetadataValue) -> bytes:
    return b"".join((
        _string(member.member_id), _string(member.group_instance_id),
        _string(member.client_id), _string(member.client_host),
        struct.pack(">ii", member.rebalance_timeout_ms, member.session_timeout_ms),
        _bytes(member.subscription), _bytes(member.assignment),
    ))


def encode_group_metadata_value(value: GroupMetadataValue) -> bytes:
    head = (struct.pack(">h", GROUP_METADATA_VALUE_VERSION) + _string(value.protocol_type)
            + struct.pack(">i", value.generation_id) + _string(value.protocol_name)
            + _string(value.leader_id) + struct.pack(">qi", value.current_state_timestamp_ms,
                                                     len(value.members)))
    return head + b"".join(_encode_member(member) for member in value.members)


# -- decoding ------------------------------------------------------------------------------


def _reader(buf: bytes, what: str, max_version: int, flexible_from: int) -> tuple[LogReader, int]:
    reader = LogReader(bytes(buf))
    version = reader.int16(f"{what} version")
    if not 0 <= version <= max_version:
        raise LogFormatError(f"{what}: unsupported version {version}")
    reader.flexible = version >= flexible_from
    return reader, version


def decode_key(buf: bytes) -> OffsetCommitKey | GroupMetadataKey:
    reader = LogReader(bytes(buf))
    version = reader.int16("key version")
    key: OffsetCommitKey | GroupMetadataKey
    if version in (0, 1):
        key = OffsetCommitKey(reader.string("group"), reader.string("topic"),
                              reader.int32("partition"))
    elif version == 2:
        key = GroupMetadataKey(reader.string("group"))
    else:
        raise LogFormatError(f"unsupported __consumer_offsets key version {version}")
    reader.end("key")
    return key


def decode_offset_commit_value(buf: bytes) -> OffsetCommitValue:
    reader, version = _reader(buf, "OffsetCommitValue", 4, 4)
    offset = reader.int64("offset")
    leader_epoch = reader.int32("leader_epoch") if version >= 3 else -1
    metadata = reader.string("metadata")
    commit_timestamp_ms = reader.int64("commit_timestamp")
    expire_timestamp_ms = reader.int64("expire_timestamp") if version == 1 else -1
    reader.skip_tagged_fields("OffsetCommitValue")
    reader.end("OffsetCommitValue")
    return OffsetCommitValue(offset, leader_epoch, metadata, commit_timestamp_ms,
                             expire_timestamp_ms)


def _decode_member(reader: LogReader, version: int) -> MemberMetadataValue:
    member_id = reader.string("member_id")
    group_instance_id = reader.nullable_string("group_instance_id") if version >= 3 else None
    client_id = reader.string("client_id")
    client_host = reader.string("client_host")
    rebalance_timeout_ms = reader.int32("rebalance_timeout") if version >= 1 else None
    session_timeout_ms = reader.int32("session_timeout")
    subscription = reader.bytes_("subscription")
    assignment = reader.bytes_("assignment")
    reader.skip_tagged_fields("MemberMetadata")
    if rebalance_timeout_ms is None:  # v0 had one timeout for both, as Kafka loads it
        rebalance_timeout_ms = session_timeout_ms
    return MemberMetadataValue(member_id, group_instance_id, client_id, client_host,
                               rebalance_timeout_ms, session_timeout_ms, subscription, assignment)


def decode_group_metadata_value(buf: bytes) -> GroupMetadataValue:
    reader, version = _reader(buf, "GroupMetadataValue", 4, 4)
    protocol_type = reader.string("protocol_type")
    generation_id = reader.int32("generation")
    protocol_name = reader.nullable_string("protocol")
    leader_id = reader.nullable_string("leader")
    current_state_timestamp_ms = reader.int64("current_state_timestamp") if version >= 2 else -1
    count = reader.array_count("members")
    members = tuple(_decode_member(reader, version) for _ in range(count))
    reader.skip_tagged_fields("GroupMetadataValue")
    reader.end("GroupMetadataValue")
    return GroupMetadataValue(protocol_type, generation_id, protocol_name, leader_id,
                              current_state_timestamp_ms, members)
