"""The messages of a foreign-key join (KIP-213): the subscriptions a left row sends to the
right side and the right side's answers, with their serdes, and the hash of a left value that
tells a stale answer from a current one. See `fk_join` for the protocol.

Subscriptions and answers carry bytes (keys and values as the tables' serdes write them). The
hash is BLAKE2b-128 of the serialized left value (Kafka uses Murmur3-128; the internal topics
are private to the application, so the two need not agree).
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Final

from strom.streams.serdes import Serde, SerializationError
from strom.streams.stores.api import serialized

_VERSION: Final = 0
_HEAD: Final = struct.Struct(">BBB")  # version, instruction (or 0), flags
_PARTITION: Final = struct.Struct(">i")
_HAS_HASH: Final = 1
_HAS_VALUE: Final = 2
_HASH_SIZE: Final = 16


class Instruction(enum.IntEnum):
    """What the right side does with a subscription (Kafka's SubscriptionWrapper.Instruction)."""

    DELETE_KEY_NO_PROPAGATE = 0  # unsubscribe, no answer
    DELETE_KEY_AND_PROPAGATE = 1  # unsubscribe, answer None (the left row's result goes)
    PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE = 2  # subscribe, answer even without a right row
    PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE = 3  # subscribe, answer only with a right row


@dataclass(frozen=True)
class Subscription:
    """A left row's message to the right side (key: the foreign key, serialized)."""

    value_hash: bytes | None  # of the left row's new value; None: the row was deleted
    instruction: Instruction
    primary_key: bytes  # the left row's key, serialized
    primary_partition: int  # the left row's partition (-1: not known)


@dataclass(frozen=True)
class SubscriptionResponse:
    """The right side's answer (key: the left row's key, serialized)."""

    value_hash: bytes | None  # as the subscription said
    foreign_value: bytes | None  # the right row's value, serialized; None: no right row
    primary_partition: int


def _hash_part(value_hash: bytes | None) -> tuple[int, bytes]:
    return (0, b"") if value_hash is None else (_HAS_HASH, value_hash)


class SubscriptionSerde:
    """version, instruction, flags, [16-byte hash], 4-byte partition, left key."""

    def serialize(self, topic: str, value: Subscription | None) -> bytes | None:
        if value is None:
            return None
        flag, digest = _hash_part(value.value_hash)
        return (_HEAD.pack(_VERSION, value.instruction, flag) + digest
                + _PARTITION.pack(value.primary_partition) + value.primary_key)

    def deserialize(self, topic: str, data: bytes | None) -> Subscription | None:
        if data is None:
            return None
        _, instruction, flags = _read_head(topic, data)
        offset = _HEAD.size + (_HASH_SIZE if flags & _HAS_HASH else 0)
        return Subscription(data[_HEAD.size:offset] if flags & _HAS_HASH else None,
                            Instruction(instruction), bytes(data[offset + 4:]),
                            _PARTITION.unpack_from(data, offset)[0])


class SubscriptionResponseSerde:
    """version, 0, flags, [16-byte hash], 4-byte partition, [right value]."""

    def serialize(self, topic: str, value: SubscriptionResponse | None) -> bytes | None:
        if value is None:
            return None
        flag, digest = _hash_part(value.value_hash)
        if value.foreign_value is not None:
            flag |= _HAS_VALUE
        return (_HEAD.pack(_VERSION, 0, flag) + digest + _PARTITION.pack(value.primary_partition)
                + (value.foreign_value or b""))

    def deserialize(self, topic: str, data: bytes | None) -> SubscriptionResponse | None:
        if data is None:
            return None
        _, _, flags = _read_head(topic, data)
        offset = _HEAD.size + (_HASH_SIZE if flags & _HAS_HASH else 0)
        return SubscriptionResponse(
            data[_HEAD.size:offset] if flags & _HAS_HASH else None,
            bytes(data[offset + 4:]) if flags & _HAS_VALUE else None,
            _PARTITION.unpack_from(data, offset)[0])


def _read_head(topic: str, data: bytes) -> tuple[int, int, int]:
    if len(data) < _HEAD.size + _PARTITION.size:
        raise SerializationError(f"{topic}: {len(data)} bytes is too short for a foreign-key "
                                 "join message")
    version, instruction, flags = _HEAD.unpack_from(data)
    if version != _VERSION or instruction > max(Instruction):
        raise SerializationError(f"{topic}: a foreign-key join message of version {version} "
                                 f"and instruction {instruction}, which this version cannot read")
    return version, instruction, flags


def value_hash(serde: Serde[Any], store: str, value: Any) -> bytes | None:
    """The hash the join compares to find stale answers (None for no value)."""
    if value is None:
        return None
    return hashlib.blake2b(serialized(serde, store, value), digest_size=_HASH_SIZE).digest()

