"""Field SMTs as Kafka's: InsertField, ReplaceField, MaskField, HoistField, ExtractField,
ValueToKey, Flatten (each with $Key/$Value where Kafka has them)."""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strom.connect.config import (
    ConfigDef,
    ConfigException,
    ConfigType,
    Importance,
    NonEmptyString,
    ValidString,
)
from strom.connect.data import (
    INT32_SCHEMA,
    INT64_SCHEMA,
    OPTIONAL_INT32_SCHEMA,
    OPTIONAL_INT64_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Field,
    Schema,
    SchemaBuilder,
    Struct,
    Timestamp,
    Type,
    millis_to_datetime,
)
from strom.connect.errors import DataException
from strom.connect.transforms.base import (
    KeyMixin,
    KeyOrValue,
    R,
    SchemaCache,
    Transform,
    ValueMixin,
    copy_schema_basics,
    require_map,
    require_map_or_null,
    require_sink_record,
    require_struct,
    require_struct_or_null,
    struct_value,
)

REPLACE_NULL = "replace.null.with.default"
OPTIONAL_TIMESTAMP_SCHEMA = Timestamp.builder().optional().build()


def _replace_null_def(d: ConfigDef) -> ConfigDef:
    return d.define(REPLACE_NULL, ConfigType.BOOLEAN, True, Importance.MEDIUM,
                    "Whether to replace fields that have a default value and that are null to "
                    "the default value.")


class NonEmptyListValidator:
    def ensure_valid(self, name: str, value: Any) -> None:
        if not value:
            raise ConfigException(name, value, "Empty list")

    def __str__(self) -> str:
        return "non-empty list"


class NullOrNonEmpty:
    def ensure_valid(self, name: str, value: Any) -> None:
        if value is not None:
            NonEmptyString().ensure_valid(name, value)


# -- InsertField --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _InsertionSpec:
    name: str
    optional: bool

    @staticmethod
    def parse(spec: str | None) -> _InsertionSpec | None:
        if not spec:
            return None
        if spec.endswith("?"):
            return _InsertionSpec(spec[:-1], True)
        if spec.endswith("!"):
            return _InsertionSpec(spec[:-1], False)
        return _InsertionSpec(spec, True)


