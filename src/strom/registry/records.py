"""The `_schemas` topic's records, in Confluent's format, so that a registry can read a
`_schemas` topic Confluent Schema Registry (or Karapace) wrote, and they can read ours.

Keys (JSON, fields in Confluent's order; compaction keeps the last value per key bytes):
    {"keytype":"SCHEMA","subject":"s","version":1,"magic":1}
    {"keytype":"CONFIG","subject":"s","magic":0}          subject null: the global config
    {"keytype":"MODE","subject":"s","magic":0}            subject null: the global mode
    {"keytype":"DELETE_SUBJECT","subject":"s","magic":0}
    {"keytype":"CLEAR_SUBJECT","subject":"s","magic":0}
    {"keytype":"NOOP","magic":0}
Values:
    SCHEMA          {"subject","version","id","schemaType" (absent: AVRO),"references" (absent:
                    none),"schema","deleted"}; null: the version is gone (hard delete)
    CONFIG          {"compatibilityLevel": "BACKWARD", ...}; null: the config is deleted
    MODE            {"mode": "READWRITE"}; null: the mode is deleted
    DELETE_SUBJECT  {"subject","version"}: every version up to `version` is soft-deleted
    CLEAR_SUBJECT   {"subject"}: the subject's soft-deleted versions are gone
    NOOP            null (the primary's marker to know it has read up to its own writes)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from strom.registry.errors import RegistryError
from strom.registry.schemas.base import SchemaReference, SchemaType


class RecordFormatError(ValueError):
    """A `_schemas` record this registry cannot read (the state skips such records)."""


@dataclass(frozen=True)
class Record:
    """One `_schemas` record as the state plans it: key and value (None: a tombstone)."""

    key: Key
    value: Value | None

    def encode(self) -> tuple[bytes, bytes | None]:
        """The record's key and value bytes."""
        return encode_key(self.key), encode_value(self.value)


@dataclass(frozen=True)
class SchemaKey:
    """A subject's version."""

    subject: str
    version: int
    magic: int = 1


@dataclass(frozen=True)
class ConfigKey:
    """A subject's compatibility config (subject None: the global one)."""

    subject: str | None
    magic: int = 0


@dataclass(frozen=True)
class ModeKey:
    """A subject's mode (subject None: the global one)."""

    subject: str | None
    magic: int = 0


@dataclass(frozen=True)
class DeleteSubjectKey:
    """Confluent's older soft delete of a whole subject."""

    subject: str
    magic: int = 0


@dataclass(frozen=True)
class ClearSubjectKey:
    """Confluent's removal of a subject's soft-deleted versions."""

    subject: str
    magic: int = 0


@dataclass(frozen=True)
class NoopKey:
    """A marker record."""

    magic: int = 0


Key = SchemaKey | ConfigKey | ModeKey | DeleteSubjectKey | ClearSubjectKey | NoopKey


@dataclass(frozen=True)
class SchemaValue:
    """A registered version."""

    subject: str
    version: int
    id: int
    schema: str
    schema_type: SchemaType = SchemaType.AVRO
    references: tuple[SchemaReference, ...] = ()
    deleted: bool = False


@dataclass(frozen=True)
class ConfigValue:
    """A compatibility config; `extra` keeps the fields newer Confluent versions add."""

    compatibility_level: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ModeValue:
    """A mode: READWRITE, READONLY, READONLY_OVERRIDE or IMPORT."""

    mode: str


@dataclass(frozen=True)
class DeleteSubjectValue:
    """Soft-delete `subject` up to and including `version`."""

    subject: str
    version: int


@dataclass(frozen=True)
class ClearSubjectValue:
    """Remove `subject`'s soft-deleted versions."""

    subject: str


Value = SchemaValue | ConfigValue | ModeValue | DeleteSubjectValue | ClearSubjectValue


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_key(key: Key) -> bytes:
    """The key's bytes, as Confluent writes them."""
    if isinstance(key, SchemaKey):
        return _dumps({"keytype": "SCHEMA", "subject": key.subject, "version": key.version,
                       "magic": key.magic})
    if isinstance(key, ConfigKey):
        return _dumps({"keytype": "CONFIG", "subject": key.subject, "magic": key.magic})
    if isinstance(key, ModeKey):
        return _dumps({"keytype": "MODE", "subject": key.subject, "magic": key.magic})
    if isinstance(key, DeleteSubjectKey):
        return _dumps({"keytype": "DELETE_SUBJECT", "subject": key.subject, "magic": key.magic})
    if isinstance(key, ClearSubjectKey):
        return _dumps({"keytype": "CLEAR_SUBJECT", "subject": key.subject, "magic": key.magic})
    return _dumps({"keytype": "NOOP", "magic": key.magic})


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RecordFormatError(f"{what} is not a JSON object")
    return value


