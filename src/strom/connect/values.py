"""The common subset of Kafka's org.apache.kafka.connect.data.Values: values as the strings
SimpleHeaderConverter writes (`convert_to_string`), and such strings parsed back with an
inferred schema (`parse_string`):

    null                    (no schema, None)
    true / false            BOOLEAN
    integers                the smallest of INT8/INT16/INT32/INT64 that holds them (also
                            "1.0", as Kafka's exact-integer rule), larger ones Decimal(0)
    other numbers           FLOAT32 when finite as a float, else FLOAT64
    "quoted" (in arrays/maps) STRING, with \\" and \\\\ escapes
    [a, b, ...]             ARRAY of the elements' common schema (no schema when they differ)
    {k: v, ...}             MAP likewise
    2020-01-31              Date; 12:34:56.789Z Time; 2020-01-31T12:34:56.789Z Timestamp
    anything else           STRING, the whole text
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal as _decimal
import re
import struct
from collections.abc import Mapping
from typing import Any

from strom.connect.data import (
    BOOLEAN_SCHEMA,
    FLOAT32_SCHEMA,
    FLOAT64_SCHEMA,
    INT8_SCHEMA,
    INT16_SCHEMA,
    INT32_SCHEMA,
    INT64_SCHEMA,
    STRING_SCHEMA,
    Date,
    Decimal,
    Schema,
    SchemaAndValue,
    SchemaBuilder,
    Struct,
    Time,
    Timestamp,
)
from strom.connect.errors import DataException

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}:\d{2}\.\d{3}Z")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_INT_SCHEMAS = ((INT8_SCHEMA, 8), (INT16_SCHEMA, 16), (INT32_SCHEMA, 32), (INT64_SCHEMA, 64))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _append_scalar(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | _decimal.Decimal):
        return str(value)
    if isinstance(value, _dt.datetime):
        return _format_timestamp(value)
    if isinstance(value, _dt.time):
        return value.strftime("%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, _dt.date):
        return value.isoformat()
    return None


def _append(value: Any, embedded: bool) -> str:
    scalar = _append_scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, str):
        return f'"{_escape(value)}"' if embedded else value
    if isinstance(value, bytes | bytearray):
        text = base64.b64encode(bytes(value)).decode("ascii")
        return f'"{text}"' if embedded else text
    if isinstance(value, list | tuple):
        return "[" + ",".join(_append(v, True) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(_append(k, True) + ":" + _append(v, True)
                              for k, v in value.items()) + "}"
    if isinstance(value, Struct):
        return "{" + ",".join(f'"{_escape(f.name)}":' + _append(value.get(f), True)
                              for f in value.schema.fields) + "}"
    return str(value)


def _format_timestamp(value: _dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def convert_to_string(schema: Schema | None, value: Any) -> str | None:
    """Kafka's Values.convertToString (the common cases)."""
    if value is None:
        return None
    return _append(value, False)