class InsertField(Transform, KeyOrValue):
    """Insert the record's topic, partition, offset (sink records), timestamp and a static
    string into a struct or map (`name!` required, `name?` or `name` optional)."""

    PURPOSE = "field insertion"
    CONFIG_DEF = _replace_null_def(
        ConfigDef()
        .define("topic.field", ConfigType.STRING, None, Importance.MEDIUM,
                "Field name for Kafka topic. Suffix with ! to make this a required field, or ? "
                "to keep it optional (the default).")
        .define("partition.field", ConfigType.STRING, None, Importance.MEDIUM,
                "Field name for Kafka partition.")
        .define("offset.field", ConfigType.STRING, None, Importance.MEDIUM,
                "Field name for Kafka offset - only applicable to sink connectors.")
        .define("timestamp.field", ConfigType.STRING, None, Importance.MEDIUM,
                "Field name for record timestamp.")
        .define("static.field", ConfigType.STRING, None, Importance.MEDIUM,
                "Field name for static data field.")
        .define("static.value", ConfigType.STRING, None, Importance.MEDIUM,
                "Static field value, if field name configured."))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        c = self.config
        self.topic_field = _InsertionSpec.parse(c.get("topic.field"))
        self.partition_field = _InsertionSpec.parse(c.get("partition.field"))
        self.offset_field = _InsertionSpec.parse(c.get("offset.field"))
        self.timestamp_field = _InsertionSpec.parse(c.get("timestamp.field"))
        self.static_field = _InsertionSpec.parse(c.get("static.field"))
        self.static_value = c.get("static.value")
        self.replace_null = bool(c.get(REPLACE_NULL))
        if not any((self.topic_field, self.partition_field, self.offset_field,
                    self.timestamp_field, self.static_field)):
            raise ConfigException("No field insertion configured")
        if self.static_field is not None and self.static_value is None:
            raise ConfigException("static.value", None,
                                  "No value specified for static field: static.field")
        self.cache = SchemaCache()

    def apply(self, record: R) -> R | None:
        value = self.operating_value(record)
        if value is None:
            return record
        if self.operating_schema(record) is None:
            return self._apply_schemaless(record, value)
        return self._apply_with_schema(record, value)

    def _apply_schemaless(self, record: R, raw: Any) -> R:
        value = require_map(raw, self.PURPOSE)
        if self.topic_field:
            value[self.topic_field.name] = record.topic
        if self.partition_field and record.kafka_partition is not None:
            value[self.partition_field.name] = record.kafka_partition
        if self.offset_field:
            value[self.offset_field.name] = require_sink_record(record, self.PURPOSE).kafka_offset
        if self.timestamp_field and record.timestamp is not None:
            value[self.timestamp_field.name] = record.timestamp
        if self.static_field:
            value[self.static_field.name] = self.static_value
        return self.new_record(record, None, value)

    def _updated_schema(self, schema: Schema) -> Schema:
        builder = copy_schema_basics(schema, SchemaBuilder.struct())
        for f in schema.fields:
            builder.field(f.name, f.schema)
        for spec, optional, required in (
                (self.topic_field, OPTIONAL_STRING_SCHEMA, STRING_SCHEMA),
                (self.partition_field, OPTIONAL_INT32_SCHEMA, INT32_SCHEMA),
                (self.offset_field, OPTIONAL_INT64_SCHEMA, INT64_SCHEMA),
                (self.timestamp_field, OPTIONAL_TIMESTAMP_SCHEMA, Timestamp.SCHEMA),
                (self.static_field, OPTIONAL_STRING_SCHEMA, STRING_SCHEMA)):
            if spec is not None:
                builder.field(spec.name, optional if spec.optional else required)
        return builder.build()

    def _apply_with_schema(self, record: R, raw: Any) -> R:
        value = require_struct(raw, self.PURPOSE)
        schema = self.cache.get(value.schema)
        if schema is None:
            schema = self._updated_schema(value.schema)
            self.cache.put(value.schema, schema)
        updated = Struct(schema)
        for f in value.schema.fields:
            updated.put(f.name, struct_value(value, f.name, self.replace_null))
        if self.topic_field:
            updated.put(self.topic_field.name, record.topic)
        if self.partition_field and record.kafka_partition is not None:
            updated.put(self.partition_field.name, record.kafka_partition)
        if self.offset_field:
            updated.put(self.offset_field.name,
                        require_sink_record(record, self.PURPOSE).kafka_offset)
        if self.timestamp_field and record.timestamp is not None:
            updated.put(self.timestamp_field.name, millis_to_datetime(record.timestamp))
        if self.static_field and self.static_value is not None:
            updated.put(self.static_field.name, self.static_value)
        return self.new_record(record, schema, updated)


class InsertFieldKey(InsertField, KeyMixin):
    pass


class InsertFieldValue(InsertField, ValueMixin):
    pass


# -- ReplaceField -------------------------------------------------------------------------------

def _parse_renames(mappings: list[str]) -> dict[str, str]:
    renames = {}
    for mapping in mappings:
        parts = mapping.split(":")
        if len(parts) != 2:
            raise ConfigException("renames", mappings, f"Invalid rename mapping: {mapping}")
        renames[parts[0]] = parts[1]
    return renames


class ReplaceField(Transform, KeyOrValue):
    """Filter (`exclude`, `include`; legacy `blacklist`, `whitelist`) and rename
    (`renames` old:new,...) the fields of a struct or map."""

    PURPOSE = "field replacement"
    CONFIG_DEF = _replace_null_def(
        ConfigDef()
        .define("exclude", ConfigType.LIST, "", Importance.MEDIUM,
                "Fields to exclude. This takes precedence over the fields to include.")
        .define("include", ConfigType.LIST, "", Importance.MEDIUM,
                "Fields to include. If specified, only these fields will be used.")
        .define("renames", ConfigType.LIST, "", Importance.MEDIUM,
                "Field rename mappings.")
        .define("blacklist", ConfigType.LIST, None, Importance.LOW,
                "Deprecated. Use exclude instead.")
        .define("whitelist", ConfigType.LIST, None, Importance.LOW,
                "Deprecated. Use include instead."))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        c = self.config
        exclude = c.get_list("exclude") or (c.get("blacklist") or [])
        include = c.get_list("include") or (c.get("whitelist") or [])
        self.exclude = set(exclude)
        self.include = set(include)
        self.renames = _parse_renames(c.get_list("renames"))
        self.reverse_renames = {v: k for k, v in self.renames.items()}
        self.replace_null = bool(c.get(REPLACE_NULL))
        self.cache = SchemaCache()

    def filter(self, name: str) -> bool:
        return name not in self.exclude and (not self.include or name in self.include)

    def renamed(self, name: str) -> str:
        return self.renames.get(name, name)

    def reverse_renamed(self, name: str) -> str:
        return self.reverse_renames.get(name, name)

    def apply(self, record: R) -> R | None:
        raw = self.operating_value(record)
        if raw is None:
            return record
        if self.operating_schema(record) is None:
            value = require_map(raw, self.PURPOSE)
            updated = {self.renamed(k): v for k, v in value.items() if self.filter(k)}
            return self.new_record(record, None, updated)
        struct = require_struct(raw, self.PURPOSE)
        schema = self.cache.get(struct.schema)
        if schema is None:
            builder = copy_schema_basics(struct.schema, SchemaBuilder.struct())
            for f in struct.schema.fields:
                if self.filter(f.name):
                    builder.field(self.renamed(f.name), f.schema)
            schema = builder.build()
            self.cache.put(struct.schema, schema)
        result = Struct(schema)
        for f in schema.fields:
            result.put(f.name, struct_value(struct, self.reverse_renamed(f.name),
                                            self.replace_null))
        return self.new_record(record, schema, result)


