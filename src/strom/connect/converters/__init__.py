"""Converters (Kafka's org.apache.kafka.connect.storage.Converter and HeaderConverter).

The schema-registry converters (Avro, JSON Schema, Protobuf) live in
`strom.connect.converters.registry`, imported on demand (they need confluent-kafka's
schema-registry client).
"""

from strom.connect.converters.base import Converter, ConverterBase, HeaderConverter
from strom.connect.converters.header import SimpleHeaderConverter
from strom.connect.converters.json_converter import JsonConverter
from strom.connect.converters.simple import (
    ByteArrayConverter,
    DoubleConverter,
    FloatConverter,
    IntegerConverter,
    LongConverter,
    NumberConverter,
    ShortConverter,
    StringConverter,
)

__all__ = [
    "ByteArrayConverter", "Converter", "ConverterBase", "DoubleConverter", "FloatConverter",
    "HeaderConverter", "IntegerConverter", "JsonConverter", "LongConverter", "NumberConverter",
    "ShortConverter", "SimpleHeaderConverter", "StringConverter",
]
