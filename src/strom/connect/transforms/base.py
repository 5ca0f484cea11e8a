"""The Transformation protocol and the helpers Kafka's SMTs share (Requirements, SchemaUtil,
the $Key/$Value split, a small LRU of schema updates, Java-regex replacement templates)."""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

from strom.connect.config import ConfigDef, SimpleConfig
from strom.connect.data import Headers, Schema, SchemaBuilder, Struct, Type
from strom.connect.errors import DataException
from strom.connect.records import ConnectRecord, SinkRecord

R = TypeVar("R", bound=ConnectRecord)


@runtime_checkable
class Transformation(Protocol):
    """Kafka's org.apache.kafka.connect.transforms.Transformation."""

    def configure(self, configs: Mapping[str, Any]) -> None: ...

    def apply(self, record: R) -> R | None: ...

    def config_def(self) -> ConfigDef: ...

    def close(self) -> None: ...


class SchemaCache:
    """Kafka's SynchronizedCache(LRUCache(16)) of schema updates."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._items: collections.OrderedDict[Any, Schema] = collections.OrderedDict()

    def get(self, key: Any) -> Schema | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: Any, value: Schema) -> None:
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def _class_name(value: Any) -> str:
    return "null" if value is None else f"{type(value)}"


def require_schema(schema: Schema | None, purpose: str) -> Schema:
    if schema is None:
        raise DataException(f"Schema required for [{purpose}]")
    return schema


def require_map(value: Any, purpose: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise DataException(f"Only Map objects supported in absence of schema for [{purpose}], "
                            f"found: {_class_name(value)}")
    return dict(value)


def require_map_or_null(value: Any, purpose: str) -> dict[str, Any] | None:
    return None if value is None else require_map(value, purpose)


def require_struct(value: Any, purpose: str) -> Struct:
    if not isinstance(value, Struct):
        raise DataException(f"Only Struct objects supported for [{purpose}], found: "
                            f"{_class_name(value)}")
    return value


def require_struct_or_null(value: Any, purpose: str) -> Struct | None:
    return None if value is None else require_struct(value, purpose)


def require_sink_record(record: ConnectRecord, purpose: str) -> SinkRecord:
    if not isinstance(record, SinkRecord):
        raise DataException(f"Only SinkRecord supported for [{purpose}], found: "
                            f"{_class_name(record)}")
    return record


def copy_schema_basics(source: Schema, builder: SchemaBuilder | None = None) -> SchemaBuilder:
    """Kafka's SchemaUtil.copySchemaBasics: name, version, doc and parameters (and, with no
    builder given, the type)."""
    if builder is None:
        builder = SchemaBuilder(source.type)
        if source.type is Type.ARRAY:
            builder = SchemaBuilder.array(source.value_schema)  # type: ignore[arg-type]
        elif source.type is Type.MAP:
            builder = SchemaBuilder.map(source.key_schema, source.value_schema)  # type: ignore[arg-type]
        elif source.type is Type.STRUCT:
            for f in source.fields:
                builder.field(f.name, f.schema)
    builder.name(source.name).version(source.version).doc(source.doc)
    if source.parameters is not None:
        builder.parameters(source.parameters)
    return builder


def struct_value(struct: Struct, name: str, replace_null_with_default: bool) -> Any:
    return struct.get(name) if replace_null_with_default else struct.get_without_default(name)


class Transform:
    """Base of the SMTs: a ConfigDef (class attribute CONFIG_DEF), `configure` parsing it into
    `self.config`, and no-op `close`."""

    CONFIG_DEF: ConfigDef = ConfigDef()

    def __init__(self) -> None:
        self.config = SimpleConfig(ConfigDef(), {})

    def config_def(self) -> ConfigDef:
        return self.CONFIG_DEF

    def configure(self, configs: Mapping[str, Any]) -> None:
        self.config = SimpleConfig(self.CONFIG_DEF, configs)

    def close(self) -> None:
        return None


class KeyOrValue:
    """The $Key/$Value split of Kafka's SMTs: which half of the record is operated on."""

    IS_KEY = False

    def operating_schema(self, record: ConnectRecord) -> Schema | None:
        return record.key_schema if self.IS_KEY else record.value_schema

    def operating_value(self, record: ConnectRecord) -> Any:
        return record.key if self.IS_KEY else record.value

    def new_record(self, record: R, schema: Schema | None, value: Any,
                   headers: Headers | None = None) -> R:
        if self.IS_KEY:
            return record.new_record(record.topic, record.kafka_partition, schema, value,
                                     record.value_schema, record.value, record.timestamp,
                                     headers)
        return record.new_record(record.topic, record.kafka_partition, record.key_schema,
                                 record.key, schema, value, record.timestamp, headers)


class KeyMixin(KeyOrValue):
    IS_KEY = True


class ValueMixin(KeyOrValue):
    IS_KEY = False


_GROUP_REF = re.compile(r"\$(\d+)|\$\{(\w+)\}")


def java_replacement(template: str) -> str:
    """A java.util.regex replacement ($1, ${name}, \\$ for a dollar) as a Python re
    template (for re.Match.expand)."""
    out = []
    i = 0
    while i < len(template):
        char = template[i]
        if char == "\\" and i + 1 < len(template):
            nxt = template[i + 1]
            out.append("\\\\" if nxt == "\\" else nxt)
            i += 2
        elif char == "$":
            match = _GROUP_REF.match(template, i)
            if match is None:
                raise ValueError(f"Illegal group reference in {template!r}")
            out.append(f"\\g<{match.group(1) or match.group(2)}>")
            i = match.end()
        else:
            out.append("\\\\" if char == "\\" else char)
            i += 1
    return "".join(out)
