"""Kafka's `__transaction_state` record formats, byte for byte.

Key: TransactionLogKey v0 (int16 version, string transactional id). Value: TransactionLogValue
v0 (legacy encoding) and v1 (flexible: compact strings and arrays, tagged fields
PreviousProducerId (tag 0), NextProducerId (tag 1), ClientTransactionVersion (tag 2)). Both are
read; v1 is written, as Kafka 4 does with transaction version 2. A tombstone (null value)
removes the transactional id. Decoding checks every length and count against the bytes left and
raises `LogFormatError` for anything it cannot read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from strom.coordinator.log_codec import MAX_TAGGED_FIELDS, LogFormatError, LogReader, uvarint
from strom.coordinator.transaction.model import NO_PRODUCER_ID

KEY_VERSION: Final = 0
VALUE_VERSION: Final = 1
FLEXIBLE_FROM: Final = 1
CLIENT_TRANSACTION_VERSION: Final = 2  # KIP-890 part 2 semantics
_TAG_PREVIOUS_PRODUCER_ID: Final = 0
_TAG_NEXT_PRODUCER_ID: Final = 1
_TAG_CLIENT_TRANSACTION_VERSION: Final = 2


@dataclass(frozen=True, slots=True)
class TransactionLogValue:
    producer_id: int
    producer_epoch: int
    txn_timeout_ms: int
    state_id: int
    partitions: tuple[tuple[str, tuple[int, ...]], ...]
    txn_last_update_timestamp_ms: int
    txn_start_timestamp_ms: int
    previous_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    client_transaction_version: int = 0


# -- encoding ------------------------------------------------------------------------------




def _string(value: str, flexible: bool) -> bytes:
    raw = value.encode()
    if len(raw) > 0x7FFF:
        raise LogFormatError(f"string of {len(raw)} bytes does not fit an int16 length")
    head = uvarint(len(raw) + 1) if flexible else struct.pack(">h", len(raw))
    return head + raw


def _count(count: int, flexible: bool) -> bytes:
    return uvarint(count + 1) if flexible else struct.pack(">i", count)


def encode_key(transactional_id: str) -> bytes:
    return struct.pack(">h", KEY_VERSION) + _string(transactional_id, False)


def _tagged_fields(value: TransactionLogValue) -> bytes:
    fields = []
    if value.previous_producer_id != NO_PRODUCER_ID:
        fields.append((_TAG_PREVIOUS_PRODUCER_ID, struct.pack(">q", value.previous_producer_id)))
    if value.next_producer_id != NO_PRODUCER_ID:
        fields.append((_TAG_NEXT_PRODUCER_ID, struct.pack(">q", value.next_producer_id)))
    if value.client_transaction_version != 0:
        fields.append((_TAG_CLIENT_TRANSACTION_VERSION,
                       struct.pack(">h", value.client_transaction_version)))
    return uvarint(len(fields)) + b"".join(
        uvarint(tag) + uvarint(len(data)) + data for tag, data in fields)


def encode_value(value: TransactionLogValue, version: int = VALUE_VERSION) -> bytes:
    if version not in (0, 1):
        raise LogFormatError(f"cannot write TransactionLogValue v{version}")
    flexible = version >= FLEXIBLE_FROM
    parts = [struct.pack(">hqhib", version, value.producer_id, value.producer_epoch,
                         value.txn_timeout_ms, value.state_id),
             _count(len(value.partitions), flexible)]
    for topic, partition_ids in value.partitions:
        parts.append(_string(topic, flexible))
        parts.append(_count(len(partition_ids), flexible))
        parts.append(struct.pack(f">{len(partition_ids)}i", *partition_ids))
        if flexible:
            parts.append(uvarint(0))
    parts.append(struct.pack(">qq", value.txn_last_update_timestamp_ms,
                             value.txn_start_timestamp_ms))
    if flexible:
        parts.append(_tagged_fields(value))
    return b"".join(parts)


# -- decoding ------------------------------------------------------------------------------


def decode_key(buf: bytes) -> str:
    """The transactional id of a TransactionLogKey."""
    reader = LogReader(bytes(buf))
    version = reader.fixed(">h", "key version")
    if version != KEY_VERSION:
        raise LogFormatError(f"unsupported __transaction_state key version {version}")
    transactional_id = reader.string("transactional_id")
    reader.end("TransactionLogKey")
    return transactional_id


def _decode_partitions(reader: LogReader) -> tuple[tuple[str, tuple[int, ...]], ...]:
    topics = []
    # A topic entry is at least a string length and a count (3 bytes flexible, 6 legacy).
    for _ in range(reader.array_count("partitions", 3 if reader.flexible else 6, nullable=True)):
        topic = reader.string("topic")
        count = reader.array_count("partition_ids", 4)
        ids = struct.unpack(f">{count}i", reader.take(4 * count, "partition_ids"))
        if reader.flexible:
            _skip_tagged_fields(reader, {})
        topics.append((topic, tuple(ids)))
    return tuple(topics)


def _skip_tagged_fields(reader: LogReader, wanted: dict[int, bytes]) -> None:
    """Reads a tagged-field section; the data of tags in `wanted` is stored there."""
    count = reader.uvarint("tagged fields")
    if count > MAX_TAGGED_FIELDS:
        raise LogFormatError(f"{count} tagged fields")
    for _ in range(count):
        tag = reader.uvarint("tag")
        data = reader.take(reader.uvarint("tag size"), "tag data")
        wanted[tag] = data


def _tag_int(tags: dict[int, bytes], tag: int, fmt: str, default: int) -> int:
    data = tags.get(tag)
    if data is None:
        return default
    if len(data) != struct.calcsize(fmt):
        raise LogFormatError(f"tagged field {tag}: {len(data)} bytes")
    value: int = struct.unpack(fmt, data)[0]
    return value


def decode_value(buf: bytes) -> TransactionLogValue:
    reader = LogReader(bytes(buf))
    version = reader.fixed(">h", "value version")
    if version not in (0, 1):
        raise LogFormatError(f"unsupported TransactionLogValue version {version}")
    reader.flexible = version >= FLEXIBLE_FROM
    producer_id = reader.fixed(">q", "producer_id")
    producer_epoch = reader.fixed(">h", "producer_epoch")
    txn_timeout_ms = reader.fixed(">i", "txn_timeout_ms")
    state_id = reader.fixed(">b", "state")
    partitions = _decode_partitions(reader)
    last_update = reader.fixed(">q", "txn_last_update_timestamp")
    start = reader.fixed(">q", "txn_start_timestamp")
    tags: dict[int, bytes] = {}
    if reader.flexible:
        _skip_tagged_fields(reader, tags)
    reader.end("TransactionLogValue")
    return TransactionLogValue(
        producer_id, producer_epoch, txn_timeout_ms, state_id, partitions, last_update, start,
        _tag_int(tags, _TAG_PREVIOUS_PRODUCER_ID, ">q", NO_PRODUCER_ID),
        _tag_int(tags, _TAG_NEXT_PRODUCER_ID, ">q", NO_PRODUCER_ID),
        _tag_int(tags, _TAG_CLIENT_TRANSACTION_VERSION, ">h", 0))
