"""Kafka Connect's data model (org.apache.kafka.connect.data and .header) in Python.

A `Schema` is a frozen dataclass: a type (`Type`, Kafka's twelve), optionality, a default, a
name/version/doc, string parameters, and the nested schemas of arrays (`value_schema`), maps
(`key_schema`, `value_schema`) and structs (`fields`). Schemas compare by value (as Kafka's
ConnectSchema.equals) and hash, so converters and transforms cache by schema.

Values are plain Python objects, checked by `validate_value` as Kafka's ConnectSchema:

    INT8/INT16/INT32/INT64  int (not bool), within the type's range
    FLOAT32/FLOAT64         float
    BOOLEAN                 bool
    STRING                  str
    BYTES                   bytes, bytearray
    ARRAY                   list or tuple
    MAP                     dict (any Mapping)
    STRUCT                  Struct, with an equal schema

The logical types keep Kafka's names and encodings: Decimal (`decimal.Decimal`, the unscaled
two's-complement big-endian bytes, parameter `scale`), Date (`datetime.date`, days since the
epoch as INT32), Time (`datetime.time`, milliseconds since midnight as INT32) and Timestamp
(`datetime.datetime`, milliseconds since the epoch as INT64; naive datetimes are UTC).
"""

from __future__ import annotations

import builtins
import datetime as _dt
import decimal as _decimal
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from strom.connect.errors import DataException, SchemaBuilderException

__all__ = [
    "BOOLEAN_SCHEMA", "BYTES_SCHEMA", "FLOAT32_SCHEMA", "FLOAT64_SCHEMA", "INT8_SCHEMA",
    "INT16_SCHEMA", "INT32_SCHEMA", "INT64_SCHEMA", "OPTIONAL_BOOLEAN_SCHEMA",
    "OPTIONAL_BYTES_SCHEMA", "OPTIONAL_FLOAT32_SCHEMA", "OPTIONAL_FLOAT64_SCHEMA",
    "OPTIONAL_INT8_SCHEMA", "OPTIONAL_INT16_SCHEMA", "OPTIONAL_INT32_SCHEMA",
    "OPTIONAL_INT64_SCHEMA", "OPTIONAL_STRING_SCHEMA", "STRING_SCHEMA", "DataException", "Date",
    "Decimal", "Field", "Header", "Headers", "Schema", "SchemaAndValue", "SchemaBuilder", "Struct",
    "Time", "Timestamp", "Type", "validate_value",
]


class Type(enum.Enum):
    """Kafka's Schema.Type; the value is Kafka's lowercase name (Type.getName())."""

    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOLEAN = "boolean"
    STRING = "string"
    BYTES = "bytes"
    ARRAY = "array"
    MAP = "map"
    STRUCT = "struct"

    @property
    def is_primitive(self) -> bool:
        return self not in (Type.ARRAY, Type.MAP, Type.STRUCT)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Field:
    """A struct's field: its name, its position and its schema."""

    name: str
    index: int
    schema: Schema

    def __repr__(self) -> str:
        return f"Field{{name={self.name}, index={self.index}, schema={self.schema!r}}}"


@dataclass(frozen=True)
class Schema:
    """Kafka's ConnectSchema: immutable, compared by value."""

    type: Type
    optional: bool = False
    default: Any = None
    name: str | None = None
    version: int | None = None
    doc: str | None = None
    parameters: Mapping[str, str] | None = None
    key_schema: Schema | None = None
    value_schema: Schema | None = None
    fields: tuple[Field, ...] = ()

    def __post_init__(self) -> None:
        if self.parameters is not None:
            object.__setattr__(self, "parameters", dict(self.parameters))
        object.__setattr__(self, "fields", tuple(self.fields))
        if self.fields and self.type is not Type.STRUCT:
            raise DataException("Cannot specify fields on non-struct schema")
        if self.key_schema is not None and self.type is not Type.MAP:
            raise DataException("Cannot specify key schema on non-map schema")
        if self.value_schema is not None and self.type not in (Type.ARRAY, Type.MAP):
            raise DataException("Cannot specify value schema on non-array or non-map schema")

    def __hash__(self) -> int:
        params = frozenset(self.parameters.items()) if self.parameters else None
        return hash((self.type, self.optional, self.name, self.version, self.doc, params,
                     self.key_schema, self.value_schema, self.fields))

    def __repr__(self) -> str:
        if self.name is not None:
            return f"Schema{{{self.name}:{self.type}}}"
        return f"Schema{{{self.type}}}"

    def field(self, name: str) -> Field | None:
        """The struct field called `name`, or None (DataException on a non-struct schema)."""
        if self.type is not Type.STRUCT:
            raise DataException("Cannot look up fields on non-struct type")
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def schema(self) -> Schema:
        """Itself (Kafka's Schema.schema(), so builders and schemas read alike)."""
        return self


