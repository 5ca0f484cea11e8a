"""The schema-registry converters: io.confluent.connect.avro.AvroConverter,
io.confluent.connect.json.JsonSchemaConverter and io.confluent.connect.protobuf.
ProtobufConverter, with Confluent's configs and wire format.

Writing, a Connect schema is translated to the format's schema as Confluent's AvroData /
JsonSchemaData / ProtobufData do, registered under the TopicNameStrategy subject
(`<topic>-key`/`<topic>-value`; `auto.register.schemas`, or looked up, or with
`use.latest.version` the subject's latest schema), and the payload framed with
strom.registry.wire. Reading, the writer's schema is fetched by id and translated back.

Avro (AvroData): int8/int16 as "int" with "connect.type"; optional = union ["null", T] with
default null; structs are records named by the schema name (io.confluent.connect.avro.
ConnectDefault without one); maps with non-string keys arrays of io.confluent.connect.avro.
MapEntry records; connect.name/connect.version/connect.doc/connect.parameters properties;
Decimal the "decimal" logical type on bytes (precision from connect.decimal.precision, 64 by
default), Date "date", Time "time-millis", Timestamp "timestamp-millis".

JSON Schema (JsonSchemaData): "integer"/"number" with "connect.type", bytes a base64 string
(connect.type bytes), structs objects with "title" (the name) and "connect.index" per
property, optional = oneOf [null, T], maps objects with additionalProperties (string keys)
or arrays of {key, value} objects, logical types by "title".

Protobuf (ProtobufData, proto3): structs are messages (nested ones declared inside), field
numbers by position, int8/int16/int32 int32, arrays repeated, string-keyed maps map<>,
optional fields proto3 `optional`; logical types are not supported (DataException).
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal as _decimal
import io
import json
from collections.abc import Callable, Mapping
from typing import Any

from strom.connect.config import ConfigDef, ConfigType, Importance
from strom.connect.converters.base import ConverterBase
from strom.connect.converters.json_converter import dumps
from strom.connect.data import (
    Date,
    Decimal,
    Headers,
    Schema,
    SchemaAndValue,
    SchemaBuilder,
    Struct,
    Time,
    Timestamp,
    Type,
)
from strom.connect.errors import DataException
from strom.registry import wire

SCHEMA_REGISTRY_URL = "schema.registry.url"
AUTO_REGISTER = "auto.register.schemas"
USE_LATEST = "use.latest.version"
AUTH_SOURCE = "basic.auth.credentials.source"
AUTH_USER_INFO = "basic.auth.user.info"
SR_AUTH_USER_INFO = "schema.registry.basic.auth.user.info"

AVRO_NAMESPACE = "io.confluent.connect.avro"
DEFAULT_RECORD = "ConnectDefault"
MAP_ENTRY = "MapEntry"
PRECISION_PARAM = "connect.decimal.precision"


class RegistryConverter(ConverterBase):
    """What the three converters share: configs, the registry client, subjects, framing."""

    SCHEMA_TYPE = "AVRO"

    def __init__(self, client: Any = None) -> None:
        self.client = client
        self.auto_register = True
        self.use_latest = False
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, Any] = {}

    @classmethod
    def config_def(cls) -> ConfigDef:
        return (ConfigDef()
                .define(SCHEMA_REGISTRY_URL, ConfigType.LIST, importance=Importance.HIGH,
                        doc="Comma-separated list of URLs for Schema Registry instances.")
                .define(AUTO_REGISTER, ConfigType.BOOLEAN, True, Importance.MEDIUM,
                        "Specify if the Serializer should attempt to register the Schema.")
                .define(USE_LATEST, ConfigType.BOOLEAN, False, Importance.LOW,
                        "Use the latest version of the subject's schema for serialization.")
                .define(AUTH_SOURCE, ConfigType.STRING, "URL", Importance.MEDIUM,
                        "Where the basic auth credentials come from: URL or USER_INFO.")
                .define(AUTH_USER_INFO, ConfigType.PASSWORD, "", Importance.MEDIUM,
                        "user:password for basic auth (with USER_INFO).")
                .define(SR_AUTH_USER_INFO, ConfigType.PASSWORD, "", Importance.MEDIUM,
                        "user:password for basic auth (with USER_INFO).")
                .define("key.subject.name.strategy", ConfigType.STRING,
                        "io.confluent.kafka.serializers.subject.TopicNameStrategy",
                        Importance.MEDIUM, "Only TopicNameStrategy is supported.")
                .define("value.subject.name.strategy", ConfigType.STRING,
                        "io.confluent.kafka.serializers.subject.TopicNameStrategy",
                        Importance.MEDIUM, "Only TopicNameStrategy is supported."))

    def configure(self, configs: Mapping[str, Any], is_key: bool = False) -> None:
        super().configure(configs, is_key)
        parsed = self.config_def().parse(configs)
        self.auto_register = bool(parsed[AUTO_REGISTER])
        self.use_latest = bool(parsed[USE_LATEST])
        if self.client is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            conf: dict[str, Any] = {"url": ",".join(parsed[SCHEMA_REGISTRY_URL])}
            user_info = parsed[SR_AUTH_USER_INFO].value or parsed[AUTH_USER_INFO].value
            if str(parsed[AUTH_SOURCE]).upper() == "USER_INFO" and user_info:
                conf["basic.auth.user.info"] = user_info
            self.client = SchemaRegistryClient(conf)

    def close(self) -> None:
        closer = getattr(self.client, "__exit__", None)
        if closer is not None:
            closer(None, None, None)

    def subject(self, topic: str) -> str:
        return f"{topic}-{'key' if self.is_key else 'value'}"

    # -- the format's half (overridden)
    def format_schema(self, schema: Schema) -> str:
        raise NotImplementedError

    def encode(self, schema: Schema, schema_text: str, value: Any) -> tuple[bytes, list[int]]:
        raise NotImplementedError

    def decode(self, schema_text: str, payload: bytes, indexes: list[int]) -> SchemaAndValue:
        raise NotImplementedError

    # -- registry
    def _schema_id(self, topic: str, schema_text: str) -> tuple[int, str]:
        from confluent_kafka.schema_registry import Schema as RegistrySchema

        subject = self.subject(topic)
        if self.use_latest:
            latest = self.client.get_latest_version(subject)
            return int(latest.schema_id), str(latest.schema.schema_str)
        key = (subject, schema_text)
        if key not in self._ids:
            registry_schema = RegistrySchema(schema_text, self.SCHEMA_TYPE)
            try:
                if self.auto_register:
                    self._ids[key] = int(self.client.register_schema(subject, registry_schema))
                else:
                    self._ids[key] = int(self.client.lookup_schema(subject,
                                                                   registry_schema).schema_id)
            except Exception as exc:
                raise DataException(f"Failed to {'register' if self.auto_register else 'look up'}"
                                    f" schema for subject {subject}: {exc}") from exc
        return self._ids[key], schema_text

    def from_connect_data(self, topic: str, schema: Schema | None, value: Any,
                          headers: Headers | None = None) -> bytes | None:
        if value is None:
            return None
        if schema is None:
            raise DataException(f"{type(self).__name__} requires a schema")
        schema_id, schema_text = self._schema_id(topic, self.format_schema(schema))
        payload, indexes = self.encode(schema, schema_text, value)
        return wire.frame(schema_id, payload, indexes if self.SCHEMA_TYPE == "PROTOBUF"
                          else None)

    def to_connect_data(self, topic: str, value: bytes | None,
                        headers: Headers | None = None) -> SchemaAndValue:
        if value is None:
            return SchemaAndValue(None, None)
        try:
            schema_id = wire.decode_header(value)
            offset = wire.HEADER_SIZE
            indexes: list[int] = []
            if self.SCHEMA_TYPE == "PROTOBUF":
                decoded, offset = wire.decode_message_indexes(value, offset)
                indexes = list(decoded)
        except wire.WireFormatError as exc:
            raise DataException(f"Failed to deserialize data for topic {topic}: {exc}") from exc
        if schema_id not in self._by_id:
            self._by_id[schema_id] = self.client.get_schema(schema_id).schema_str
        return self.decode(self._by_id[schema_id], bytes(value[offset:]), indexes)


# -- Avro --------------------------------------------------------------------------------------

_AVRO_PRIMITIVES = {Type.INT32: "int", Type.INT64: "long", Type.FLOAT32: "float",
                    Type.FLOAT64: "double", Type.BOOLEAN: "boolean", Type.STRING: "string",
                    Type.BYTES: "bytes"}
_AVRO_LOGICAL = {Date.LOGICAL_NAME: ("int", "date"), Time.LOGICAL_NAME: ("int", "time-millis"),
                 Timestamp.LOGICAL_NAME: ("long", "timestamp-millis")}


def _split_name(full: str) -> tuple[str, str | None]:
    namespace, _, name = full.rpartition(".")
    return name, namespace or None


class _AvroData:
    """Connect <-> Avro schemas and values (Confluent's AvroData, the common cases)."""

    def __init__(self) -> None:
        self.defined: set[str] = set()

    def from_connect(self, schema: Schema) -> Any:
        avro = self._non_optional(schema)
        if schema.optional:
            return ["null", avro]
        return avro

    def _meta(self, schema: Schema, avro: dict[str, Any]) -> dict[str, Any]:
        if schema.version is not None:
            avro["connect.version"] = schema.version
        if schema.doc is not None:
            avro["connect.doc"] = schema.doc
        if schema.parameters:
            avro["connect.parameters"] = dict(schema.parameters)
        if schema.name is not None:
            avro["connect.name"] = schema.name
        return avro

    def _non_optional(self, schema: Schema) -> Any:
        if schema.name == Decimal.LOGICAL_NAME:
            params = schema.parameters or {}
            return self._meta(schema, {
                "type": "bytes", "scale": Decimal.scale(schema),
                "precision": int(params.get(PRECISION_PARAM, "64")), "logicalType": "decimal"})
        if schema.name in _AVRO_LOGICAL:
            base, logical = _AVRO_LOGICAL[schema.name]
            return self._meta(schema, {"type": base, "logicalType": logical})
        if schema.type in (Type.INT8, Type.INT16):
            return self._meta(schema, {"type": "int", "connect.type": schema.type.value})
        if schema.type in _AVRO_PRIMITIVES:
            avro: Any = {"type": _AVRO_PRIMITIVES[schema.type]}
            self._meta(schema, avro)
            return avro if len(avro) > 1 else avro["type"]
        if schema.type is Type.ARRAY:
            assert schema.value_schema is not None
            return self._meta(schema, {"type": "array",
                                       "items": self.from_connect(schema.value_schema)})
        if schema.type is Type.MAP:
            return self._map(schema)
        return self._record(schema)

    def _map(self, schema: Schema) -> Any:
        key, value = schema.key_schema, schema.value_schema
        assert key is not None and value is not None
        if key.type is Type.STRING and not key.optional:
            return self._meta(schema, {"type": "map", "values": self.from_connect(value)})
        entry_name = f"{AVRO_NAMESPACE}.{MAP_ENTRY}"
        if entry_name in self.defined:
            items: Any = entry_name
        else:
            self.defined.add(entry_name)
            items = {"type": "record", "name": MAP_ENTRY, "namespace": AVRO_NAMESPACE,
                     "fields": [{"name": "key", "type": self.from_connect(key)},
                                {"name": "value", "type": self.from_connect(value)}]}
        return self._meta(schema, {"type": "array", "items": items})

    def _record(self, schema: Schema) -> Any:
        full = schema.name or f"{AVRO_NAMESPACE}.{DEFAULT_RECORD}"
        if full in self.defined:
            return full
        self.defined.add(full)
        name, namespace = _split_name(full)
        avro: dict[str, Any] = {"type": "record", "name": name}
        if namespace:
            avro["namespace"] = namespace
        if schema.doc is not None:
            avro["doc"] = schema.doc
        fields = []
        for f in schema.fields:
            field: dict[str, Any] = {"name": f.name, "type": self.from_connect(f.schema)}
            if f.schema.optional and f.schema.default is None:
                field["default"] = None
            elif f.schema.default is not None:
                field["default"] = _avro_default(f.schema, f.schema.default)
            fields.append(field)
        avro["fields"] = fields
        if schema.version is not None:
            avro["connect.version"] = schema.version
        if schema.parameters:
            avro["connect.parameters"] = dict(schema.parameters)
        if schema.name is not None:
            avro["connect.name"] = schema.name
        return avro


def _avro_default(schema: Schema, value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, Struct):
        return {f.name: _avro_default(f.schema, value.get(f.name)) for f in schema.fields}
    if schema.name == Decimal.LOGICAL_NAME:
        return Decimal.from_logical(schema, value).decode("latin-1")
    if schema.name == Date.LOGICAL_NAME:
        return Date.from_logical(schema, value)
    if schema.name == Time.LOGICAL_NAME:
        return Time.from_logical(schema, value)
    if schema.name == Timestamp.LOGICAL_NAME:
        return Timestamp.from_logical(schema, value)
    return value


def avro_schema_of(schema: Schema) -> Any:
    """A Connect schema as an Avro schema (JSON-able), as Confluent's AvroData."""
    return _AvroData().from_connect(schema)


def _avro_value(schema: Schema, value: Any) -> Any:
    if value is None or schema.name in _AVRO_LOGICAL or schema.name == Decimal.LOGICAL_NAME:
        return value
    if schema.type is Type.STRUCT:
        return {f.name: _avro_value(f.schema, value.get(f.name)) for f in schema.fields}
    if schema.type is Type.ARRAY:
        assert schema.value_schema is not None
        return [_avro_value(schema.value_schema, v) for v in value]
    if schema.type is Type.MAP:
        key, val = schema.key_schema, schema.value_schema
        assert key is not None and val is not None
        if key.type is Type.STRING and not key.optional:
            return {k: _avro_value(val, v) for k, v in value.items()}
        return [{"key": _avro_value(key, k), "value": _avro_value(val, v)}
                for k, v in value.items()]
    return value


class _ToConnect:
    """Avro schemas and values back to Connect (Confluent's AvroData.toConnectSchema)."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def schema(self, avro: Any, namespace: str | None = None, optional: bool = False
               ) -> Schema:
        if isinstance(avro, list):
            branches = [b for b in avro if b != "null"]
            if len(branches) != 1:
                raise DataException("Only unions of null and one type are supported")
            return self.schema(branches[0], namespace, optional=True)
        if isinstance(avro, str):
            if avro in self.named:
                return self.schema(self.named[avro], namespace, optional)
            full = f"{namespace}.{avro}" if namespace and "." not in avro else avro
            if full in self.named:
                return self.schema(self.named[full], namespace, optional)
            avro = {"type": avro}
        if isinstance(avro.get("type"), dict | list):  # {"type": {...}}: the inner schema
            return self.schema(avro["type"], namespace, optional)
        builder = self._builder(avro, namespace)
        if optional:
            builder.optional()
        return builder.build()

    def _builder(self, avro: dict[str, Any], namespace: str | None) -> SchemaBuilder:
        kind = avro["type"]
        logical = avro.get("logicalType")
        connect_name = avro.get("connect.name")
        if logical == "decimal":
            builder = SchemaBuilder.bytes().name(Decimal.LOGICAL_NAME).version(1)
            builder.parameters(avro.get("connect.parameters") or
                               {"scale": str(avro.get("scale", 0))})
            return builder
        for name, (_, avro_logical) in _AVRO_LOGICAL.items():
            if logical == avro_logical:
                return {Date.LOGICAL_NAME: Date.builder, Time.LOGICAL_NAME: Time.builder,
                        Timestamp.LOGICAL_NAME: Timestamp.builder}[name]()
        if kind == "record":
            return self._record(avro, namespace)
        builder = self._unnamed(avro, kind, namespace)
        if connect_name is not None:
            builder.name(connect_name)
        self._meta(builder, avro)
        return builder

    def _unnamed(self, avro: dict[str, Any], kind: str, namespace: str | None
                 ) -> SchemaBuilder:
        builder: SchemaBuilder
        if kind == "array":
            items = avro["items"]
            entry = self.named.get(items) if isinstance(items, str) else items
            if isinstance(entry, dict) and entry.get("type") == "record" and \
                    _full_name(entry, namespace) == f"{AVRO_NAMESPACE}.{MAP_ENTRY}":
                if isinstance(items, dict):
                    self.named[f"{AVRO_NAMESPACE}.{MAP_ENTRY}"] = items
                fields = {f["name"]: f["type"] for f in entry["fields"]}
                builder = SchemaBuilder.map(self.schema(fields["key"], AVRO_NAMESPACE),
                                            self.schema(fields["value"], AVRO_NAMESPACE))
            else:
                builder = SchemaBuilder.array(self.schema(items, namespace))
        elif kind == "map":
            builder = SchemaBuilder.map(SchemaBuilder.string().build(),
                                        self.schema(avro["values"], namespace))
        elif kind == "int":
            builder = SchemaBuilder({"int8": Type.INT8, "int16": Type.INT16}.get(
                avro.get("connect.type", ""), Type.INT32))
        elif kind in ("enum",):
            builder = SchemaBuilder.string()
        elif kind == "fixed":
            builder = SchemaBuilder.bytes()
        else:
            reverse = {v: k for k, v in _AVRO_PRIMITIVES.items()}
            if kind not in reverse:
                raise DataException(f"Unsupported Avro type: {kind}")
            builder = SchemaBuilder(reverse[kind])
        return builder

    @staticmethod
    def _meta(builder: SchemaBuilder, avro: dict[str, Any]) -> None:
        if "connect.version" in avro:
            builder.version(int(avro["connect.version"]))
        if "connect.doc" in avro:
            builder.doc(avro["connect.doc"])
        if avro.get("connect.parameters"):
            builder.parameters(avro["connect.parameters"])

    def _record(self, avro: dict[str, Any], namespace: str | None) -> SchemaBuilder:
        full = _full_name(avro, namespace)
        self.named[full] = avro
        own_namespace = full.rpartition(".")[0] or None
        builder = SchemaBuilder.struct()
        if full != f"{AVRO_NAMESPACE}.{DEFAULT_RECORD}":
            builder.name(avro.get("connect.name", full))
        if "doc" in avro:
            builder.doc(avro["doc"])
        if "connect.version" in avro:
            builder.version(int(avro["connect.version"]))
        if avro.get("connect.parameters"):
            builder.parameters(avro["connect.parameters"])
        for f in avro["fields"]:
            field_schema = self.schema(f["type"], own_namespace)
            if "default" in f and f["default"] is not None:
                field_schema = _with_default(field_schema, f["default"])
            builder.field(f["name"], field_schema)
        return builder


def _with_default(schema: Schema, avro_default: Any) -> Schema:
    value = avro_default
    if schema.name == Decimal.LOGICAL_NAME:
        value = Decimal.to_logical(schema, avro_default.encode("latin-1"))
    elif schema.name == Date.LOGICAL_NAME:
        value = Date.to_logical(schema, avro_default)
    elif schema.name == Time.LOGICAL_NAME:
        value = Time.to_logical(schema, avro_default)
    elif schema.name == Timestamp.LOGICAL_NAME:
        value = Timestamp.to_logical(schema, avro_default)
    elif schema.type is Type.BYTES:
        value = avro_default.encode("latin-1")
    elif schema.type in (Type.FLOAT32, Type.FLOAT64):
        value = float(avro_default)
    elif schema.type is Type.STRUCT:
        return schema  # struct defaults are not carried back
    return Schema(schema.type, schema.optional, value, schema.name, schema.version,
                  schema.doc, schema.parameters, schema.key_schema, schema.value_schema,
                  schema.fields)


def _full_name(avro: dict[str, Any], namespace: str | None) -> str:
    name = str(avro["name"])
    if "." in name:
        return name
    ns = avro.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def connect_schema_of_avro(avro: Any) -> Schema:
    """An Avro schema (JSON-able) as a Connect schema, as Confluent's AvroData."""
    return _ToConnect().schema(avro)


def _connect_value(schema: Schema, value: Any) -> Any:
    if value is None:
        return None
    if schema.name == Decimal.LOGICAL_NAME:
        return value if isinstance(value, _decimal.Decimal) else \
            Decimal.to_logical(schema, value)
    if schema.name in _AVRO_LOGICAL:
        if schema.name == Timestamp.LOGICAL_NAME and value.tzinfo is None:
            return value.replace(tzinfo=_dt.UTC)
        return value
    return _nested_to_connect(schema, value, _connect_value)


def _nested_to_connect(schema: Schema, value: Any,
                       convert: Callable[[Schema, Any], Any]) -> Any:
    """A decoded struct, array or map as its Connect value, each element through `convert`
    (a map with non-string keys comes as a list of {"key", "value"} entries); other values
    as they are."""
    if schema.type is Type.STRUCT:
        struct = Struct(schema)
        for f in schema.fields:
            struct.put(f.name, convert(f.schema, value.get(f.name)))
        return struct
    if schema.type is Type.ARRAY:
        assert schema.value_schema is not None
        return [convert(schema.value_schema, v) for v in value]
    if schema.type is Type.MAP:
        key, val = schema.key_schema, schema.value_schema
        assert key is not None and val is not None
        if isinstance(value, list):
            return {convert(key, e["key"]): convert(val, e["value"]) for e in value}
        return {k: convert(val, v) for k, v in value.items()}
    return value


class AvroConverter(RegistryConverter):
    """io.confluent.connect.avro.AvroConverter."""

    SCHEMA_TYPE = "AVRO"

    def __init__(self, client: Any = None) -> None:
        super().__init__(client)
        self._parsed: dict[str, Any] = {}

    def format_schema(self, schema: Schema) -> str:
        return json.dumps(avro_schema_of(schema), separators=(",", ":"))

    def _parse(self, text: str) -> Any:
        import fastavro

        if text not in self._parsed:
            self._parsed[text] = fastavro.parse_schema(json.loads(text))
        return self._parsed[text]

    def encode(self, schema: Schema, schema_text: str, value: Any) -> tuple[bytes, list[int]]:
        import fastavro

        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, self._parse(schema_text), _avro_value(schema, value))
        except (ValueError, TypeError, KeyError) as exc:
            raise DataException(f"Failed to serialize Avro data: {exc}") from exc
        return out.getvalue(), []

    def decode(self, schema_text: str, payload: bytes, indexes: list[int]) -> SchemaAndValue:
        import fastavro

        avro = json.loads(schema_text)
        record = fastavro.schemaless_reader(io.BytesIO(payload), self._parse(schema_text),
                                            None)
        schema = connect_schema_of_avro(avro)
        return SchemaAndValue(schema, _connect_value(schema, record))


