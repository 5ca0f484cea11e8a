"""What every format's parsed schema offers, and schema references."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from strom.registry.errors import InvalidSchemaError


class SchemaType(StrEnum):
    """The formats, named as Confluent's "schemaType" (absent means AVRO)."""

    AVRO = "AVRO"
    JSON = "JSON"
    PROTOBUF = "PROTOBUF"

    @classmethod
    def of(cls, name: str | None) -> SchemaType:
        """The type for a request's or record's "schemaType" (None or "" is AVRO)."""
        if not name:
            return cls.AVRO
        try:
            return cls(name.upper())
        except ValueError:
            raise InvalidSchemaError(f"Invalid schema type {name}") from None


@dataclass(frozen=True, order=True)
class SchemaReference:
    """A reference from one schema to another registered one: `name` is how the referring
    schema names it (an Avro full name, a JSON Schema $ref URL, a .proto import path)."""

    name: str
    subject: str
    version: int

    def to_json(self) -> dict[str, Any]:
        """The REST / `_schemas` form: {"name", "subject", "version"}."""
        return {"name": self.name, "subject": self.subject, "version": self.version}

    @classmethod
    def from_json(cls, data: Any) -> SchemaReference:
        """Parse the JSON form; malformed references are invalid schemas (42201)."""
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("name"), str)
            or not isinstance(data.get("subject"), str)
            or not isinstance(data.get("version"), int)
            or isinstance(data.get("version"), bool)
        ):
            raise InvalidSchemaError(f"Invalid schema reference {data!r}")
        return cls(data["name"], data["subject"], data["version"])


@dataclass(frozen=True)
class SchemaIdentity:
    """What decides "the same schema" (Confluent: the canonical string plus the references)."""

    schema_type: SchemaType
    text: str
    references: tuple[SchemaReference, ...]


@dataclass(eq=False)
class ParsedSchema(ABC):
    """A schema that parsed and validated, with its resolved references."""

    text: str
    references: tuple[SchemaReference, ...] = ()
    dependencies: Mapping[str, ParsedSchema] = field(default_factory=dict)

    @property
    @abstractmethod
    def schema_type(self) -> SchemaType:
        """The format."""

    @abstractmethod
    def canonical(self) -> str:
        """Confluent's canonical string: what the registry stores and answers with."""

    @abstractmethod
    def normalized(self) -> str:
        """The normalized form (Confluent's `normalize=true` on register and lookup)."""

    @abstractmethod
    def record_names(self) -> list[str]:
        """The full names of the record/message types the schema defines, first the one a
        RecordNameStrategy would use."""

    def identity(self, normalize: bool = False) -> SchemaIdentity:
        """The key the registry compares: same identity, same schema (and id)."""
        text = self.normalized() if normalize else self.canonical()
        return SchemaIdentity(self.schema_type, text, self.references)


ReferenceResolver = Callable[[SchemaReference], ParsedSchema]
"""Looks a reference up (subject and version) and parses the schema it names; raises
RegistryError when the subject or version does not exist."""


def load_json(text: str, what: str) -> Any:
    """json.loads with the failure as an invalid schema."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidSchemaError(f"Invalid {what} schema, details: {exc}") from None


def compact_json(value: Any, sort_keys: bool = False) -> str:
    """JSON without whitespace outside strings, non-ASCII kept as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