class SchemaAndValue(NamedTuple):
    schema: Schema | None
    value: Any


SchemaAndValue.NULL = SchemaAndValue(None, None)  # type: ignore[attr-defined]

INT8_SCHEMA = Schema(Type.INT8)
INT16_SCHEMA = Schema(Type.INT16)
INT32_SCHEMA = Schema(Type.INT32)
INT64_SCHEMA = Schema(Type.INT64)
FLOAT32_SCHEMA = Schema(Type.FLOAT32)
FLOAT64_SCHEMA = Schema(Type.FLOAT64)
BOOLEAN_SCHEMA = Schema(Type.BOOLEAN)
STRING_SCHEMA = Schema(Type.STRING)
BYTES_SCHEMA = Schema(Type.BYTES)
OPTIONAL_INT8_SCHEMA = Schema(Type.INT8, optional=True)
OPTIONAL_INT16_SCHEMA = Schema(Type.INT16, optional=True)
OPTIONAL_INT32_SCHEMA = Schema(Type.INT32, optional=True)
OPTIONAL_INT64_SCHEMA = Schema(Type.INT64, optional=True)
OPTIONAL_FLOAT32_SCHEMA = Schema(Type.FLOAT32, optional=True)
OPTIONAL_FLOAT64_SCHEMA = Schema(Type.FLOAT64, optional=True)
OPTIONAL_BOOLEAN_SCHEMA = Schema(Type.BOOLEAN, optional=True)
OPTIONAL_STRING_SCHEMA = Schema(Type.STRING, optional=True)
OPTIONAL_BYTES_SCHEMA = Schema(Type.BYTES, optional=True)


