"""org.apache.kafka.connect.storage.SimpleHeaderConverter: header values as their strings
(Kafka's Values.convertToString), read back with Values.parseString's schema inference."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strom.connect.config import ConfigDef
from strom.connect.data import STRING_SCHEMA, Schema, SchemaAndValue
from strom.connect.values import convert_to_string, parse_string


class SimpleHeaderConverter:
    @classmethod
    def config_def(cls) -> ConfigDef:
        return ConfigDef()

    def configure(self, configs: Mapping[str, Any]) -> None:
        return None

    def from_connect_header(self, topic: str, header_key: str, schema: Schema | None,
                            value: Any) -> bytes | None:
        text = convert_to_string(schema, value)
        return None if text is None else text.encode("utf-8")

    def to_connect_header(self, topic: str, header_key: str,
                          value: bytes | None) -> SchemaAndValue:
        if value is None:
            return SchemaAndValue(None, None)
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return SchemaAndValue(STRING_SCHEMA, bytes(value).decode("utf-8", "replace"))
        if text == "":
            return SchemaAndValue(STRING_SCHEMA, text)
        return parse_string(text)

    def close(self) -> None:
        return None