def _str(obj: dict[str, Any], name: str, optional: bool = False) -> Any:
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise RecordFormatError(f"{name!r} missing or not a string in {obj}")
    return value


def _int(obj: dict[str, Any], name: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordFormatError(f"{name!r} missing or not an integer in {obj}")
    return value


def decode_key(data: bytes) -> Key:
    """Parse a key; RecordFormatError for what is not a `_schemas` key."""
    obj = _object(data, "key")
    keytype = obj.get("keytype")
    if keytype == "SCHEMA":
        return SchemaKey(_str(obj, "subject"), _int(obj, "version"), _int(obj, "magic", 1))
    if keytype == "CONFIG":
        return ConfigKey(_str(obj, "subject", optional=True), _int(obj, "magic", 0))
    if keytype == "MODE":
        return ModeKey(_str(obj, "subject", optional=True), _int(obj, "magic", 0))
    if keytype == "DELETE_SUBJECT":
        return DeleteSubjectKey(_str(obj, "subject"), _int(obj, "magic", 0))
    if keytype == "CLEAR_SUBJECT":
        return ClearSubjectKey(_str(obj, "subject"), _int(obj, "magic", 0))
    if keytype == "NOOP":
        return NoopKey(_int(obj, "magic", 0))
    raise RecordFormatError(f"unknown keytype {keytype!r}")


def encode_value(value: Value | None) -> bytes | None:
    """The value's bytes (None stays None: a tombstone)."""
    if value is None:
        return None
    if isinstance(value, SchemaValue):
        out: dict[str, Any] = {"subject": value.subject, "version": value.version,
                               "id": value.id}
        if value.schema_type is not SchemaType.AVRO:
            out["schemaType"] = value.schema_type.value
        if value.references:
            out["references"] = [r.to_json() for r in value.references]
        out["schema"] = value.schema
        out["deleted"] = value.deleted
        return _dumps(out)
    if isinstance(value, ConfigValue):
        return _dumps({**value.extra, "compatibilityLevel": value.compatibility_level})
    if isinstance(value, ModeValue):
        return _dumps({"mode": value.mode})
    if isinstance(value, DeleteSubjectValue):
        return _dumps({"subject": value.subject, "version": value.version})
    return _dumps({"subject": value.subject})


def decode_value(key: Key, data: bytes | None) -> Value | None:
    """Parse the value of a record with `key`; None for a tombstone or a NOOP."""
    if data is None or isinstance(key, NoopKey):
        return None
    obj = _object(data, "value")
    if isinstance(key, SchemaKey):
        refs = obj.get("references")
        refs = [] if refs is None else refs
        if not isinstance(refs, list):
            raise RecordFormatError(f"references not a list in {obj}")
        try:
            references = tuple(SchemaReference.from_json(r) for r in refs)
            schema_type = SchemaType.of(obj.get("schemaType"))
        except RegistryError as exc:
            raise RecordFormatError(exc.message) from None
        return SchemaValue(_str(obj, "subject"), _int(obj, "version"), _int(obj, "id"),
                           _str(obj, "schema"), schema_type, references,
                           bool(obj.get("deleted", False)))
    if isinstance(key, ConfigKey):
        level = _str(obj, "compatibilityLevel", optional=True) or _str(
            obj, "compatibility", optional=True)
        if level is None:
            raise RecordFormatError(f"no compatibilityLevel in {obj}")
        extra = {k: v for k, v in obj.items() if k not in ("compatibilityLevel", "compatibility")}
        return ConfigValue(level, extra)
    if isinstance(key, ModeKey):
        return ModeValue(_str(obj, "mode"))
    if isinstance(key, DeleteSubjectKey):
        return DeleteSubjectValue(_str(obj, "subject"), _int(obj, "version"))
    return ClearSubjectValue(_str(obj, "subject"))