# -- JSON Schema -------------------------------------------------------------------------------

_JSON_TYPES = {Type.INT8: ("integer", "int8"), Type.INT16: ("integer", "int16"),
               Type.INT32: ("integer", "int32"), Type.INT64: ("integer", "int64"),
               Type.FLOAT32: ("number", "float32"), Type.FLOAT64: ("number", "float64"),
               Type.BOOLEAN: ("boolean", None), Type.STRING: ("string", None),
               Type.BYTES: ("string", "bytes")}


def json_schema_of(schema: Schema) -> dict[str, Any]:
    """A Connect schema as a JSON Schema, as Confluent's JsonSchemaData."""
    node = _json_non_optional(schema)
    if schema.optional:
        return {"oneOf": [{"type": "null"}, node]}
    return node


def _json_non_optional(schema: Schema) -> dict[str, Any]:
    node: dict[str, Any]
    if schema.name == Decimal.LOGICAL_NAME:
        node = {"type": "number"}
    elif schema.type in _JSON_TYPES:
        kind, connect_type = _JSON_TYPES[schema.type]
        node = {"type": kind}
        if connect_type:
            node["connect.type"] = connect_type
    else:
        node = _json_nested_schema(schema)
    if schema.name is not None:
        node["title"] = schema.name
    if schema.version is not None:
        node["connect.version"] = schema.version
    if schema.doc is not None:
        node["description"] = schema.doc
    if schema.parameters:
        node["connect.parameters"] = dict(schema.parameters)
    return node


