"""PostgreSQL column types as Connect schemas, and the server's text output of a value as the
Connect value (the same path for pgoutput's text tuples, snapshot rows and query rows, which
are all read as text).

| PostgreSQL | Connect |
|---|---|
| bool | BOOLEAN |
| int2 / int4 / int8 (oid: INT64) | INT16 / INT32 / INT64 |
| float4 / float8 | FLOAT32 / FLOAT64 |
| numeric(p, s) | Decimal (scale s); numeric without a scale: STRING (its exact text) |
| text, varchar, bpchar, name, char, json, jsonb, uuid, xml, anything else | STRING |
| bytea | BYTES |
| date | Date |
| time | Time (ms; finer digits dropped) |
| timestamp, timestamptz | Timestamp (ms since the epoch; timestamp read as UTC) |
"""

from __future__ import annotations

import datetime as _dt
import decimal
from collections.abc import Callable
from typing import Any, Final

from strom.connect.data import Date, Decimal, Schema, SchemaBuilder, Time, Timestamp

BOOL: Final = 16
BYTEA: Final = 17
CHAR: Final = 18
NAME: Final = 19
INT8: Final = 20
INT2: Final = 21
INT4: Final = 23
TEXT: Final = 25
OID: Final = 26
JSON: Final = 114
FLOAT4: Final = 700
FLOAT8: Final = 701
BPCHAR: Final = 1042
VARCHAR: Final = 1043
DATE: Final = 1082
TIME: Final = 1083
TIMESTAMP: Final = 1114
TIMESTAMPTZ: Final = 1184
TIMETZ: Final = 1266
NUMERIC: Final = 1700
UUID: Final = 2950
JSONB: Final = 3802

# What Debezium puts in place of an unchanged TOASTed value the server did not send.
UNAVAILABLE_VALUE: Final = "__debezium_unavailable_value"


def numeric_scale(type_modifier: int) -> int | None:
    """numeric(p, s)'s scale from the attribute's typmod; None when unconstrained."""
    if type_modifier < 4:
        return None
    return (type_modifier - 4) & 0xFFFF


_SIMPLE_SCHEMAS: Final = {
    BOOL: SchemaBuilder.bool, INT2: SchemaBuilder.int16, INT4: SchemaBuilder.int32,
    INT8: SchemaBuilder.int64, OID: SchemaBuilder.int64, FLOAT4: SchemaBuilder.float32,
    FLOAT8: SchemaBuilder.float64, BYTEA: SchemaBuilder.bytes, DATE: Date.builder,
    TIME: Time.builder, TIMESTAMP: Timestamp.builder, TIMESTAMPTZ: Timestamp.builder,
}


def schema_builder(type_oid: int, type_modifier: int = -1) -> SchemaBuilder:
    """The Connect schema (a builder, to make optional or name) of a column of this type."""
    simple = _SIMPLE_SCHEMAS.get(type_oid)
    if simple is not None:
        return simple()
    if type_oid == NUMERIC:
        scale = numeric_scale(type_modifier)
        if scale is None:
            return SchemaBuilder.string()
        precision = ((type_modifier - 4) >> 16) & 0xFFFF
        return Decimal.builder(scale).parameter("connect.decimal.precision", str(precision))
    return SchemaBuilder.string()


def schema_for(type_oid: int, type_modifier: int = -1, *, optional: bool = True) -> Schema:
    builder = schema_builder(type_oid, type_modifier)
    return (builder.optional() if optional else builder).build()


def _timestamp(text: str) -> _dt.datetime:
    value = _dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC)


def _numeric(type_modifier: int, text: str) -> Any:
    scale = numeric_scale(type_modifier)
    if scale is None:
        return text
    value = decimal.Decimal(text)
    if not value.is_finite():
        raise ValueError(f"numeric {text} has no Connect Decimal counterpart")
    return value.quantize(decimal.Decimal(1).scaleb(-scale))


def _bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return _unescape_bytea(text)


def _time(text: str) -> _dt.time:
    t = _dt.time.fromisoformat(text)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _timestamp_ms(text: str) -> _dt.datetime:
    value = _timestamp(text)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


_PARSERS: Final[dict[int, Callable[[str], Any]]] = {
    BOOL: lambda text: text == "t", INT2: int, INT4: int, INT8: int, OID: int,
    FLOAT4: float, FLOAT8: float, BYTEA: _bytea, DATE: _dt.date.fromisoformat, TIME: _time,
    TIMESTAMP: _timestamp_ms, TIMESTAMPTZ: _timestamp_ms,
}


def parse_text(type_oid: int, type_modifier: int, text: str | None) -> Any:
    """The Connect value of the server's text output `text` of a value of this type (None for
    NULL). Values that have no Connect counterpart (infinity dates, NaN numerics) raise
    ValueError."""
    if text is None:
        return None
    if type_oid == NUMERIC:
        return _numeric(type_modifier, text)
    parser = _PARSERS.get(type_oid)
    return text if parser is None else parser(text)


def _unescape_bytea(text: str) -> bytes:
    """bytea's `escape` output format (bytea_output = escape)."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if text[i + 1] == "\\":
                out.append(0x5C)
                i += 2
            else:
                out.append(int(text[i + 1:i + 4], 8))
                i += 4
        else:
            out.extend(ch.encode("utf-8"))
            i += 1
    return bytes(out)


def to_timestamp_parts(value: _dt.datetime) -> tuple[int, int]:
    """The JDBC source's offset of a timestamp: ms since the epoch and the nanoseconds within
    its second (java.sql.Timestamp's getTime / getNanos)."""
    value = value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    delta = value - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros // 1000, (micros % 1_000_000) * 1000


def from_timestamp_parts(millis: int, nanos: int | None) -> _dt.datetime:
    base = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(milliseconds=millis)
    if nanos is not None:
        base = base.replace(microsecond=nanos // 1000)
    return base