class ReplaceFieldKey(ReplaceField, KeyMixin):
    pass


class ReplaceFieldValue(ReplaceField, ValueMixin):
    pass


# -- MaskField ----------------------------------------------------------------------------------

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


_ZEROS: tuple[tuple[type | tuple[type, ...], Any], ...] = (
    (bool, False), (int, 0), (float, 0.0), (_decimal.Decimal, _decimal.Decimal(0)), (str, ""),
    (_dt.datetime, _EPOCH), (_dt.date, _EPOCH.date()), (_dt.time, _dt.time(0)),
    ((list, tuple), []), (Mapping, {}),
)


def _zero_of(value: Any) -> Any:
    for kind, zero in _ZEROS:
        if isinstance(value, kind):
            return type(zero)() if isinstance(zero, list | dict) else zero
    raise DataException(f"Cannot mask value of type: {type(value)}")


def _replacement_of(value: Any, replacement: str, schema: Schema | None) -> Any:
    try:
        if isinstance(value, bool):
            raise DataException(f"Cannot mask value of type {type(value)} with custom "
                                "replacement.")
        if isinstance(value, int):
            return int(replacement.strip())
        if isinstance(value, float):
            return float(replacement.strip())
        if isinstance(value, _decimal.Decimal):
            return _decimal.Decimal(replacement.strip())
    except (ValueError, _decimal.InvalidOperation) as exc:
        raise DataException(f"Unable to convert {replacement} (class java.lang.String) to "
                            "number") from exc
    if isinstance(value, str):
        return replacement
    raise DataException(f"Cannot mask value of type {type(value)} with custom replacement.")


class MaskField(Transform, KeyOrValue):
    """Replace fields with their type's empty value (0, "", false, empty list/map, the epoch),
    or with `replacement`."""

    PURPOSE = "mask fields"
    CONFIG_DEF = _replace_null_def(
        ConfigDef()
        .define("fields", ConfigType.LIST, importance=Importance.HIGH,
                doc="Names of fields to mask.", validator=NonEmptyListValidator())
        .define("replacement", ConfigType.STRING, None, Importance.LOW,
                "Custom value replacement, that will be applied to all 'fields' values (numeric "
                "or non-empty string values only).", validator=NullOrNonEmpty()))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.fields = set(self.config.get_list("fields"))
        self.replacement: str | None = self.config.get("replacement")
        self.replace_null = bool(self.config.get(REPLACE_NULL))

    def masked(self, value: Any, schema: Schema | None = None) -> Any:
        if value is None:
            return None
        if self.replacement is None:
            return _zero_of(value)
        return _replacement_of(value, self.replacement, schema)

    def apply(self, record: R) -> R | None:
        raw = self.operating_value(record)
        if raw is None:
            return record
        if self.operating_schema(record) is None:
            value = require_map(raw, self.PURPOSE)
            for name in self.fields:
                if name in value:
                    value[name] = self.masked(value[name])
            return self.new_record(record, None, value)
        struct = require_struct(raw, self.PURPOSE)
        result = Struct(struct.schema)
        for f in struct.schema.fields:
            original = struct_value(struct, f.name, self.replace_null)
            result.put(f, self.masked(original, f.schema) if f.name in self.fields
                       else original)
        return self.new_record(record, struct.schema, result)