def _json_nested_schema(schema: Schema) -> dict[str, Any]:
    node: dict[str, Any]
    if schema.type is Type.ARRAY:
        assert schema.value_schema is not None
        node = {"type": "array", "items": json_schema_of(schema.value_schema)}
    elif schema.type is Type.MAP:
        key, value = schema.key_schema, schema.value_schema
        assert key is not None and value is not None
        if key.type is Type.STRING and not key.optional:
            node = {"type": "object", "additionalProperties": json_schema_of(value),
                    "connect.type": "map"}
        else:
            node = {"type": "array", "connect.type": "map", "items": {
                "type": "object", "properties": {"key": json_schema_of(key),
                                                 "value": json_schema_of(value)}}}
    else:
        properties = {}
        for f in schema.fields:
            prop = json_schema_of(f.schema)
            prop["connect.index"] = f.index
            properties[f.name] = prop
        node = {"type": "object", "properties": properties}
    return node


def connect_schema_of_json(node: dict[str, Any]) -> Schema:
    """A JSON Schema (as json_schema_of writes them) back to a Connect schema."""
    optional = False
    if "oneOf" in node:
        branches = [b for b in node["oneOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise DataException("Only oneOf null and one type is supported")
        node, optional = branches[0], True
    builder = _json_builder(node)
    if optional:
        builder.optional()
    return builder.build()


def _json_builder(node: dict[str, Any]) -> SchemaBuilder:
    title = node.get("title")
    kind = node.get("type")
    connect_type = node.get("connect.type")
    builder: SchemaBuilder
    if title == Decimal.LOGICAL_NAME:
        builder = SchemaBuilder.bytes()
    elif kind == "object" and connect_type == "map":
        builder = SchemaBuilder.map(SchemaBuilder.string().build(),
                                    connect_schema_of_json(node["additionalProperties"]))
    elif kind == "array" and connect_type == "map":
        props = node["items"]["properties"]
        builder = SchemaBuilder.map(connect_schema_of_json(props["key"]),
                                    connect_schema_of_json(props["value"]))
    elif kind == "array":
        builder = SchemaBuilder.array(connect_schema_of_json(node["items"]))
    elif kind == "object":
        builder = SchemaBuilder.struct()
        props = sorted(node.get("properties", {}).items(),
                       key=lambda kv: kv[1].get("connect.index", 0))
        for name, prop in props:
            builder.field(name, connect_schema_of_json(prop))
    else:
        builder = SchemaBuilder(_json_primitive(kind, connect_type))
    _json_meta(builder, node)
    return builder


_BY_JSON: dict[tuple[str, str | None], Type] = {v: k for k, v in _JSON_TYPES.items()}
_JSON_FALLBACK = {"integer": Type.INT64, "number": Type.FLOAT64, "string": Type.STRING,
                  "boolean": Type.BOOLEAN}


def _json_primitive(kind: Any, connect_type: Any) -> Type:
    found = _BY_JSON.get((kind, connect_type)) or _JSON_FALLBACK.get(kind)
    if found is None:
        raise DataException(f"Unsupported JSON Schema type: {kind}")
    return found


def _json_meta(builder: SchemaBuilder, node: dict[str, Any]) -> None:
    title = node.get("title")
    if title is not None:
        builder.name(title)
    if "connect.version" in node:
        builder.version(int(node["connect.version"]))
    if "description" in node:
        builder.doc(node["description"])
    if node.get("connect.parameters"):
        builder.parameters(node["connect.parameters"])


_TO_JSON_LOGICAL: dict[str | None, Any] = {
    Decimal.LOGICAL_NAME: lambda s, v: v, Date.LOGICAL_NAME: Date.from_logical,
    Time.LOGICAL_NAME: Time.from_logical, Timestamp.LOGICAL_NAME: Timestamp.from_logical}
_FROM_JSON_LOGICAL: dict[str | None, Any] = {
    Decimal.LOGICAL_NAME: lambda s, v: _decimal.Decimal(str(v)).quantize(
        _decimal.Decimal(1).scaleb(-Decimal.scale(s))),
    Date.LOGICAL_NAME: Date.to_logical, Time.LOGICAL_NAME: Time.to_logical,
    Timestamp.LOGICAL_NAME: Timestamp.to_logical}


def _json_value(schema: Schema, value: Any) -> Any:
    if value is None:
        return None
    if schema.name in _TO_JSON_LOGICAL:
        return _TO_JSON_LOGICAL[schema.name](schema, value)
    if schema.type is Type.BYTES:
        return base64.b64encode(bytes(value)).decode("ascii")
    if schema.type is Type.STRUCT:
        return {f.name: _json_value(f.schema, value.get(f.name)) for f in schema.fields}
    if schema.type is Type.ARRAY:
        assert schema.value_schema is not None
        return [_json_value(schema.value_schema, v) for v in value]
    if schema.type is Type.MAP:
        key, val = schema.key_schema, schema.value_schema
        assert key is not None and val is not None
        if key.type is Type.STRING and not key.optional:
            return {k: _json_value(val, v) for k, v in value.items()}
        return [{"key": _json_value(key, k), "value": _json_value(val, v)}
                for k, v in value.items()]
    return value


def _json_to_connect(schema: Schema, value: Any) -> Any:
    if value is None:
        return None
    if schema.name in _FROM_JSON_LOGICAL:
        return _FROM_JSON_LOGICAL[schema.name](schema, value)
    if schema.type is Type.BYTES:
        return base64.b64decode(value)
    if schema.type in (Type.FLOAT32, Type.FLOAT64):
        return float(value)
    return _nested_to_connect(schema, value, _json_to_connect)


class JsonSchemaConverter(RegistryConverter):
    """io.confluent.connect.json.JsonSchemaConverter."""

    SCHEMA_TYPE = "JSON"

    def format_schema(self, schema: Schema) -> str:
        return json.dumps(json_schema_of(schema), separators=(",", ":"))

    def encode(self, schema: Schema, schema_text: str, value: Any) -> tuple[bytes, list[int]]:
        from jsonschema import Draft7Validator, ValidationError

        node = _json_value(schema, value)
        try:
            Draft7Validator(json.loads(schema_text)).validate(
                json.loads(json.dumps(node, default=float)))
        except ValidationError as exc:
            raise DataException(f"Validation error: {exc.message}") from exc
        return dumps(node).encode(), []

    def decode(self, schema_text: str, payload: bytes, indexes: list[int]) -> SchemaAndValue:
        schema = connect_schema_of_json(json.loads(schema_text))
        try:
            node = json.loads(payload, parse_float=_decimal.Decimal)
        except ValueError as exc:
            raise DataException(f"Failed to deserialize JSON: {exc}") from exc
        return SchemaAndValue(schema, _json_to_connect(schema, node))


# -- Protobuf ----------------------------------------------------------------------------------

_PROTO_TYPES = {Type.INT8: "int32", Type.INT16: "int32", Type.INT32: "int32",
                Type.INT64: "int64", Type.FLOAT32: "float", Type.FLOAT64: "double",
                Type.BOOLEAN: "bool", Type.STRING: "string", Type.BYTES: "bytes"}


def _proto_name(schema: Schema, default: str) -> str:
    return (schema.name or default).rsplit(".", 1)[-1]


def _proto_message(schema: Schema, name: str, depth: int) -> list[str]:
    pad = "  " * depth
    lines = [f"{pad}message {name} {{"]
    for f in schema.fields:
        lines.extend(_proto_field(f.schema, f.name, f.index + 1, depth + 1))
    lines.append(f"{pad}}}")
    return lines


def _proto_field(schema: Schema, name: str, number: int, depth: int) -> list[str]:
    pad = "  " * depth
    if schema.name in (Decimal.LOGICAL_NAME, Date.LOGICAL_NAME, Time.LOGICAL_NAME,
                       Timestamp.LOGICAL_NAME):
        raise DataException(f"ProtobufConverter does not support logical type {schema.name}")
    label, kind = "", ""
    nested: list[str] = []
    if schema.type is Type.ARRAY:
        assert schema.value_schema is not None
        label = "repeated "
        nested, kind = _proto_type(schema.value_schema, name, depth)
    elif schema.type is Type.MAP:
        key, value = schema.key_schema, schema.value_schema
        assert key is not None and value is not None
        if key.type not in (Type.STRING, Type.INT32, Type.INT64, Type.BOOLEAN):
            raise DataException(f"Unsupported Protobuf map key type {key.type}")
        nested, value_kind = _proto_type(value, name, depth)
        kind = f"map<{_PROTO_TYPES[key.type]}, {value_kind}>"
    else:
        nested, kind = _proto_type(schema, name, depth)
        if schema.optional and schema.type is not Type.STRUCT:
            label = "optional "
    return [*nested, f"{pad}{label}{kind} {name} = {number};"]


def _proto_type(schema: Schema, field_name: str, depth: int) -> tuple[list[str], str]:
    if schema.type is Type.STRUCT:
        name = _proto_name(schema, field_name[:1].upper() + field_name[1:])
        return _proto_message(schema, name, depth), name
    if schema.type in (Type.ARRAY, Type.MAP):
        raise DataException("Protobuf does not support nested arrays or maps directly")
    return [], _PROTO_TYPES[schema.type]


def proto_schema_of(schema: Schema) -> str:
    """A Connect struct schema as a proto3 file, as Confluent's ProtobufData (the common
    cases)."""
    if schema.type is not Type.STRUCT:
        raise DataException("ProtobufConverter requires a struct schema")
    name = _proto_name(schema, DEFAULT_RECORD)
    package = schema.name.rpartition(".")[0] if schema.name and "." in schema.name else ""
    head = ['syntax = "proto3";']
    if package:
        head.append(f"package {package};")
    return "\n".join([*head, "", *_proto_message(schema, name, 0), ""])


class ProtobufConverter(RegistryConverter):
    """io.confluent.connect.protobuf.ProtobufConverter (proto3, no logical types)."""

    SCHEMA_TYPE = "PROTOBUF"

    def __init__(self, client: Any = None) -> None:
        super().__init__(client)
        self._classes: dict[str, Any] = {}

    def format_schema(self, schema: Schema) -> str:
        return proto_schema_of(schema)

    def _message_class(self, text: str, indexes: list[int]) -> Any:
        key = text + repr(indexes)
        if key in self._classes:
            return self._classes[key]
        from google.protobuf import descriptor_pool, message_factory

        from strom.registry.schemas.protobuf import parse_protobuf
        from strom.registry.schemas.protobuf_descriptor import schema_to_descriptor

        parsed = parse_protobuf(text, {})
        pool = descriptor_pool.DescriptorPool()
        fd = schema_to_descriptor(parsed, f"connect_{len(self._classes)}.proto")
        pool.Add(fd)
        try:
            full = parsed.message_at(indexes or [0]).full_name.lstrip(".")
        except IndexError as exc:
            raise DataException(f"No message at indexes {indexes} in the schema") from exc
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(full))
        self._classes[key] = cls
        return cls

    def encode(self, schema: Schema, schema_text: str, value: Any) -> tuple[bytes, list[int]]:
        cls = self._message_class(schema_text, [0])
        message = cls()
        _fill_message(message, schema, value)
        return message.SerializeToString(), [0]

    def decode(self, schema_text: str, payload: bytes, indexes: list[int]) -> SchemaAndValue:
        cls = self._message_class(schema_text, indexes)
        message = cls()
        try:
            message.ParseFromString(payload)
        except Exception as exc:
            raise DataException(f"Failed to deserialize Protobuf data: {exc}") from exc
        schema = _descriptor_schema(cls.DESCRIPTOR, top=True)
        return SchemaAndValue(schema, _message_value(message, schema))


def _fill_message(message: Any, schema: Schema, value: Struct) -> None:
    for f in schema.fields:
        item = value.get(f.name)
        if item is None:
            continue
        target = getattr(message, f.name)
        if f.schema.type is Type.STRUCT:
            _fill_message(target, f.schema, item)
        elif f.schema.type is Type.ARRAY:
            assert f.schema.value_schema is not None
            if f.schema.value_schema.type is Type.STRUCT:
                for element in item:
                    _fill_message(target.add(), f.schema.value_schema, element)
            else:
                target.extend(item)
        elif f.schema.type is Type.MAP:
            assert f.schema.value_schema is not None
            for k, v in item.items():
                if f.schema.value_schema.type is Type.STRUCT:
                    _fill_message(target[k], f.schema.value_schema, v)
                else:
                    target[k] = v
        else:
            setattr(message, f.name, item)


def _descriptor_schema(descriptor: Any, top: bool = False) -> Schema:
    from google.protobuf.descriptor import FieldDescriptor as FD

    scalar = {FD.TYPE_INT32: Type.INT32, FD.TYPE_SINT32: Type.INT32,
              FD.TYPE_SFIXED32: Type.INT32, FD.TYPE_UINT32: Type.INT64,
              FD.TYPE_INT64: Type.INT64, FD.TYPE_SINT64: Type.INT64,
              FD.TYPE_SFIXED64: Type.INT64, FD.TYPE_UINT64: Type.INT64,
              FD.TYPE_FIXED32: Type.INT64, FD.TYPE_FIXED64: Type.INT64,
              FD.TYPE_FLOAT: Type.FLOAT32, FD.TYPE_DOUBLE: Type.FLOAT64,
              FD.TYPE_BOOL: Type.BOOLEAN, FD.TYPE_STRING: Type.STRING,
              FD.TYPE_BYTES: Type.BYTES, FD.TYPE_ENUM: Type.STRING}
    builder = SchemaBuilder.struct().name(descriptor.full_name)

    def one(field: Any) -> Schema:
        if field.type == FD.TYPE_MESSAGE:
            return _descriptor_schema(field.message_type)
        return SchemaBuilder(scalar[field.type]).build()

    for field in descriptor.fields:
        if field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            entry = field.message_type
            schema = SchemaBuilder.map(one(entry.fields_by_name["key"]),
                                       one(entry.fields_by_name["value"])).build()
        elif _is_repeated(field):
            schema = SchemaBuilder.array(one(field)).build()
        else:
            schema = one(field)
            if field.has_presence:
                schema = Schema(schema.type, True, None, schema.name, schema.version,
                                schema.doc, schema.parameters, schema.key_schema,
                                schema.value_schema, schema.fields)
        builder.field(field.name, schema)
    return builder.build()


def _is_repeated(field: Any) -> bool:
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _message_value(message: Any, schema: Schema) -> Struct:
    struct = Struct(schema)
    for f in schema.fields:
        raw = getattr(message, f.name)
        if f.schema.optional and not message.HasField(f.name):
            continue
        if f.schema.type is Type.STRUCT:
            struct.put(f.name, _message_value(raw, f.schema) if message.HasField(f.name)
                       else None) if f.schema.optional else struct.put(
                f.name, _message_value(raw, f.schema))
        elif f.schema.type is Type.ARRAY:
            element = f.schema.value_schema
            assert element is not None
            struct.put(f.name, [_message_value(x, element) if element.type is Type.STRUCT
                                else x for x in raw])
        elif f.schema.type is Type.MAP:
            value_schema = f.schema.value_schema
            assert value_schema is not None
            struct.put(f.name, {k: _message_value(v, value_schema)
                                if value_schema.type is Type.STRUCT else v
                                for k, v in raw.items()})
        else:
            struct.put(f.name, raw)
    return struct
