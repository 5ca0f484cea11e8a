"""Compatibility levels and the checks behind them (Confluent's semantics).

BACKWARD: the new schema reads data written with the previous one (reader = new).
FORWARD: the previous schema reads data written with the new one (reader = old).
FULL: both. The *_TRANSITIVE levels check against every earlier version instead of the latest
only; NONE checks nothing. Soft-deleted versions are not checked (the caller passes the live
ones).

check_compatibility() answers Confluent's verbose messages: each incompatibility of each failing
version, then "{oldSchemaVersion: N}", "{oldSchema: '...'}" and "{compatibility: 'LEVEL'}";
[] means compatible.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from strom.registry.compatibility.avro import avro_incompatibilities
from strom.registry.compatibility.base import Incompatibility
from strom.registry.compatibility.json_schema import json_incompatibilities
from strom.registry.compatibility.protobuf import protobuf_incompatibilities
from strom.registry.errors import INVALID_COMPATIBILITY_LEVEL, RegistryError
from strom.registry.schemas import (
    AvroSchema,
    JsonSchema,
    ParsedSchema,
    ProtobufSchema,
)

__all__ = [
    "CompatibilityLevel",
    "Incompatibility",
    "check_compatibility",
    "incompatibilities",
]


class CompatibilityLevel(StrEnum):
    """Confluent's compatibility levels."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @classmethod
    def parse(cls, name: object) -> CompatibilityLevel:
        """The level for a request's "compatibility" value (case-insensitive), or 42203."""
        if isinstance(name, str):
            try:
                return cls(name.upper())
            except ValueError:
                pass
        raise RegistryError(
            INVALID_COMPATIBILITY_LEVEL,
            "Invalid compatibility level. Valid values are none, backward, forward, full, "
            "backward_transitive, forward_transitive, and full_transitive",
        )

    @property
    def transitive(self) -> bool:
        """Whether every earlier version is checked, not just the latest."""
        return self.value.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """Whether the new schema must read the old data."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Whether the old schema must read the new data."""
        return self.value.startswith(("FORWARD", "FULL"))


def incompatibilities(reader: ParsedSchema, writer: ParsedSchema,
                      new_is_reader: bool) -> list[Incompatibility]:
    """What stops `reader` from reading data written with `writer` (both one format).
    `new_is_reader` says which is the new schema, for the messages' wording."""
    if isinstance(reader, AvroSchema) and isinstance(writer, AvroSchema):
        return avro_incompatibilities(reader, writer, new_is_reader)
    if isinstance(reader, JsonSchema) and isinstance(writer, JsonSchema):
        return json_incompatibilities(reader, writer, new_is_reader)
    if isinstance(reader, ProtobufSchema) and isinstance(writer, ProtobufSchema):
        return protobuf_incompatibilities(reader, writer, new_is_reader)
    return [Incompatibility("SCHEMA_TYPE_CHANGED", "/",
                            f"Incompatible because of different schema type: "
                            f"{writer.schema_type} and {reader.schema_type}")]


def check_compatibility(
    new: ParsedSchema,
    previous: Sequence[tuple[int, ParsedSchema]],
    level: CompatibilityLevel,
) -> list[str]:
    """Confluent's verbose answer for registering `new` after `previous` ((version, schema),
    oldest first, live versions only) at `level`: [] when compatible."""
    if level is CompatibilityLevel.NONE or not previous:
        return []
    checked = list(reversed(previous)) if level.transitive else [previous[-1]]
    messages: list[str] = []
    for version, old in checked:
        found: list[Incompatibility] = []
        if level.backward:
            found += incompatibilities(new, old, new_is_reader=True)
        if level.forward:
            found += incompatibilities(old, new, new_is_reader=False)
        if found:
            messages += [item.message() for item in found]
            messages += [
                f"{{oldSchemaVersion: {version}}}",
                f"{{oldSchema: '{old.canonical()}'}}",
                f"{{compatibility: '{level}'}}",
            ]
    return messages
