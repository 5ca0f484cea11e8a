"""Cast: fields (spec `a:int32,b:string`) or the whole value (spec `int64`) to another
primitive type, as Kafka's org.apache.kafka.connect.transforms.Cast."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal as _decimal
import struct
from collections.abc import Mapping
from typing import Any

from strom.connect.config import ConfigDef, ConfigException, ConfigType, Importance
from strom.connect.data import Schema, SchemaBuilder, Struct, Type, datetime_to_millis
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
    require_struct,
    struct_value,
)
from strom.connect.values import convert_to_string

WHOLE_VALUE_CAST: str | None = None
_OUTPUT_TYPES = (Type.INT8, Type.INT16, Type.INT32, Type.INT64, Type.FLOAT32, Type.FLOAT64,
                 Type.BOOLEAN, Type.STRING)
_INPUT_TYPES = (*_OUTPUT_TYPES, Type.BYTES)
_BITS = {Type.INT8: 8, Type.INT16: 16, Type.INT32: 32, Type.INT64: 64}


def _types_text(types: tuple[Type, ...]) -> str:
    return "[" + ", ".join(t.name for t in types) + "]"


def _valid_output(type_: Type) -> Type:
    if type_ not in _OUTPUT_TYPES:
        raise ConfigException(f"Cast transformation does not support casting to {type_.name}; "
                              f"supported types are {_types_text(_OUTPUT_TYPES)}")
    return type_


def _type_named(text: str) -> Type:
    try:
        return Type[text.strip().upper()]
    except KeyError:
        raise ConfigException(f"Invalid type found in casting spec: {text.strip()}") from None


def parse_spec(mappings: list[str]) -> dict[str | None, Type]:
    casts: dict[str | None, Type] = {}
    whole = False
    for mapping in mappings:
        parts = mapping.split(":")
        if len(parts) > 2:
            raise ConfigException("spec", mappings, f"Invalid rename mapping: {mapping}")
        if len(parts) == 1:
            casts[WHOLE_VALUE_CAST] = _valid_output(_type_named(parts[0]))
            whole = True
        else:
            casts[parts[0].strip()] = _valid_output(_type_named(parts[1]))
    if whole and len(mappings) > 1:
        raise ConfigException("Cast transformations that specify a type to cast the entire "
                              "value to may ony specify a single cast in their spec")
    return casts


def _wrap(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _to_number(value: Any) -> int | float | _decimal.Decimal:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int | float | _decimal.Decimal):
        return value
    if isinstance(value, str):
        return _decimal.Decimal(value.strip())
    raise DataException(f"Unexpected type in Cast transformation: {type(value)}")


def _cast(value: Any, target: Type) -> Any:
    if target is Type.STRING:
        if isinstance(value, bytes | bytearray):
            return base64.b64encode(bytes(value)).decode("ascii")
        return convert_to_string(None, value)
    if target is Type.BOOLEAN:
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return _to_number(value) != 0
    try:
        number = _to_number(value)
    except _decimal.InvalidOperation as exc:
        raise DataException(f"Value {value!r} cannot be cast to {target.name}") from exc
    if target in _BITS:
        if isinstance(value, str) and number != int(number):
            raise DataException(f'For input string: "{value}"')
        return _wrap(int(number), _BITS[target])
    as_float = float(number)
    if target is Type.FLOAT32:
        try:
            return float(struct.unpack(">f", struct.pack(">f", as_float))[0])
        except OverflowError:
            return as_float
    return as_float


def _input_type(schema: Schema | None, value: Any) -> Type:
    if schema is not None:
        return schema.type
    for kind, type_ in ((bool, Type.BOOLEAN), (int, Type.INT64), (float, Type.FLOAT64),
                        (str, Type.STRING), ((bytes, bytearray), Type.BYTES)):
        if isinstance(value, kind):
            return type_
    raise DataException(f"Cast transformation was passed a value of type {type(value)} which "
                        "is not supported by Connect's data API")


def cast_value(schema: Schema | None, value: Any, target: Type) -> Any:
    if value is None:
        return None
    input_type = Type.FLOAT64 if isinstance(value, _decimal.Decimal) else \
        _input_type(schema, value)
    if input_type not in _INPUT_TYPES:
        raise DataException(f"Cast transformation does not support casting from "
                            f"{input_type.name}; supported types are "
                            f"{_types_text(_INPUT_TYPES)}")
    if input_type is Type.BYTES and target is not Type.STRING:
        raise DataException(f"Unexpected type in Cast transformation: {input_type.name} to "
                            f"{target.name}")
    if isinstance(value, _dt.datetime | _dt.date | _dt.time) and target is not Type.STRING:
        if isinstance(value, _dt.datetime):
            value = datetime_to_millis(value)
        elif isinstance(value, _dt.date):
            value = (value - _dt.date(1970, 1, 1)).days
        else:
            value = ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + \
                value.microsecond // 1000
    return _cast(value, target)


class Cast(Transform, KeyOrValue):
    """Cast fields or the whole key/value to INT8..FLOAT64, BOOLEAN or STRING."""

    PURPOSE = "cast types"
    CONFIG_DEF = ConfigDef().define(
        "spec", ConfigType.LIST, importance=Importance.HIGH,
        doc="List of fields and the type to cast them to of the form field1:type,field2:type "
            "to cast fields of Maps or Structs. A single type to cast the entire value. Valid "
            "types are int8, int16, int32, int64, float32, float64, boolean, and string.")
    CONFIG_DEF.define("replace.null.with.default", ConfigType.BOOLEAN, True, Importance.MEDIUM,
                      "Whether to replace fields that have a default value and that are null "
                      "to the default value.")

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        spec = self.config.get_list("spec")
        if not spec:
            raise ConfigException("spec", spec, "Must specify at least one field to cast.")
        self.casts = parse_spec(spec)
        self.whole_value = WHOLE_VALUE_CAST in self.casts
        self.replace_null = bool(self.config.get("replace.null.with.default"))
        self.cache = SchemaCache()

    def apply(self, record: R) -> R | None:
        value = self.operating_value(record)
        if value is None:
            return record
        schema = self.operating_schema(record)
        if schema is None:
            return self._apply_schemaless(record, value)
        return self._apply_with_schema(record, schema, value)

    def _apply_schemaless(self, record: R, raw: Any) -> R:
        if self.whole_value:
            return self.new_record(record, None,
                                   cast_value(None, raw, self.casts[WHOLE_VALUE_CAST]))
        value = require_map(raw, self.PURPOSE)
        updated = {k: cast_value(None, v, self.casts[k]) if k in self.casts else v
                   for k, v in value.items()}
        return self.new_record(record, None, updated)

    def _target_schema(self, source: Schema, target: Type) -> Schema:
        builder = SchemaBuilder(target)
        if source.optional:
            builder.optional()
        if source.default is not None:
            builder.default_value(cast_value(source, source.default, target))
        return builder.build()

    def _updated_schema(self, schema: Schema) -> Schema:
        if self.whole_value:
            return self._target_schema(schema, self.casts[WHOLE_VALUE_CAST])
        if schema.type is not Type.STRUCT:
            raise DataException(f"Only Struct objects supported for [{self.PURPOSE}], found: "
                                f"{schema.type}")
        builder = copy_schema_basics(schema, SchemaBuilder.struct())
        for f in schema.fields:
            target = self.casts.get(f.name)
            builder.field(f.name, f.schema if target is None
                          else self._target_schema(f.schema, target))
        if schema.optional:
            builder.optional()
        return builder.build()

    def _apply_with_schema(self, record: R, schema: Schema, raw: Any) -> R:
        updated_schema = self.cache.get(schema)
        if updated_schema is None:
            updated_schema = self._updated_schema(schema)
            self.cache.put(schema, updated_schema)
        if self.whole_value:
            return self.new_record(record, updated_schema, cast_value(
                schema, raw, self.casts[WHOLE_VALUE_CAST]))
        value = require_struct(raw, self.PURPOSE)
        updated = Struct(updated_schema)
        for f in value.schema.fields:
            original = struct_value(value, f.name, self.replace_null)
            target = self.casts.get(f.name)
            updated.put(f.name, original if target is None
                        else cast_value(f.schema, original, target))
        return self.new_record(record, updated_schema, updated)


class CastKey(Cast, KeyMixin):
    pass


class CastValue(Cast, ValueMixin):
    pass