class MaskFieldKey(MaskField, KeyMixin):
    pass


class MaskFieldValue(MaskField, ValueMixin):
    pass


# -- HoistField ---------------------------------------------------------------------------------

class HoistField(Transform, KeyOrValue):
    """Wrap the whole key or value in a struct (with a schema) or a map (without) under
    `field`."""

    CONFIG_DEF = ConfigDef().define(
        "field", ConfigType.STRING, importance=Importance.MEDIUM,
        doc="Field name for the single field that will be created in the resulting Struct or "
            "Map.", validator=NonEmptyString())

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.field_name: str = self.config.get("field")
        self.cache = SchemaCache()

    def apply(self, record: R) -> R | None:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        if schema is None:
            return self.new_record(record, None, {self.field_name: value})
        updated = self.cache.get(schema)
        if updated is None:
            updated = SchemaBuilder.struct().field(self.field_name, schema).build()
            self.cache.put(schema, updated)
        return self.new_record(record, updated, Struct(updated).put(self.field_name, value))


class HoistFieldKey(HoistField, KeyMixin):
    pass


class HoistFieldValue(HoistField, ValueMixin):
    pass


# -- ExtractField -------------------------------------------------------------------------------

def parse_field_path(path: str, version: str) -> list[str]:
    """KIP-821's field paths: V1 a single name; V2 dot-separated names, a name in backticks
    may hold dots (and \\` for a backtick)."""
    if version == "V1":
        return [path]
    steps: list[str] = []
    current: list[str] = []
    i = 0
    quoted = False
    while i < len(path):
        char = path[i]
        if quoted:
            if char == "\\" and i + 1 < len(path) and path[i + 1] == "`":
                current.append("`")
                i += 2
                continue
            if char == "`" and (i + 1 == len(path) or path[i + 1] == "."):
                quoted = False
            else:
                current.append(char)
        elif char == "`" and not current:
            quoted = True
        elif char == ".":
            steps.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    steps.append("".join(current))
    return steps


def _path_value(value: Any, steps: list[str]) -> Any:
    for step in steps:
        if value is None:
            return None
        value = value.get(step) if isinstance(value, Mapping | Struct) else None
    return value


def _path_field(schema: Schema, steps: list[str]) -> Field | None:
    found: Field | None = None
    current: Schema | None = schema
    for step in steps:
        if current is None or current.type is not Type.STRUCT:
            return None
        found = current.field(step)
        if found is None:
            return None
        current = found.schema
    return found


FIELD_SYNTAX_VERSION = "field.syntax.version"


def _field_syntax_def(d: ConfigDef) -> ConfigDef:
    return d.define(FIELD_SYNTAX_VERSION, ConfigType.STRING, "V1", Importance.HIGH,
                    "Defines the version of the syntax to access fields. V1: a single field "
                    "name; V2: nested fields separated by dots, backticks around names with "
                    "dots.", validator=ValidString.in_("V1", "V2"))


class ExtractField(Transform, KeyOrValue):
    """Replace the key or value with one of its fields (KIP-821 nested paths with
    field.syntax.version=V2)."""

    PURPOSE = "field extraction"
    CONFIG_DEF = _field_syntax_def(ConfigDef().define(
        "field", ConfigType.STRING, importance=Importance.MEDIUM,
        doc="Field name to extract.", validator=NonEmptyString()))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.original_path: str = self.config.get("field")
        self.path = parse_field_path(self.original_path, self.config.get(FIELD_SYNTAX_VERSION))

    def apply(self, record: R) -> R | None:
        schema = self.operating_schema(record)
        if schema is None:
            value = require_map_or_null(self.operating_value(record), self.PURPOSE)
            return self.new_record(record, None,
                                   None if value is None else _path_value(value, self.path))
        struct = require_struct_or_null(self.operating_value(record), self.PURPOSE)
        found = _path_field(schema, self.path)
        if found is None:
            raise DataException(f"Unknown field: {self.original_path}")
        return self.new_record(record, found.schema,
                               None if struct is None else _path_value(struct, self.path))


class ExtractFieldKey(ExtractField, KeyMixin):
    pass


class ExtractFieldValue(ExtractField, ValueMixin):
    pass


# -- ValueToKey ---------------------------------------------------------------------------------