class SchemaBuilder:
    """Kafka's fluent SchemaBuilder: `SchemaBuilder.struct().name("x").field("a",
    INT32_SCHEMA).optional().build()`. Setting a property twice, or a field name twice, raises
    SchemaBuilderException as Kafka's does."""

    def __init__(self, type_: Type) -> None:
        self._type = type_
        self._optional: bool | None = None
        self._default: Any = None
        self._name: str | None = None
        self._version: int | None = None
        self._doc: str | None = None
        self._parameters: dict[str, str] | None = None
        self._key_schema: Schema | None = None
        self._value_schema: Schema | None = None
        self._fields: dict[str, Field] | None = {} if type_ is Type.STRUCT else None

    # -- factories (Kafka's static methods)
    @staticmethod
    def type(type_: Type) -> SchemaBuilder:
        return SchemaBuilder(type_)

    @staticmethod
    def int8() -> SchemaBuilder:
        return SchemaBuilder(Type.INT8)

    @staticmethod
    def int16() -> SchemaBuilder:
        return SchemaBuilder(Type.INT16)

    @staticmethod
    def int32() -> SchemaBuilder:
        return SchemaBuilder(Type.INT32)

    @staticmethod
    def int64() -> SchemaBuilder:
        return SchemaBuilder(Type.INT64)

    @staticmethod
    def float32() -> SchemaBuilder:
        return SchemaBuilder(Type.FLOAT32)

    @staticmethod
    def float64() -> SchemaBuilder:
        return SchemaBuilder(Type.FLOAT64)

    @staticmethod
    def bool() -> SchemaBuilder:
        return SchemaBuilder(Type.BOOLEAN)

    @staticmethod
    def string() -> SchemaBuilder:
        return SchemaBuilder(Type.STRING)

    @staticmethod
    def bytes() -> SchemaBuilder:
        return SchemaBuilder(Type.BYTES)

    @staticmethod
    def struct() -> SchemaBuilder:
        return SchemaBuilder(Type.STRUCT)

    @staticmethod
    def array(value_schema: Schema | SchemaBuilder) -> SchemaBuilder:
        if value_schema is None:
            raise SchemaBuilderException("valueSchema cannot be null.")
        b = SchemaBuilder(Type.ARRAY)
        b._value_schema = value_schema.schema()
        return b

    @staticmethod
    def map(key_schema: Schema | SchemaBuilder, value_schema: Schema | SchemaBuilder,
            ) -> SchemaBuilder:
        if key_schema is None or value_schema is None:
            raise SchemaBuilderException("keySchema and valueSchema cannot be null.")
        b = SchemaBuilder(Type.MAP)
        b._key_schema = key_schema.schema()
        b._value_schema = value_schema.schema()
        return b

    # -- properties
    def _check_unset(self, prop: str, current: object, new: object) -> None:
        if current is not None and current != new:
            raise SchemaBuilderException(
                f"Invalid SchemaBuilder call: {prop} has already been set.")

    def optional(self) -> SchemaBuilder:
        self._check_unset("optional", self._optional, True)
        self._optional = True
        return self

    def required(self) -> SchemaBuilder:
        self._check_unset("optional", self._optional, False)
        self._optional = False
        return self

    def default_value(self, value: Any) -> SchemaBuilder:
        self._check_unset("default", self._default, value)
        try:
            validate_value(self.schema(), value)
        except DataException as exc:
            raise SchemaBuilderException(f"Invalid default value: {exc}") from exc
        self._default = value
        return self

    def name(self, name: str | None) -> SchemaBuilder:
        self._check_unset("name", self._name, name)
        self._name = name
        return self

    def version(self, version: int | None) -> SchemaBuilder:
        self._check_unset("version", self._version, version)
        self._version = version
        return self

    def doc(self, doc: str | None) -> SchemaBuilder:
        self._check_unset("doc", self._doc, doc)
        self._doc = doc
        return self

    def parameter(self, name: str, value: str) -> SchemaBuilder:
        if self._parameters is None:
            self._parameters = {}
        self._parameters[name] = value
        return self

    def parameters(self, props: Mapping[str, str]) -> SchemaBuilder:
        if self._parameters is None:
            self._parameters = {}
        self._parameters.update(props)
        return self

    def field(self, name: str, schema: Schema | SchemaBuilder) -> SchemaBuilder:
        if self._fields is None:
            raise SchemaBuilderException("Cannot create fields on type " + str(self._type))
        if name is None or name == "":
            raise SchemaBuilderException("fieldName cannot be null.")
        if schema is None:
            raise SchemaBuilderException("fieldSchema for field " + name + " cannot be null.")
        if name in self._fields:
            raise SchemaBuilderException(
                "Cannot create field because of field name duplication " + name)
        self._fields[name] = Field(name, len(self._fields), schema.schema())
        return self

    @property
    def fields(self) -> tuple[Field, ...]:
        if self._fields is None:
            raise DataException("Cannot list fields on non-struct type")
        return tuple(self._fields.values())

    @property
    def is_optional(self) -> builtins.bool:
        return bool(self._optional)

    def build(self) -> Schema:
        return Schema(self._type, optional=bool(self._optional), default=self._default,
                      name=self._name, version=self._version, doc=self._doc,
                      parameters=self._parameters, key_schema=self._key_schema,
                      value_schema=self._value_schema,
                      fields=tuple(self._fields.values()) if self._fields else ())

    def schema(self) -> Schema:
        return self.build()


# -- logical types --------------------------------------------------------------------------

_EPOCH_DATE = _dt.date(1970, 1, 1)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
MILLIS_PER_DAY = 24 * 60 * 60 * 1000


