"""The Converter and HeaderConverter protocols (Kafka's org.apache.kafka.connect.storage)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from strom.connect.config import ConfigDef
from strom.connect.data import Headers, Schema, SchemaAndValue


@runtime_checkable
class Converter(Protocol):
    """Connect data <-> the bytes of a record's key or value."""

    def configure(self, configs: Mapping[str, Any], is_key: bool) -> None: ...

    def from_connect_data(self, topic: str, schema: Schema | None, value: Any,
                          headers: Headers | None = None) -> bytes | None: ...

    def to_connect_data(self, topic: str, value: bytes | None,
                        headers: Headers | None = None) -> SchemaAndValue: ...


@runtime_checkable
class HeaderConverter(Protocol):
    """Connect data <-> the bytes of a record header's value."""

    def configure(self, configs: Mapping[str, Any]) -> None: ...

    def from_connect_header(self, topic: str, header_key: str, schema: Schema | None,
                            value: Any) -> bytes | None: ...

    def to_connect_header(self, topic: str, header_key: str,
                          value: bytes | None) -> SchemaAndValue: ...


class ConverterBase:
    """Shared bits: a ConfigDef, `close`, and the header-converter face that Kafka's
    StringConverter, ByteArrayConverter, number converters and JsonConverter all have
    (configured with `converter.type` = header)."""

    is_key: bool = False

    @classmethod
    def config_def(cls) -> ConfigDef:
        return ConfigDef()

    def configure(self, configs: Mapping[str, Any], is_key: bool = False) -> None:
        self.is_key = is_key

    def from_connect_data(self, topic: str, schema: Schema | None, value: Any,
                          headers: Headers | None = None) -> bytes | None:
        raise NotImplementedError

    def to_connect_data(self, topic: str, value: bytes | None,
                        headers: Headers | None = None) -> SchemaAndValue:
        raise NotImplementedError

    def from_connect_header(self, topic: str, header_key: str, schema: Schema | None,
                            value: Any) -> bytes | None:
        return self.from_connect_data(topic, schema, value)

    def to_connect_header(self, topic: str, header_key: str,
                          value: bytes | None) -> SchemaAndValue:
        return self.to_connect_data(topic, value)

    def close(self) -> None:
        return None
