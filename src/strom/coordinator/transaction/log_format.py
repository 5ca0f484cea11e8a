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

from strom.coordinator.transaction.model import NO_PRODUCER_ID

KEY_VERSION: Final = 0
VALUE_VERSION: Final = 1
FLEXIBLE_FROM: Final = 1
CLIENT_TRANSACTION_VERSION: Final = 2  # KIP-890 part 2 semantics
MAX_TAGGED_FIELDS: Final = 1024
_TAG_PREVIOUS_PRODUCER_ID: Final = 0
_TAG_NEXT_PRODUCER_ID: Final = 1
_TAG_CLIENT_TRANSACTION_VERSION: Final = 2


class LogFormatError(ValueError):
    """The bytes are not a `__transaction_state` key or value this broker can read."""


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


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: str, flexible: bool) -> bytes:
    raw = value.encode()
    if len(raw) > 0x7FFF:
        raise LogFormatError(f"string of {len(raw)} bytes does not fit an int16 length")
    head = _uvarint(len(raw) + 1) if flexible else struct.pack(">h", len(raw))
    return head + raw


def _count(count: int, flexible: bool) -> bytes:
    return _uvarint(count + 1) if flexible else struct.pack(">i", count)


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
    return _uvarint(len(fields)) + b"".join(
        _uvarint(tag) + _uvarint(len(data)) + data for tag, data in fields)


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
            parts.append(_uvarint(0))
    parts.append(struct.pack(">qq", value.txn_last_update_timestamp_ms,
                             value.txn_start_timestamp_ms))
    if flexible:
        parts.append(_tagged_fields(value))
    return b"".join(parts)


# -- decoding ------------------------------------------------------------------------------


class _Reader:
    """Reads Kafka primitives from `buf`, checking each length against the bytes left."""

    __slots__ = ("buf", "flexible", "pos")

    def __init__(self, buf: bytes, flexible: bool = False) -> None:
        self.buf = buf
        self.pos = 0
        self.flexible = flexible

    def left(self) -> int:
        return len(self.buf) - self.pos

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or size > self.left():
            raise LogFormatError(f"{what}: needs {size} bytes, {self.left()} left")
        chunk = self.buf[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def fixed(self, fmt: str, what: str) -> int:
        value: int = struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]
        return value

    def uvarint(self, what: str) -> int:
        value = 0
        for shift in range(0, 35, 7):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise LogFormatError(f"{what}: unsigned varint longer than 5 bytes")

    def string(self, what: str) -> str:
        size = self.uvarint(what) - 1 if self.flexible else self.fixed(">h", what)
        if size < 0:
            raise LogFormatError(f"{what}: null where a string is required")
        try:
            return self.take(size, what).decode()
        except UnicodeDecodeError as exc:
            raise LogFormatError(f"{what}: not UTF-8 ({exc})") from None

    def count(self, what: str, min_element_bytes: int, nullable: bool = False) -> int:
        """An array count (-1 is null, read as empty when `nullable`), bounded by the bytes
        left: every element takes at least `min_element_bytes`."""
        count = self.uvarint(what) - 1 if self.flexible else self.fixed(">i", what)
        if count == -1 and nullable:
            return 0
        if count < 0 or count * min_element_bytes > self.left():
            raise LogFormatError(f"{what}: bad array count {count}")
        return count

    def end(self, what: str) -> None:
        if self.pos != len(self.buf):
            raise LogFormatError(f"{what}: {self.left()} trailing bytes")


def decode_key(buf: bytes) -> str:
    """The transactional id of a TransactionLogKey."""
    reader = _Reader(bytes(buf))
    version = reader.fixed(">h", "key version")
    if version != KEY_VERSION:
        raise LogFormatError(f"unsupported __transaction_state key version {version}")
    transactional_id = reader.string("transactional_id")
    reader.end("TransactionLogKey")
    return transactional_id


def _decode_partitions(reader: _Reader) -> tuple[tuple[str, tuple[int, ...]], ...]:
    topics = []
    # A topic entry is at least a string length and a count (3 bytes flexible, 6 legacy).
    for _ in range(reader.count("partitions", 3 if reader.flexible else 6, nullable=True)):
        topic = reader.string("topic")
        count = reader.count("partition_ids", 4)
        ids = struct.unpack(f">{count}i", reader.take(4 * count, "partition_ids"))
        if reader.flexible:
            _skip_tagged_fields(reader, {})
        topics.append((topic, tuple(ids)))
    return tuple(topics)


def _skip_tagged_fields(reader: _Reader, wanted: dict[int, bytes]) -> None:
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
    reader = _Reader(bytes(buf))
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
