"""The registry's state, rebuilt by applying the `_schemas` records in order, and the logic of
Confluent's reads and writes over it. Pure: no I/O.

Writes are planned, not done: register(), delete_version(), delete_subject(), set_config(),
set_mode()... check everything against the state and answer the records to append to
`_schemas`. The primary produces them; every instance (the primary too) applies them as it
reads them back, so a restart that replays the topic rebuilds the same state. apply_all()
applies a plan at once (tests, and an instance that applies its own writes eagerly).

Semantics, as Confluent's:
- a schema is identified by its format, canonical text and references (normalize=true
  compares normalized texts); the same schema under a subject answers its existing id and
  version; the same schema in another subject reuses the id; new ids are the largest seen + 1;
- a subject's versions increase (the next is one past the largest, soft-deleted ones
  included); soft-deleted versions are hidden unless asked for with deleted=true, and a
  version or subject is hard-deleted only after a soft delete;
- a version that live schemas reference cannot be deleted (42206);
- compatibility is checked against the live versions at the subject's level (else the
  global one, else BACKWARD); modes READONLY / READONLY_OVERRIDE refuse writes, IMPORT
  accepts schemas with their ids and versions and checks no compatibility.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from strom.registry import errors
from strom.registry.compatibility import CompatibilityLevel, check_compatibility
from strom.registry.errors import InvalidSchemaError, RegistryError
from strom.registry.records import (
    ClearSubjectKey,
    ClearSubjectValue,
    ConfigKey,
    ConfigValue,
    DeleteSubjectKey,
    DeleteSubjectValue,
    ModeKey,
    ModeValue,
    Record,
    RecordFormatError,
    SchemaKey,
    SchemaValue,
    decode_key,
    decode_value,
)
from strom.registry.schemas import ParsedSchema, SchemaReference, SchemaType, parse_schema

MAX_VERSION = 2**31 - 1


class Mode(StrEnum):
    """Confluent's modes."""

    READWRITE = "READWRITE"
    READONLY = "READONLY"
    READONLY_OVERRIDE = "READONLY_OVERRIDE"
    IMPORT = "IMPORT"

    @classmethod
    def parse(cls, name: object) -> Mode:
        """The mode for a request's "mode" value, or 42204."""
        if isinstance(name, str):
            try:
                return cls(name.upper())
            except ValueError:
                pass
        raise RegistryError(errors.INVALID_MODE, "Invalid mode. Valid values are READWRITE, "
                                                 "READONLY, READONLY_OVERRIDE and IMPORT")


class IncompatibleSchemaError(RegistryError):
    """409, with Confluent's verbose reasons in `details`."""

    def __init__(self, subject: str, details: list[str]) -> None:
        super().__init__(
            errors.INCOMPATIBLE_SCHEMA,
            f'Schema being registered is incompatible with an earlier schema for subject '
            f'"{subject}", details: [{", ".join(details)}]',
        )
        self.details = details


@dataclass(frozen=True)
class StoredVersion:
    """One version of a subject."""

    subject: str
    version: int
    id: int
    schema: str
    schema_type: SchemaType
    references: tuple[SchemaReference, ...]
    deleted: bool = False


@dataclass(frozen=True)
class RegisterResult:
    """A registration's answer: the id and version, the records to append (none when the
    schema was already registered under the subject)."""

    id: int
    version: int
    records: list[Record] = field(default_factory=list)