class Decimal:
    """org.apache.kafka.connect.data.Decimal: BYTES, the unscaled value's two's-complement
    big-endian bytes, with the scale in the `scale` parameter."""

    LOGICAL_NAME = "org.apache.kafka.connect.data.Decimal"
    SCALE_FIELD = "scale"

    @staticmethod
    def builder(scale: int) -> SchemaBuilder:
        return (SchemaBuilder.bytes().name(Decimal.LOGICAL_NAME)
                .parameter(Decimal.SCALE_FIELD, str(scale)).version(1))

    @staticmethod
    def schema(scale: int) -> Schema:
        return Decimal.builder(scale).build()

    @staticmethod
    def scale(schema: Schema) -> int:
        params = schema.parameters or {}
        text = params.get(Decimal.SCALE_FIELD)
        if text is None:
            raise DataException("Invalid Decimal schema: scale parameter not found.")
        try:
            return int(text)
        except ValueError as exc:
            raise DataException(f"Invalid scale parameter found in Decimal schema: {text}"
                                ) from exc

    @staticmethod
    def from_logical(schema: Schema, value: _decimal.Decimal) -> bytes:
        scale = Decimal.scale(schema)
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and -exponent != scale:
            raise DataException(
                f"Decimal value has mismatching scale for given Decimal schema. "
                f"Schema has scale {scale}, value has scale {-exponent}.")
        digits = value.as_tuple()
        unscaled = int("".join(map(str, digits.digits)) or "0")
        if digits.sign:
            unscaled = -unscaled
        length = max(1, (unscaled + (unscaled < 0)).bit_length() // 8 + 1)
        return unscaled.to_bytes(length, "big", signed=True)

    @staticmethod
    def to_logical(schema: Schema, value: bytes) -> _decimal.Decimal:
        unscaled = int.from_bytes(value, "big", signed=True)
        digits = tuple(int(d) for d in str(abs(unscaled)))
        return _decimal.Decimal((int(unscaled < 0), digits, -Decimal.scale(schema)))


class Date:
    """org.apache.kafka.connect.data.Date: INT32 days since the epoch."""

    LOGICAL_NAME = "org.apache.kafka.connect.data.Date"

    @staticmethod
    def builder() -> SchemaBuilder:
        return SchemaBuilder.int32().name(Date.LOGICAL_NAME).version(1)

    SCHEMA: Schema

    @staticmethod
    def from_logical(schema: Schema, value: _dt.date) -> int:
        if schema.name != Date.LOGICAL_NAME:
            raise DataException(
                "Requested conversion of Date object but the schema does not match.")
        if isinstance(value, _dt.datetime):
            ts = Timestamp.from_logical(Timestamp.SCHEMA, value)
            if ts % MILLIS_PER_DAY:
                raise DataException(
                    "Kafka Connect Date type should not have any time fields set to non-zero "
                    "values.")
            return ts // MILLIS_PER_DAY
        return (value - _EPOCH_DATE).days

    @staticmethod
    def to_logical(schema: Schema, value: int) -> _dt.date:
        if schema.name != Date.LOGICAL_NAME:
            raise DataException(
                "Requested conversion of Date object but the schema does not match.")
        return _EPOCH_DATE + _dt.timedelta(days=value)


class Time:
    """org.apache.kafka.connect.data.Time: INT32 milliseconds since midnight."""

    LOGICAL_NAME = "org.apache.kafka.connect.data.Time"

    @staticmethod
    def builder() -> SchemaBuilder:
        return SchemaBuilder.int32().name(Time.LOGICAL_NAME).version(1)

    SCHEMA: Schema

    @staticmethod
    def from_logical(schema: Schema, value: _dt.time | _dt.datetime) -> int:
        if schema.name != Time.LOGICAL_NAME:
            raise DataException(
                "Requested conversion of Time object but the schema does not match.")
        if isinstance(value, _dt.datetime):
            ms = Timestamp.from_logical(Timestamp.SCHEMA, value)
            if not 0 <= ms < MILLIS_PER_DAY:
                raise DataException(
                    "Kafka Connect Time type should not have any date fields set to non-zero "
                    "values.")
            return ms
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + \
            value.microsecond // 1000

    @staticmethod
    def to_logical(schema: Schema, value: int) -> _dt.time:
        if schema.name != Time.LOGICAL_NAME:
            raise DataException(
                "Requested conversion of Time object but the schema does not match.")
        if not 0 <= value < MILLIS_PER_DAY:
            raise DataException(
                "Time values must use number of milliseconds greater than 0 and less than "
                "86400000")
        seconds, ms = divmod(value, 1000)
        minutes, sec = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        return _dt.time(hours, minute, sec, ms * 1000)


class Timestamp:
    """org.apache.kafka.connect.data.Timestamp: INT64 milliseconds since the epoch."""

    LOGICAL_NAME = "org.apache.kafka.connect.data.Timestamp"

    @staticmethod
    def builder() -> SchemaBuilder:
        return SchemaBuilder.int64().name(Timestamp.LOGICAL_NAME).version(1)

    SCHEMA: Schema

    @staticmethod
    def from_logical(schema: Schema, value: _dt.datetime) -> int:
        if schema.name != Timestamp.LOGICAL_NAME:
            raise DataException(
                "Requested conversion of Timestamp object but the schema does not match.")
        return datetime_to_millis(value)

    @staticmethod
    def to_logical(schema: Schema, value: int) -> _dt.datetime:
        if schema.name != Timestamp.LOGICAL_NAME:
            raise DataException(
                "Requested conversion of Timestamp object but the schema does not match.")
        return millis_to_datetime(value)


Date.SCHEMA = Date.builder().build()
Time.SCHEMA = Time.builder().build()
Timestamp.SCHEMA = Timestamp.builder().build()


def datetime_to_millis(value: _dt.datetime) -> int:
    """Milliseconds since the epoch (naive datetimes are UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def millis_to_datetime(millis: int) -> _dt.datetime:
    """The UTC datetime `millis` milliseconds after the epoch."""
    return _EPOCH + _dt.timedelta(milliseconds=millis)


LOGICAL_NAMES = frozenset({Decimal.LOGICAL_NAME, Date.LOGICAL_NAME, Time.LOGICAL_NAME,
                           Timestamp.LOGICAL_NAME})

# -- validation --------------------------------------------------------------------------------

_INT_RANGES = {
    Type.INT8: (-(2**7), 2**7 - 1),
    Type.INT16: (-(2**15), 2**15 - 1),
    Type.INT32: (-(2**31), 2**31 - 1),
    Type.INT64: (-(2**63), 2**63 - 1),
}

_PY_TYPES: dict[Type, tuple[type, ...]] = {
    Type.FLOAT32: (float,),
    Type.FLOAT64: (float,),
    Type.BOOLEAN: (bool,),
    Type.STRING: (str,),
    Type.BYTES: (bytes, bytearray),
    Type.ARRAY: (list, tuple),
    Type.MAP: (Mapping,),
}

_LOGICAL_PY_TYPES: dict[str, tuple[type, ...]] = {
    Decimal.LOGICAL_NAME: (_decimal.Decimal,),
    Date.LOGICAL_NAME: (_dt.date,),
    Time.LOGICAL_NAME: (_dt.time,),
    Timestamp.LOGICAL_NAME: (_dt.datetime,),
}


def _invalid(schema: Schema, value: Any, field_name: str | None) -> DataException:
    named = f' "{schema.name}"' if schema.name is not None else ""
    where = f' for field: "{field_name}"' if field_name is not None else ""
    return DataException(f"Invalid Java object for schema{named} with type {schema.type}: "
                         f"{type(value)}{where}")


def _matches_type(schema: Schema, value: Any) -> bool:
    if schema.name is not None and schema.name in _LOGICAL_PY_TYPES:
        return isinstance(value, _LOGICAL_PY_TYPES[schema.name])
    if schema.type in _INT_RANGES:
        low, high = _INT_RANGES[schema.type]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if schema.type is Type.STRUCT:
        return isinstance(value, Struct)
    return isinstance(value, _PY_TYPES[schema.type])


def validate_value(schema: Schema | None, value: Any, field_name: str | None = None) -> None:
    """Kafka's ConnectSchema.validateValue: DataException unless `value` fits `schema`."""
    if schema is None:
        return
    if value is None:
        if not schema.optional:
            where = f'field: "{field_name}"' if field_name is not None else "value"
            raise DataException(f"Invalid value: null used for required {where}, "
                                f"schema type: {schema.type}")
        return
    if not _matches_type(schema, value):
        raise _invalid(schema, value, field_name)
    if schema.name not in _LOGICAL_PY_TYPES:
        _validate_nested(schema, value, field_name)


def _validate_nested(schema: Schema, value: Any, field_name: str | None) -> None:
    if schema.type is Type.STRUCT:
        if value.schema is not schema and value.schema != schema:  # `is`: no deep compare
            raise DataException("Struct schemas do not match.")
        value.validate()
    elif schema.type is Type.ARRAY:
        for item in value:
            validate_value(schema.value_schema, item, field_name)
    elif schema.type is Type.MAP:
        for k, v in value.items():
            validate_value(schema.key_schema, k, field_name)
            validate_value(schema.value_schema, v, field_name)


def infer_schema(value: Any) -> Schema | None:
    """The schema Kafka's ConnectSchema.schemaType would pick for a schemaless value's class
    (None for None and classes without one)."""
    if isinstance(value, Struct):
        return value.schema
    if isinstance(value, bool):
        return BOOLEAN_SCHEMA
    if isinstance(value, int):
        return INT64_SCHEMA if not -(2**31) <= value < 2**31 else INT32_SCHEMA
    for t, classes in ((Type.FLOAT64, (float,)), (Type.STRING, (str,)),
                       (Type.BYTES, (bytes, bytearray))):
        if isinstance(value, classes):
            return Schema(t)
    return None


class Struct:
    """Kafka's Struct: the values of a STRUCT schema's fields, checked on `put`."""

    __slots__ = ("_values", "schema")

    def __init__(self, schema: Schema | SchemaBuilder) -> None:
        s = schema.schema()
        if s.type is not Type.STRUCT:
            raise DataException(f"Not a struct schema: {s!r}")
        self.schema: Schema = s
        self._values: list[Any] = [None] * len(s.fields)

    def _lookup(self, name: str | Field) -> Field:
        if isinstance(name, Field):
            return name
        f = self.schema.field(name)
        if f is None:
            raise DataException(f"{name} is not a valid field name")
        return f

    def put(self, name: str | Field, value: Any) -> Struct:
        f = self._lookup(name)
        validate_value(f.schema, value, f.name)
        self._values[f.index] = value
        return self

    def get(self, name: str | Field) -> Any:
        """The field's value, or its schema's default when it is None (as Kafka's get)."""
        f = self._lookup(name)
        value = self._values[f.index]
        if value is None and f.schema.default is not None:
            return f.schema.default
        return value

    def get_without_default(self, name: str | Field) -> Any:
        return self._values[self._lookup(name).index]

    def get_struct(self, name: str) -> Struct | None:
        value = self.get(name)
        if value is not None and not isinstance(value, Struct):
            raise DataException(f"Field '{name}' is not of type STRUCT")
        return value

    def validate(self) -> None:
        """Kafka's Struct.validate: every required field without a default is set."""
        for f in self.schema.fields:
            value = self._values[f.index]
            if value is None and (f.schema.optional or f.schema.default is not None):
                continue
            validate_value(f.schema, value, f.name)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Struct) and self.schema == other.schema
                and self._values == other._values)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"{f.name}={self._values[f.index]}" for f in self.schema.fields
                 if self._values[f.index] is not None]
        return "Struct{" + ",".join(parts) + "}"


