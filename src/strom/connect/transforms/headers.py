"""HeaderFrom, InsertHeader and DropHeaders, as Kafka's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strom.connect.config import ConfigDef, ConfigException, ConfigType, Importance, ValidString
from strom.connect.data import Headers, Schema, SchemaBuilder, Struct
from strom.connect.transforms.base import (
    KeyMixin,
    KeyOrValue,
    R,
    SchemaCache,
    Transform,
    ValueMixin,
    copy_schema_basics,
    require_map,
    require_struct,
    struct_value,
)
from strom.connect.transforms.fields import NonEmptyListValidator
from strom.connect.values import parse_string


class HeaderFrom(Transform, KeyOrValue):
    """Copy or move fields of the key/value into headers (`fields`[i] -> `headers`[i])."""

    CONFIG_DEF = (
        ConfigDef()
        .define("fields", ConfigType.LIST, importance=Importance.HIGH,
                doc="Field names in the record whose values are to be copied or moved to "
                    "headers.", validator=NonEmptyListValidator())
        .define("headers", ConfigType.LIST, importance=Importance.HIGH,
                doc="Header names, in the same order as the field names listed in the fields "
                    "configuration property.", validator=NonEmptyListValidator())
        .define("operation", ConfigType.STRING, importance=Importance.HIGH,
                doc="Either move if the fields are to be moved to the headers (removed from "
                    "the key/value), or copy if the fields are to be copied to the headers "
                    "(retained in the key/value).", validator=ValidString.in_("move", "copy"))
        .define("replace.null.with.default", ConfigType.BOOLEAN, True, Importance.MEDIUM,
                "Whether to replace fields that have a default value and that are null to the "
                "default value."))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.fields: list[str] = self.config.get_list("fields")
        self.headers: list[str] = self.config.get_list("headers")
        if len(self.fields) != len(self.headers):
            raise ConfigException("headers", self.headers, "'fields' config must have the same "
                                  "number of elements as 'headers' config.")
        self.move = self.config.get("operation") == "move"
        self.replace_null = bool(self.config.get("replace.null.with.default"))
        self.cache = SchemaCache()

    def apply(self, record: R) -> R | None:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        headers = record.headers.copy()
        purpose = "header " + ("move" if self.move else "copy")
        if schema is None:
            source = require_map(value, purpose)
            updated = dict(source)
            for name, header in zip(self.fields, self.headers, strict=True):
                headers.add(header, source.get(name))
                if self.move:
                    updated.pop(name, None)
            return self.new_record(record, None, updated if self.move else value, headers)
        struct = require_struct(value, purpose)
        for name, header in zip(self.fields, self.headers, strict=True):
            f = struct.schema.field(name)
            headers.add(header, None if f is None else struct_value(struct, name,
                                                                     self.replace_null),
                        None if f is None else f.schema)
        if not self.move:
            return self.new_record(record, schema, value, headers)
        moved = self._moved_schema(struct.schema)
        updated_struct = Struct(moved)
        for f in moved.fields:
            updated_struct.put(f.name, struct_value(struct, f.name, self.replace_null))
        return self.new_record(record, moved, updated_struct, headers)

    def _moved_schema(self, schema: Schema) -> Schema:
        cached = self.cache.get(schema)
        if cached is None:
            builder = copy_schema_basics(schema, SchemaBuilder.struct())
            for f in schema.fields:
                if f.name not in self.fields:
                    builder.field(f.name, f.schema)
            cached = builder.build()
            self.cache.put(schema, cached)
        return cached


class HeaderFromKey(HeaderFrom, KeyMixin):
    pass


class HeaderFromValue(HeaderFrom, ValueMixin):
    pass


class InsertHeader(Transform):
    """Add header `header` with `value.literal` (its schema inferred as Values.parseString)."""

    CONFIG_DEF = (
        ConfigDef()
        .define("header", ConfigType.STRING, importance=Importance.HIGH,
                doc="The name of the header.")
        .define("value.literal", ConfigType.STRING, importance=Importance.HIGH,
                doc="The literal value that is to be set as the header value on all records."))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.header: str = self.config.get("header")
        literal = configs.get("value.literal")
        self.literal = parse_string(literal if isinstance(literal, str)
                                    else str(self.config.get("value.literal")))

    def apply(self, record: R) -> R | None:
        headers = record.headers.copy()
        headers.add(self.header, self.literal.value, self.literal.schema)
        return record.new_record(record.topic, record.kafka_partition, record.key_schema,
                                 record.key, record.value_schema, record.value,
                                 record.timestamp, headers)


class DropHeaders(Transform):
    """Remove the headers named in `headers`."""

    CONFIG_DEF = ConfigDef().define(
        "headers", ConfigType.LIST, importance=Importance.HIGH,
        doc="The name of the headers to be removed.", validator=NonEmptyListValidator())

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.names = set(self.config.get_list("headers"))

    def apply(self, record: R) -> R | None:
        kept = Headers([h for h in record.headers if h.key not in self.names])
        return record.new_record(record.topic, record.kafka_partition, record.key_schema,
                                 record.key, record.value_schema, record.value,
                                 record.timestamp, kept)