def _subject_missing(subject: str) -> RegistryError:
    return RegistryError(errors.SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")


def _version_missing(version: int | str) -> RegistryError:
    return RegistryError(errors.VERSION_NOT_FOUND, f"Version {version} not found.")


def parse_version(version: int | str) -> int | None:
    """A version from a URL: an int in [1, 2^31-1], or None for "latest" (and -1); else 42202."""
    if isinstance(version, str):
        if version.lower() == "latest":
            return None
        try:
            number = int(version)
        except ValueError:
            number = 0
    else:
        number = version
    if number == -1:
        return None
    if not 1 <= number <= MAX_VERSION:
        raise RegistryError(
            errors.INVALID_VERSION,
            f"The specified version '{version}' is not a valid version id. Allowed values are "
            f'between [1, 2^31-1] and the string "latest"',
        )
    return number


def check_subject(subject: str) -> None:
    """42208 for a subject Confluent refuses: empty, or with control characters."""
    if not subject or any(ord(c) < 0x20 for c in subject):
        raise RegistryError(errors.INVALID_SUBJECT, f"Invalid subject {subject!r}")


class RegistryState:
    """Subjects and their versions, schemas by id, configs and modes."""

    def __init__(self, default_compatibility: CompatibilityLevel = CompatibilityLevel.BACKWARD,
                 default_mode: Mode = Mode.READWRITE) -> None:
        self.default_compatibility = default_compatibility
        self.default_mode = default_mode
        self.subject_versions: dict[str, dict[int, StoredVersion]] = {}
        self.configs: dict[str | None, ConfigValue] = {}
        self.modes: dict[str | None, Mode] = {}
        self.next_id = 1
        self.skipped_records = 0
        self._uses: dict[int, set[tuple[str, int]]] = {}  # id -> (subject, version) pairs
        self._ids: dict[tuple[SchemaType, str, tuple[SchemaReference, ...]], int] = {}
        self._parsed: dict[int, ParsedSchema] = {}
        self._parsing: set[int] = set()

    # ---- replaying `_schemas`

    def apply_encoded(self, key: bytes, value: bytes | None) -> bool:
        """Apply one record as read from `_schemas`; False (and counted) when it is not one
        this registry can read: Confluent skips those too."""
        try:
            decoded = decode_key(key)
            self.apply(Record(decoded, decode_value(decoded, value)))
        except RecordFormatError:
            self.skipped_records += 1
            return False
        return True

    def apply_all(self, records: Iterable[Record]) -> None:
        """Apply records in order."""
        for record in records:
            self.apply(record)

    def apply(self, record: Record) -> None:
        """Apply one record."""
        key, value = record.key, record.value
        if isinstance(key, SchemaKey):
            self._apply_schema(key, value)
        elif isinstance(key, ConfigKey | ModeKey):
            self._apply_setting(key, value)
        elif isinstance(key, DeleteSubjectKey) and isinstance(value, DeleteSubjectValue):
            for v in list(self.subject_versions.get(key.subject, {}).values()):
                if v.version <= value.version and not v.deleted:
                    self._put(StoredVersion(v.subject, v.version, v.id, v.schema, v.schema_type,
                                            v.references, deleted=True))
        elif isinstance(key, ClearSubjectKey) and isinstance(value, ClearSubjectValue):
            for v in list(self.subject_versions.get(key.subject, {}).values()):
                if v.deleted:
                    self._remove(v.subject, v.version)
        # NOOP, and DELETE_SUBJECT / CLEAR_SUBJECT tombstones: nothing to do

    def _apply_setting(self, key: ConfigKey | ModeKey, value: object) -> None:
        if isinstance(key, ConfigKey):
            if isinstance(value, ConfigValue):
                self.configs[key.subject] = value
            else:
                self.configs.pop(key.subject, None)
        elif isinstance(value, ModeValue):
            try:
                self.modes[key.subject] = Mode.parse(value.mode)
            except RegistryError:
                raise RecordFormatError(f"unknown mode {value.mode}") from None
        else:
            self.modes.pop(key.subject, None)

    def _apply_schema(self, key: SchemaKey, value: object) -> None:
        if value is None:
            self._remove(key.subject, key.version)
            return
        if not isinstance(value, SchemaValue):
            raise RecordFormatError(f"not a schema value: {value}")
        self._put(StoredVersion(key.subject, key.version, value.id, value.schema,
                                value.schema_type, value.references, value.deleted))

    def _put(self, v: StoredVersion) -> None:
        versions = self.subject_versions.setdefault(v.subject, {})
        old = versions.get(v.version)
        if old is not None and old.id != v.id:
            self._unuse(old)
        versions[v.version] = v
        self._uses.setdefault(v.id, set()).add((v.subject, v.version))
        self._ids.setdefault((v.schema_type, v.schema, v.references), v.id)
        self.next_id = max(self.next_id, v.id + 1)

    def _remove(self, subject: str, version: int) -> None:
        versions = self.subject_versions.get(subject, {})
        old = versions.pop(version, None)
        if old is not None:
            self._unuse(old)
        if not versions:
            self.subject_versions.pop(subject, None)

    def _unuse(self, old: StoredVersion) -> None:
        uses = self._uses.get(old.id, set())
        uses.discard((old.subject, old.version))
        if not uses:
            self._uses.pop(old.id, None)
            self._parsed.pop(old.id, None)
            key = (old.schema_type, old.schema, old.references)
            if self._ids.get(key) == old.id:
                del self._ids[key]

    # ---- reads

    def subjects(self, deleted: bool = False) -> list[str]:
        """Subjects with a live version (with deleted=True, any version)."""
        return sorted(s for s, versions in self.subject_versions.items()
                      if any(deleted or not v.deleted for v in versions.values()))

    def versions(self, subject: str, deleted: bool = False) -> list[int]:
        """A subject's version numbers; 40401 when it has none to show."""
        found = sorted(v.version for v in self.subject_versions.get(subject, {}).values()
                       if deleted or not v.deleted)
        if not found:
            raise _subject_missing(subject)
        return found

    def get_version(self, subject: str, version: int | str,
                    deleted: bool = False) -> StoredVersion:
        """A subject's version ("latest" or -1: the newest shown); 40401, 40402, 42202."""
        number = parse_version(version)
        versions = self.subject_versions.get(subject, {})
        shown = [v for v in versions.values() if deleted or not v.deleted]
        if not shown:
            raise _subject_missing(subject)
        if number is None:
            return max(shown, key=lambda v: v.version)
        found = versions.get(number)
        if found is None or (found.deleted and not deleted):
            raise _version_missing(version)
        return found

    def schema_by_id(self, schema_id: int) -> StoredVersion:
        """A version holding schema `schema_id` (soft-deleted ones too); 40403."""
        uses = self._uses.get(schema_id)
        if not uses:
            raise RegistryError(errors.SCHEMA_NOT_FOUND, f"Schema {schema_id} not found")
        subject, version = min(uses)
        return self.subject_versions[subject][version]

    def ids(self) -> list[int]:
        """Every schema id in use."""
        return sorted(self._uses)

    def versions_of_id(self, schema_id: int, deleted: bool = False) -> list[tuple[str, int]]:
        """(subject, version) pairs holding schema `schema_id`; 40403 when none."""
        self.schema_by_id(schema_id)
        return sorted((s, n) for s, n in self._uses[schema_id]
                      if deleted or not self.subject_versions[s][n].deleted)

    def referenced_by(self, subject: str, version: int) -> list[int]:
        """Ids of the live schemas that reference `subject` `version`."""
        out = set()
        for versions in self.subject_versions.values():
            for v in versions.values():
                if not v.deleted and any(r.subject == subject and r.version == version
                                         for r in v.references):
                    out.add(v.id)
        return sorted(out)

    def parsed(self, stored: StoredVersion) -> ParsedSchema:
        """The stored schema parsed (cached by id)."""
        cached = self._parsed.get(stored.id)
        if cached is not None:
            return cached
        if stored.id in self._parsing:
            raise InvalidSchemaError("Invalid schema, details: circular references")
        self._parsing.add(stored.id)
        try:
            parsed = parse_schema(stored.schema, stored.schema_type, stored.references,
                                  self.resolve_reference)
        finally:
            self._parsing.discard(stored.id)
        self._parsed[stored.id] = parsed
        return parsed

    def resolve_reference(self, ref: SchemaReference) -> ParsedSchema:
        """The schema a reference names (soft-deleted versions resolve too)."""
        return self.parsed(self.get_version(ref.subject, ref.version, deleted=True))

    def parse(self, schema: str, schema_type: str | SchemaType | None,
              references: Sequence[SchemaReference]) -> ParsedSchema:
        """Parse a request's schema, its references resolved against this state."""
        return parse_schema(schema, schema_type, references, self.resolve_reference)

    def lookup(self, subject: str, schema: str, schema_type: str | SchemaType | None = None,
               references: Sequence[SchemaReference] = (), normalize: bool = False,
               deleted: bool = False) -> StoredVersion:
        """POST /subjects/{subject}: the version of `subject` holding this schema; 40401,
        40403, 42201."""
        if not any(deleted or not v.deleted
                   for v in self.subject_versions.get(subject, {}).values()):
            raise _subject_missing(subject)
        found = self._find(subject, self.parse(schema, schema_type, references), normalize,
                           deleted)
        if found is None:
            raise RegistryError(errors.SCHEMA_NOT_FOUND, "Schema not found")
        return found

    def _find(self, subject: str, parsed: ParsedSchema, normalize: bool,
              deleted: bool) -> StoredVersion | None:
        wanted = parsed.identity(normalize)
        for v in sorted(self.subject_versions.get(subject, {}).values(),
                        key=lambda v: v.version):
            if v.deleted and not deleted:
                continue
            if (v.schema_type, v.schema, v.references) == (
                wanted.schema_type, wanted.text, wanted.references
            ) or self.parsed(v).identity(normalize) == wanted:
                return v
        return None

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        """The level in force for `subject`: its own, else the global one, else the default."""
        config = self.configs.get(subject) or self.configs.get(None)
        if config is None:
            return self.default_compatibility
        try:
            return CompatibilityLevel.parse(config.compatibility_level)
        except RegistryError:
            return self.default_compatibility

    def get_config(self, subject: str | None, default_to_global: bool = False) -> str:
        """GET /config[/{subject}]: the level set there; 40408 when a subject has none."""
        if subject is None or default_to_global or subject in self.configs:
            return self.compatibility(subject).value
        raise RegistryError(errors.SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED,
                            f"Subject '{subject}' does not have subject-level compatibility "
                            "configured")

    def mode(self, subject: str | None = None) -> Mode:
        """The mode in force for `subject`: its own, else the global one, else the default."""
        return self.modes.get(subject) or self.modes.get(None) or self.default_mode

    def get_mode(self, subject: str | None, default_to_global: bool = False) -> Mode:
        """GET /mode[/{subject}]; 40409 when a subject has none."""
        if subject is None or default_to_global or subject in self.modes:
            return self.mode(subject)
        raise RegistryError(errors.SUBJECT_LEVEL_MODE_NOT_CONFIGURED,
                            f"Subject '{subject}' does not have subject-level mode configured")

    def live(self, subject: str) -> list[StoredVersion]:
        """A subject's live versions, oldest first."""
        return sorted((v for v in self.subject_versions.get(subject, {}).values()
                       if not v.deleted), key=lambda v: v.version)

    def test_compatibility(self, subject: str, schema: str,
                           schema_type: str | SchemaType | None = None,
                           references: Sequence[SchemaReference] = (),
                           version: int | str | None = None) -> list[str]:
        """POST /compatibility/subjects/{subject}/versions[/{version}]: Confluent's verbose
        reasons ([] when compatible); against one version, or against what the subject's level
        checks when `version` is None. A subject without versions is compatible."""
        parsed = self.parse(schema, schema_type, references)
        level = self.compatibility(subject)
        if version is None:
            previous = self.live(subject)
        else:
            if not self.subject_versions.get(subject):
                raise _subject_missing(subject)
            previous = [self.get_version(subject, version)]
            level = CompatibilityLevel.parse(level.value.removesuffix("_TRANSITIVE"))
        return check_compatibility(parsed, [(v.version, self.parsed(v)) for v in previous],
                                   level)

    # ---- writes, planned as records

    def _writable(self, subject: str | None) -> Mode:
        mode = self.mode(subject)
        if mode in (Mode.READONLY, Mode.READONLY_OVERRIDE):
            raise RegistryError(errors.OPERATION_NOT_PERMITTED,
                                f"Subject {subject} is in read-only mode")
        return mode

    def register(self, subject: str, schema: str, schema_type: str | SchemaType | None = None,
                 references: Sequence[SchemaReference] = (), normalize: bool = False,
                 schema_id: int | None = None, version: int | None = None) -> RegisterResult:
        """POST /subjects/{subject}/versions: the id (and version) the schema has or gets, and
        the records that register it; 42201, 409, 42205, 42207, 42208."""
        check_subject(subject)
        mode = self._writable(subject)
        if (schema_id is not None or version is not None) and mode is not Mode.IMPORT:
            raise RegistryError(errors.OPERATION_NOT_PERMITTED,
                                f"Subject {subject} is not in import mode")
        parsed = self.parse(schema, schema_type, references)
        existing = self._find(subject, parsed, normalize, deleted=False)
        if existing is not None and (schema_id is None or schema_id == existing.id):
            return RegisterResult(existing.id, existing.version)
        if mode is not Mode.IMPORT:
            details = check_compatibility(
                parsed, [(v.version, self.parsed(v)) for v in self.live(subject)],
                self.compatibility(subject))
            if details:
                raise IncompatibleSchemaError(subject, details)
        text = parsed.normalized() if normalize else parsed.canonical()
        new_id = self._choose_id(parsed.schema_type, text, tuple(references), schema_id)
        new_version = self._choose_version(subject, version)
        value = SchemaValue(subject, new_version, new_id, text, parsed.schema_type,
                            tuple(references))
        return RegisterResult(new_id, new_version, [Record(SchemaKey(subject, new_version),
                                                           value)])

    def _choose_id(self, schema_type: SchemaType, text: str,
                   references: tuple[SchemaReference, ...], wanted: int | None) -> int:
        same = self._ids.get((schema_type, text, references))
        if wanted is None:
            if same is not None:
                return same
            self.next_id += 1  # reserved: a second plan before this one applies gets another
            return self.next_id - 1
        if wanted in self._uses and wanted != same:
            raise RegistryError(errors.ID_DOES_NOT_MATCH,
                                f"Overwrite new schema with id {wanted} is not permitted.")
        if wanted < 1 or wanted > MAX_VERSION:
            raise RegistryError(errors.ID_DOES_NOT_MATCH, f"Invalid schema id {wanted}")
        return wanted

    def _choose_version(self, subject: str, wanted: int | None) -> int:
        versions = self.subject_versions.get(subject, {})
        if wanted is None:
            return max(versions, default=0) + 1
        if parse_version(wanted) is None or wanted in versions:
            raise RegistryError(errors.INVALID_VERSION,
                                f"Version {wanted} of subject {subject} is not free")
        return wanted

    def delete_version(self, subject: str, version: int | str,
                       permanent: bool = False) -> tuple[int, list[Record]]:
        """DELETE /subjects/{subject}/versions/{version}[?permanent=true]: the version and
        the records; 40401, 40402, 40406, 40407, 42202, 42205, 42206."""
        self._writable(subject)
        latest = parse_version(version) is None  # the newest live one, unless permanent
        stored = self.get_version(subject, version, deleted=permanent or not latest)
        if stored.deleted and not permanent:
            raise RegistryError(errors.SCHEMA_VERSION_SOFT_DELETED,
                                f"Subject '{subject}' Version {stored.version} was soft deleted."
                                "Set permanent=true to delete permanently")
        if permanent and not stored.deleted:
            raise RegistryError(errors.SCHEMA_VERSION_NOT_SOFT_DELETED,
                                f"Subject '{subject}' Version {stored.version} was not deleted "
                                "first before being permanently deleted")
        self._not_referenced(stored)
        key = SchemaKey(subject, stored.version)
        if permanent:
            return stored.version, [Record(key, None)]
        value = SchemaValue(subject, stored.version, stored.id, stored.schema,
                            stored.schema_type, stored.references, deleted=True)
        return stored.version, [Record(key, value)]

    def _not_referenced(self, stored: StoredVersion) -> None:
        if self.referenced_by(stored.subject, stored.version):
            raise self._reference_exists(stored)

    @staticmethod
    def _reference_exists(stored: StoredVersion) -> RegistryError:
        return RegistryError(
            errors.REFERENCE_EXISTS,
            f"One or more references exist to the schema {{magic=1,keytype=SCHEMA,"
            f"subject={stored.subject},version={stored.version}}}.",
        )

    def delete_subject(self, subject: str,
                       permanent: bool = False) -> tuple[list[int], list[Record]]:
        """DELETE /subjects/{subject}[?permanent=true]: the versions deleted and the records;
        40401, 40404, 40405, 42205, 42206."""
        self._writable(subject)
        versions = sorted(self.subject_versions.get(subject, {}).values(),
                          key=lambda v: v.version)
        if not versions:
            raise _subject_missing(subject)
        live = [v for v in versions if not v.deleted]
        if permanent:
            if live:
                raise RegistryError(errors.SUBJECT_NOT_SOFT_DELETED,
                                    f"Subject '{subject}' was not deleted first before being "
                                    "permanently deleted")
            records = [Record(SchemaKey(subject, v.version), None) for v in versions]
            if subject in self.configs:
                records.append(Record(ConfigKey(subject), None))
            if subject in self.modes:
                records.append(Record(ModeKey(subject), None))
            return [v.version for v in versions], records
        if not live:
            raise RegistryError(errors.SUBJECT_SOFT_DELETED,
                                f"Subject '{subject}' was soft deleted.Set permanent=true to "
                                "delete permanently")
        for v in live:
            if self._referenced_from_outside(v, live):
                raise self._reference_exists(v)
        return [v.version for v in live], [
            Record(SchemaKey(subject, v.version),
                   SchemaValue(subject, v.version, v.id, v.schema, v.schema_type,
                               v.references, deleted=True))
            for v in live
        ]

    def _referenced_from_outside(self, target: StoredVersion,
                                 deleting: list[StoredVersion]) -> bool:
        inside = {(v.subject, v.version) for v in deleting}
        for versions in self.subject_versions.values():
            for v in versions.values():
                if v.deleted or (v.subject, v.version) in inside:
                    continue
                if any(r.subject == target.subject and r.version == target.version
                       for r in v.references):
                    return True
        return False

    def set_config(self, subject: str | None, level: object) -> tuple[str, list[Record]]:
        """PUT /config[/{subject}]: the level and the record; 42203."""
        parsed = CompatibilityLevel.parse(level)
        if subject is not None:
            check_subject(subject)
        return parsed.value, [Record(ConfigKey(subject), ConfigValue(parsed.value))]

    def delete_config(self, subject: str | None) -> tuple[str, list[Record]]:
        """DELETE /config[/{subject}]: the level that was set and the tombstone; 40408."""
        previous = self.get_config(subject)
        return previous, [Record(ConfigKey(subject), None)]

    def set_mode(self, subject: str | None, mode: object,
                 force: bool = False) -> tuple[str, list[Record]]:
        """PUT /mode[/{subject}][?force=true]: the mode and the record; 42204, 42205 (IMPORT
        over existing schemas without force)."""
        parsed = Mode.parse(mode)
        if parsed is Mode.IMPORT and not force:
            has_schemas = self.subjects() if subject is None else (
                [subject] if self.live(subject) else [])
            if has_schemas:
                raise RegistryError(errors.OPERATION_NOT_PERMITTED,
                                    "Cannot import since found existing subjects")
        return parsed.value, [Record(ModeKey(subject), ModeValue(parsed.value))]

    def delete_mode(self, subject: str) -> tuple[str, list[Record]]:
        """DELETE /mode/{subject}: the mode that was set and the tombstone; 40409."""
        previous = self.get_mode(subject)
        return previous.value, [Record(ModeKey(subject), None)]
