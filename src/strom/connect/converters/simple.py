"""StringConverter, ByteArrayConverter and the number converters, as Kafka's."""

from __future__ import annotations

import codecs
import struct
from collections.abc import Mapping
from typing import Any, ClassVar

from strom.connect.config import ConfigDef, ConfigType, Importance
from strom.connect.converters.base import ConverterBase
from strom.connect.data import (
    OPTIONAL_BYTES_SCHEMA,
    OPTIONAL_FLOAT32_SCHEMA,
    OPTIONAL_FLOAT64_SCHEMA,
    OPTIONAL_INT16_SCHEMA,
    OPTIONAL_INT32_SCHEMA,
    OPTIONAL_INT64_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    Headers,
    Schema,
    SchemaAndValue,
    Type,
)
from strom.connect.errors import DataException

ENCODING_CONFIG = "converter.encoding"
TYPE_CONFIG = "converter.type"


def _java_value_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class StringConverter(ConverterBase):
    """org.apache.kafka.connect.storage.StringConverter: any value as its string in
    `converter.encoding` (UTF-8); reads give OPTIONAL_STRING_SCHEMA strings."""

    def __init__(self) -> None:
        self.encoding = "utf-8"

    @classmethod
    def config_def(cls) -> ConfigDef:
        return (ConfigDef()
                .define(ENCODING_CONFIG, ConfigType.STRING, "UTF-8", Importance.HIGH,
                        "The name of the Java character set to use for encoding strings")
                .define(TYPE_CONFIG, ConfigType.STRING, "key", Importance.LOW,
                        "How this converter will be used."))

    def configure(self, configs: Mapping[str, Any], is_key: bool = False) -> None:
        super().configure(configs, is_key)
        encoding = str(self.config_def().parse(configs)[ENCODING_CONFIG])
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise DataException(f"Unsupported encoding: {encoding}") from None
        self.encoding = encoding

    def from_connect_data(self, topic: str, schema: Schema | None, value: Any,
                          headers: Headers | None = None) -> bytes | None:
        if value is None:
            return None
        try:
            return _java_value_string(value).encode(self.encoding)
        except UnicodeError as exc:
            raise DataException(f"Failed to serialize to a string: {exc}") from exc

    def to_connect_data(self, topic: str, value: bytes | None,
                        headers: Headers | None = None) -> SchemaAndValue:
        if value is None:
            return SchemaAndValue(OPTIONAL_STRING_SCHEMA, None)
        try:
            return SchemaAndValue(OPTIONAL_STRING_SCHEMA, bytes(value).decode(self.encoding))
        except UnicodeError as exc:
            raise DataException(f"Failed to deserialize string: {exc}") from exc


class ByteArrayConverter(ConverterBase):
    """org.apache.kafka.connect.converters.ByteArrayConverter: bytes through unchanged."""

    def from_connect_data(self, topic: str, schema: Schema | None, value: Any,
                          headers: Headers | None = None) -> bytes | None:
        if schema is not None and schema.type is not Type.BYTES:
            raise DataException(f"Invalid schema type for ByteArrayConverter: {schema.type}")
        if value is not None and not isinstance(value, bytes | bytearray | memoryview):
            raise DataException(
                f"ByteArrayConverter is not compatible with objects of type {type(value)}")
        return None if value is None else bytes(value)

    def to_connect_data(self, topic: str, value: bytes | None,
                        headers: Headers | None = None) -> SchemaAndValue:
        return SchemaAndValue(OPTIONAL_BYTES_SCHEMA, None if value is None else bytes(value))


class NumberConverter(ConverterBase):
    """Kafka's NumberConverter: big-endian as the Integer/Long/... serializers."""

    FORMAT: ClassVar[struct.Struct]
    SCHEMA: ClassVar[Schema]
    TYPE_NAME: ClassVar[str]
    DESERIALIZER: ClassVar[str]
    INTEGRAL: ClassVar[bool] = True

    def _cast(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{type(value)}")
        return int(value) if self.INTEGRAL else float(value)

    def from_connect_data(self, topic: str, schema: Schema | None, value: Any,
                          headers: Headers | None = None) -> bytes | None:
        if value is None:
            return None
        try:
            return self.FORMAT.pack(self._cast(value))
        except (TypeError, struct.error) as exc:
            raise DataException(f"Failed to serialize to {self.TYPE_NAME} (was "
                                f"{type(value)}): {exc}") from exc

    def to_connect_data(self, topic: str, value: bytes | None,
                        headers: Headers | None = None) -> SchemaAndValue:
        if value is None:
            return SchemaAndValue(self.SCHEMA, None)
        if len(value) != self.FORMAT.size:
            raise DataException(
                f"Failed to deserialize {self.TYPE_NAME}: Size of data received by "
                f"{self.DESERIALIZER} is not {self.FORMAT.size}")
        return SchemaAndValue(self.SCHEMA, self.FORMAT.unpack(value)[0])


class ShortConverter(NumberConverter):
    FORMAT = struct.Struct(">h")
    SCHEMA = OPTIONAL_INT16_SCHEMA
    TYPE_NAME = "short"
    DESERIALIZER = "ShortDeserializer"


class IntegerConverter(NumberConverter):
    FORMAT = struct.Struct(">i")
    SCHEMA = OPTIONAL_INT32_SCHEMA
    TYPE_NAME = "integer"
    DESERIALIZER = "IntegerDeserializer"


class LongConverter(NumberConverter):
    FORMAT = struct.Struct(">q")
    SCHEMA = OPTIONAL_INT64_SCHEMA
    TYPE_NAME = "long"
    DESERIALIZER = "LongDeserializer"


class FloatConverter(NumberConverter):
    FORMAT = struct.Struct(">f")
    SCHEMA = OPTIONAL_FLOAT32_SCHEMA
    TYPE_NAME = "float"
    DESERIALIZER = "FloatDeserializer"
    INTEGRAL = False


class DoubleConverter(NumberConverter):
    FORMAT = struct.Struct(">d")
    SCHEMA = OPTIONAL_FLOAT64_SCHEMA
    TYPE_NAME = "double"
    DESERIALIZER = "DoubleDeserializer"
    INTEGRAL = False