class _ParseError(Exception):
    pass


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        self.skip_ws()
        if self.peek() != char:
            raise _ParseError(char)
        self.pos += 1

    def value(self) -> SchemaAndValue:
        self.skip_ws()
        char = self.peek()
        if char == "[":
            return self.array()
        if char == "{":
            return self.map()
        if char == '"':
            return SchemaAndValue(STRING_SCHEMA, self.quoted())
        return self.token()

    def quoted(self) -> str:
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        raise _ParseError("unterminated string")

    def token(self) -> SchemaAndValue:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",:]}[{\"" \
                and not self.text[self.pos].isspace():
            self.pos += 1
        text = self.text[start:self.pos]
        if not text:
            raise _ParseError("empty token")
        return _scalar(text)

    def array(self) -> SchemaAndValue:
        self.pos += 1
        items: list[SchemaAndValue] = []
        self.skip_ws()
        if self.peek() == "]":
            self.pos += 1
            return SchemaAndValue(None, [])
        while True:
            items.append(self.value())
            self.skip_ws()
            if self.peek() == "]":
                self.pos += 1
                break
            self.expect(",")
        common = _common_schema([i.schema for i in items])
        schema = SchemaBuilder.array(common).build() if common is not None else None
        return SchemaAndValue(schema, [i.value for i in items])

    def map(self) -> SchemaAndValue:
        self.pos += 1
        entries: list[tuple[SchemaAndValue, SchemaAndValue]] = []
        self.skip_ws()
        if self.peek() == "}":
            self.pos += 1
            return SchemaAndValue(None, {})
        while True:
            key = self.value()
            self.expect(":")
            entries.append((key, self.value()))
            self.skip_ws()
            if self.peek() == "}":
                self.pos += 1
                break
            self.expect(",")
        key_schema = _common_schema([k.schema for k, _ in entries])
        value_schema = _common_schema([v.schema for _, v in entries])
        schema = (SchemaBuilder.map(key_schema, value_schema).build()
                  if key_schema is not None and value_schema is not None else None)
        try:
            return SchemaAndValue(schema, {k.value: v.value for k, v in entries})
        except TypeError as exc:
            raise _ParseError("unhashable key") from exc


def _common_schema(schemas: list[Schema | None]) -> Schema | None:
    if not schemas or any(s is None for s in schemas) or len(set(schemas)) != 1:
        return None
    return schemas[0]


def _scalar(text: str) -> SchemaAndValue:
    lowered = text.lower()
    if lowered == "null":
        return SchemaAndValue(None, None)
    if lowered in ("true", "false"):
        return SchemaAndValue(BOOLEAN_SCHEMA, lowered == "true")
    if _NUMBER.fullmatch(text):
        return _number(text)
    if _TIMESTAMP.fullmatch(text):
        parsed = _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.UTC)
        return SchemaAndValue(Timestamp.SCHEMA, parsed)
    if _DATE.fullmatch(text):
        return SchemaAndValue(Date.SCHEMA, _dt.date.fromisoformat(text))
    if _TIME.fullmatch(text):
        return SchemaAndValue(Time.SCHEMA, _dt.datetime.strptime(text, "%H:%M:%S.%fZ").time())
    raise _ParseError(text)


def _number(text: str) -> SchemaAndValue:
    value = _decimal.Decimal(text)
    if value == value.to_integral_value():
        integral = int(value)
        for schema, bits in _INT_SCHEMAS:
            if -(2 ** (bits - 1)) <= integral < 2 ** (bits - 1):
                return SchemaAndValue(schema, integral)
        return SchemaAndValue(Decimal.schema(0), _decimal.Decimal(integral))
    as_float = float(value)
    try:
        f32 = struct.unpack(">f", struct.pack(">f", as_float))[0]
        return SchemaAndValue(FLOAT32_SCHEMA, f32)
    except OverflowError:
        pass
    if as_float not in (float("inf"), float("-inf")):
        return SchemaAndValue(FLOAT64_SCHEMA, as_float)
    exponent = value.as_tuple().exponent
    scale = -exponent if isinstance(exponent, int) else 0
    return SchemaAndValue(Decimal.schema(scale), value)


def parse_string(text: str) -> SchemaAndValue:
    """Kafka's Values.parseString: a string with an inferred schema (see the module doc)."""
    if text == "":
        return SchemaAndValue(STRING_SCHEMA, text)
    stripped = text.strip()
    if _TIMESTAMP.fullmatch(stripped) or _TIME.fullmatch(stripped):
        try:
            return _scalar(stripped)
        except ValueError:
            return SchemaAndValue(STRING_SCHEMA, text)
    parser = _Parser(text)
    try:
        result = parser.value()
        parser.skip_ws()
        if parser.pos != len(text):
            raise _ParseError("trailing text")
    except (_ParseError, ValueError, DataException):
        return SchemaAndValue(STRING_SCHEMA, text)
    if result.schema is STRING_SCHEMA and text.strip().startswith('"') is False:
        return SchemaAndValue(STRING_SCHEMA, text)
    return result