class ValueToKey(Transform):
    """Replace the key with a struct (or map) of some of the value's fields."""

    PURPOSE = "copying fields from value to key"
    CONFIG_DEF = _replace_null_def(ConfigDef().define(
        "fields", ConfigType.LIST, importance=Importance.HIGH,
        doc="Field names on the record value to extract as the record key.",
        validator=NonEmptyListValidator()))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.fields: list[str] = self.config.get_list("fields")
        self.replace_null = bool(self.config.get(REPLACE_NULL))
        self.cache = SchemaCache()

    def apply(self, record: R) -> R | None:
        if record.value_schema is None:
            value = require_map(record.value, self.PURPOSE)
            key = {f: value.get(f) for f in self.fields}
            return record.new_record(record.topic, record.kafka_partition, None, key,
                                     record.value_schema, record.value, record.timestamp)
        struct = require_struct(record.value, self.PURPOSE)
        key_schema = self.cache.get(struct.schema)
        if key_schema is None:
            builder = SchemaBuilder.struct()
            for name in self.fields:
                f = struct.schema.field(name)
                if f is None:
                    raise DataException(f"Field does not exist: {name}")
                builder.field(name, f.schema)
            key_schema = builder.build()
            self.cache.put(struct.schema, key_schema)
        key_struct = Struct(key_schema)
        for name in self.fields:
            key_struct.put(name, struct_value(struct, name, self.replace_null))
        return record.new_record(record.topic, record.kafka_partition, key_schema, key_struct,
                                 record.value_schema, record.value, record.timestamp)


# -- Flatten ------------------------------------------------------------------------------------

class Flatten(Transform, KeyOrValue):
    """Flatten nested structs (with schemas) or maps (without) into one level, names joined
    with `delimiter`; arrays (and, with schemas, maps) stay as they are."""

    PURPOSE = "flattening"
    CONFIG_DEF = ConfigDef().define(
        "delimiter", ConfigType.STRING, ".", Importance.MEDIUM,
        "Delimiter to insert between field names from the input record when generating field "
        "names for the output record")

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.delimiter: str = self.config.get("delimiter")
        self.cache = SchemaCache()

    def _name(self, prefix: str, name: str) -> str:
        return name if not prefix else prefix + self.delimiter + name

    def apply(self, record: R) -> R | None:
        raw = self.operating_value(record)
        if raw is None:
            return record
        if self.operating_schema(record) is None:
            out: dict[str, Any] = {}
            self._flatten_map(require_map(raw, self.PURPOSE), "", out)
            return self.new_record(record, None, out)
        struct = require_struct(raw, self.PURPOSE)
        schema = self.cache.get(struct.schema)
        if schema is None:
            builder = copy_schema_basics(struct.schema, SchemaBuilder.struct())
            self._flatten_schema(struct.schema, "", builder, False)
            schema = builder.build()
            self.cache.put(struct.schema, schema)
        result = Struct(schema)
        self._flatten_struct(struct, "", result)
        return self.new_record(record, schema, result)

    def _flatten_map(self, value: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
        for key, item in value.items():
            name = self._name(prefix, str(key))
            if isinstance(item, Mapping):
                self._flatten_map(item, name, out)
            elif item is None or isinstance(item, bool | int | float | str | bytes | bytearray
                                            | list | tuple | _decimal.Decimal | _dt.date
                                            | _dt.time):
                out[name] = item
            else:
                raise DataException(f"Flatten transformation does not support {type(item)} "
                                    f"for record without schemas (for field {name}).")

    def _flatten_schema(self, schema: Schema, prefix: str, builder: SchemaBuilder,
                        optional: bool) -> None:
        for f in schema.fields:
            name = self._name(prefix, f.name)
            field_optional = optional or f.schema.optional
            if f.schema.type is Type.STRUCT:
                self._flatten_schema(f.schema, name, builder, field_optional)
            else:
                builder.field(name, _convert_field_schema(f.schema, field_optional))

    def _flatten_struct(self, struct: Struct, prefix: str, out: Struct) -> None:
        for f in struct.schema.fields:
            name = self._name(prefix, f.name)
            value = struct.get_without_default(f.name)
            if f.schema.type is Type.STRUCT:
                if value is not None:
                    self._flatten_struct(value, name, out)
            else:
                out.put(name, value)


def _convert_field_schema(orig: Schema, optional: bool) -> Schema:
    builder = copy_schema_basics(orig)
    if optional:
        builder.optional()
    if orig.default is not None:
        builder.default_value(orig.default)
    return builder.build()


class FlattenKey(Flatten, KeyMixin):
    pass


class FlattenValue(Flatten, ValueMixin):
    pass
