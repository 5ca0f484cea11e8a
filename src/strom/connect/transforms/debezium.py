"""Debezium's ExtractNewRecordState (io.debezium.transforms.ExtractNewRecordState): a change
event envelope ``{before, after, source, op, ts_ms}`` becomes the row state after the change,
so sinks that want flat rows (the PostgreSQL sink) take CDC topics.

- create/read/update events (op ``c``, ``r``, ``u``): the value becomes ``after``.
- delete events (op ``d``): by `delete.handling.mode` — ``drop`` (default) removes them,
  ``rewrite`` gives ``before`` with ``__deleted: "true"`` (other events then carry
  ``__deleted: "false"``), ``none`` keeps them with a null value.
- tombstones (null values): dropped when `drop.tombstones` (default true), kept otherwise.
- the newer `delete.tombstone.handling.mode` replaces both: ``drop`` (deletes and tombstones
  removed), ``tombstone`` (deletes removed, tombstones kept), ``rewrite`` (deletes rewritten,
  tombstones removed), ``rewrite-with-tombstone`` (deletes rewritten, tombstones kept),
  ``delete-to-tombstone`` (deletes become tombstones, the original tombstones removed).
- `add.fields`: envelope metadata added as optional fields named `add.fields.prefix` (``__``)
  + the name (dots become underscores): ``op``, ``ts_ms``, source fields by their name
  (``table``, ``lsn``) or path (``source.ts_ms``). `add.headers` does the same as headers
  (`add.headers.prefix`, ``__``).
- truncate events (op ``t``) are dropped; records that are not envelopes pass unchanged.

Envelopes are Structs (with schemas) or dicts (schemaless JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strom.connect.config import ConfigDef, ConfigException, ConfigType, Importance
from strom.connect.data import (
    OPTIONAL_STRING_SCHEMA,
    Schema,
    SchemaBuilder,
    Struct,
    Type,
)
from strom.connect.transforms.base import R, SchemaCache, Transform

DELETED_FIELD = "__deleted"
_LEGACY_MODES = ("drop", "rewrite", "none")
_MODES = ("drop", "tombstone", "rewrite", "rewrite-with-tombstone", "delete-to-tombstone")


def _optional(schema: Schema) -> Schema:
    if schema.optional:
        return schema
    return Schema(schema.type, True, None, schema.name, schema.version, schema.doc,
                  schema.parameters, schema.key_schema, schema.value_schema, schema.fields)


class ExtractNewRecordState(Transform):
    """io.debezium.transforms.ExtractNewRecordState."""

    CONFIG_DEF = (
        ConfigDef()
        .define("drop.tombstones", ConfigType.BOOLEAN, True, Importance.LOW,
                "Drop tombstone records (deprecated: delete.tombstone.handling.mode)")
        .define("delete.handling.mode", ConfigType.STRING, "drop", Importance.MEDIUM,
                "How delete events are handled: drop, rewrite (before + __deleted) or none "
                "(kept with a null value) (deprecated: delete.tombstone.handling.mode)")
        .define("delete.tombstone.handling.mode", ConfigType.STRING, None, Importance.MEDIUM,
                "drop, tombstone, rewrite, rewrite-with-tombstone or delete-to-tombstone")
        .define("add.fields", ConfigType.LIST, "", Importance.LOW,
                "Envelope fields added to the value (op, ts_ms, source fields)")
        .define("add.fields.prefix", ConfigType.STRING, "__", Importance.LOW,
                "Prefix of the added fields' names")
        .define("add.headers", ConfigType.LIST, "", Importance.LOW,
                "Envelope fields added as headers")
        .define("add.headers.prefix", ConfigType.STRING, "__", Importance.LOW,
                "Prefix of the added headers' names"))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        mode = self.config.get("delete.tombstone.handling.mode")
        if mode is not None and str(mode).strip():
            mode = str(mode).strip().lower()
            if mode not in _MODES:
                raise ConfigException("delete.tombstone.handling.mode", mode,
                                      "The value must be one of " + ", ".join(_MODES))
            self.delete_mode = {"drop": "drop", "tombstone": "drop", "rewrite": "rewrite",
                                "rewrite-with-tombstone": "rewrite",
                                "delete-to-tombstone": "tombstone"}[mode]
            self.keep_tombstones = mode in ("tombstone", "rewrite-with-tombstone")
        else:
            legacy = str(self.config.get("delete.handling.mode")).strip().lower()
            if legacy not in _LEGACY_MODES:
                raise ConfigException("delete.handling.mode", legacy,
                                      "The value must be one of drop, rewrite, none")
            self.delete_mode = legacy
            self.keep_tombstones = not self.config.get("drop.tombstones")
        self.add_fields: list[str] = [f.strip() for f in self.config.get("add.fields") or []
                                      if f.strip()]
        self.add_headers: list[str] = [f.strip() for f in self.config.get("add.headers") or []
                                       if f.strip()]
        self.fields_prefix: str = self.config.get("add.fields.prefix") or ""
        self.headers_prefix: str = self.config.get("add.headers.prefix") or ""
        self._schemas = SchemaCache()

    # -- the envelope -------------------------------------------------------------------------

    @staticmethod
    def _is_envelope(value: Any) -> bool:
        if isinstance(value, Struct):
            names = {f.name for f in value.schema.fields}
        elif isinstance(value, Mapping):
            names = set(value)
        else:
            return False
        return "op" in names and ("after" in names or "before" in names)

    @staticmethod
    def _get(value: Any, name: str) -> Any:
        if isinstance(value, Struct):
            return value.get(name) if value.schema.field(name) is not None else None
        if isinstance(value, Mapping):
            return value.get(name)
        return None

    @staticmethod
    def _field_schema(schema: Schema | None, name: str) -> Schema | None:
        if schema is None or schema.type is not Type.STRUCT:
            return None
        found = schema.field(name)
        return found.schema if found is not None else None

    def _metadata(self, envelope: Any, schema: Schema | None, path: str
                  ) -> tuple[Schema | None, Any]:
        """The schema and value of an `add.fields` entry: a top-level field (op, ts_ms), a
        source field by name, or a dotted path (source.ts_ms)."""
        parts = path.split(".")
        if len(parts) == 1 and self._field_schema(schema, path) is None and (
                not isinstance(envelope, Mapping) or path not in envelope):
            parts = ["source", path]
        value, current = envelope, schema
        for part in parts:
            current = self._field_schema(current, part)
            value = self._get(value, part)
        return current, value

    # -- apply --------------------------------------------------------------------------------

    def apply(self, record: R) -> R | None:
        value = record.value
        if value is None:
            return record if self.keep_tombstones else None
        if not self._is_envelope(value):
            return record
        op = self._get(value, "op")
        if op == "t" or (op == "d" and self.delete_mode == "drop"):
            return None
        if op == "d" and self.delete_mode == "tombstone":
            return record.new_record(record.topic, record.kafka_partition, record.key_schema,
                                     record.key, None, None, record.timestamp)
        deleted = op == "d"
        if deleted and self.delete_mode == "none":
            state = None
        else:
            state = self._get(value, "before" if deleted else "after")
        headers = record.headers.copy()
        for path in self.add_headers:
            hschema, hvalue = self._metadata(value, record.value_schema, path)
            headers.add(self.headers_prefix + path.replace(".", "_"), hvalue,
                        _optional(hschema) if hschema is not None else None)
        schema: Schema | None = None
        row: Struct | dict[str, Any] | None
        if isinstance(value, Struct):
            schema, row = self._struct_state(value, record.value_schema, state, deleted)
        else:
            row = self._map_state(value, state, deleted)
        return record.new_record(record.topic, record.kafka_partition, record.key_schema,
                                 record.key, schema, row, record.timestamp, headers)

    def _struct_state(self, envelope: Struct, envelope_schema: Schema | None, state: Any,
                      deleted: bool) -> tuple[Schema | None, Struct | None]:
        """The new value and its schema (the row's, plus added fields) of a Struct envelope."""
        state_field = envelope_schema.field("before" if deleted else "after") \
            if envelope_schema is not None else None
        state_schema = state_field.schema if state_field is not None else None
        if state is None or state_schema is None or envelope_schema is None:
            return state_schema, None
        rewrite = self.delete_mode == "rewrite"
        new_schema = self._updated_schema(envelope_schema, state_schema, rewrite)
        out = Struct(new_schema)
        for f in state.schema.fields:
            out.put(f.name, state.get_without_default(f.name))
        for path in self.add_fields:
            out.put(self.fields_prefix + path.replace(".", "_"),
                    self._metadata(envelope, envelope_schema, path)[1])
        if rewrite:
            out.put(DELETED_FIELD, "true" if deleted else "false")
        return new_schema, out

    def _map_state(self, envelope: Any, state: Any, deleted: bool) -> dict[str, Any] | None:
        """The new value of a schemaless envelope."""
        if state is None:
            return None
        row = dict(state)
        for path in self.add_fields:
            row[self.fields_prefix + path.replace(".", "_")] = self._metadata(envelope, None,
                                                                              path)[1]
        if self.delete_mode == "rewrite":
            row[DELETED_FIELD] = "true" if deleted else "false"
        return row

    def _updated_schema(self, envelope_schema: Schema, state_schema: Schema,
                        rewrite: bool) -> Schema:
        cache_key = (envelope_schema, state_schema, rewrite)
        found = self._schemas.get(cache_key)
        if found is not None:
            return found
        if not self.add_fields and not rewrite:
            schema = state_schema
        else:
            builder = SchemaBuilder.struct().name(state_schema.name).version(
                state_schema.version).doc(state_schema.doc)
            if state_schema.optional:
                builder.optional()
            for f in state_schema.fields:
                builder.field(f.name, f.schema)
            for path in self.add_fields:
                fschema, _ = self._metadata(None, envelope_schema, path)
                if fschema is None:
                    raise ConfigException("add.fields", path,
                                          "not a field of the change event envelope")
                builder.field(self.fields_prefix + path.replace(".", "_"), _optional(fschema))
            if rewrite:
                builder.field(DELETED_FIELD, OPTIONAL_STRING_SCHEMA)
            schema = builder.build()
        self._schemas.put(cache_key, schema)
        return schema