# -- headers -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    """One header of a Connect record (Kafka's ConnectHeader): key, schema, value."""

    key: str
    schema: Schema | None
    value: Any

    def with_value(self, schema: Schema | None, value: Any) -> Header:
        return Header(self.key, schema, value)

    def rename(self, key: str) -> Header:
        return Header(key, self.schema, self.value)


class Headers:
    """Kafka's ConnectHeaders: ordered, several headers may share a key."""

    __slots__ = ("_headers",)

    def __init__(self, headers: Sequence[Header] | None = None) -> None:
        self._headers = list(headers or ())

    def add(self, key: str, value: Any, schema: Schema | None = None) -> Headers:
        if key is None:
            raise ValueError("Header key cannot be null")
        if schema is not None:
            validate_value(schema, value)
        self._headers.append(Header(key, schema, value))
        return self

    def add_header(self, header: Header) -> Headers:
        self._headers.append(header)
        return self

    def add_all(self, headers: Headers) -> Headers:
        self._headers.extend(headers)
        return self

    def last_with_name(self, key: str) -> Header | None:
        for header in reversed(self._headers):
            if header.key == key:
                return header
        return None

    def all_with_name(self, key: str) -> list[Header]:
        return [h for h in self._headers if h.key == key]

    def remove(self, key: str) -> Headers:
        self._headers = [h for h in self._headers if h.key != key]
        return self

    def retain_latest(self, key: str | None = None) -> Headers:
        """Keep only the last header of `key` (of every key when None)."""
        seen: set[str] = set()
        kept: list[Header] = []
        for h in reversed(self._headers):
            if (key is None or h.key == key) and h.key in seen:
                continue
            seen.add(h.key)
            kept.append(h)
        self._headers = kept[::-1]
        return self

    def clear(self) -> Headers:
        self._headers = []
        return self

    def copy(self) -> Headers:
        return Headers(self._headers)

    duplicate = copy

    def is_empty(self) -> bool:
        return not self._headers

    def __iter__(self) -> Iterator[Header]:
        return iter(list(self._headers))

    def __len__(self) -> int:
        return len(self._headers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._headers == other._headers

    def __repr__(self) -> str:
        return f"Headers({self._headers!r})"
