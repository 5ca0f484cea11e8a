"""TimestampConverter and TimestampRouter, as Kafka's."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from strom.connect.config import ConfigDef, ConfigException, ConfigType, Importance, ValidString
from strom.connect.data import (
    Date,
    Schema,
    SchemaBuilder,
    Struct,
    Time,
    Timestamp,
    Type,
    datetime_to_millis,
    millis_to_datetime,
)
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
from strom.connect.transforms.dateformat import JavaDateFormat

TYPE_STRING = "string"
TYPE_UNIX = "unix"
TYPE_DATE = "Date"
TYPE_TIME = "Time"
TYPE_TIMESTAMP = "Timestamp"
VALID_TYPES = (TYPE_STRING, TYPE_UNIX, TYPE_DATE, TYPE_TIME, TYPE_TIMESTAMP)
_PRECISIONS = {"seconds": 1_000_000, "milliseconds": 1000, "microseconds": 1,
               "nanoseconds": 0.001}
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


class TimestampConverter(Transform, KeyOrValue):
    """Convert a timestamp field (or the whole key/value) between string (with `format`),
    unix (epoch in `unix.precision`), Date, Time and Timestamp."""

    PURPOSE = "converting timestamp formats"
    CONFIG_DEF = (
        ConfigDef()
        .define("field", ConfigType.STRING, "", Importance.HIGH,
                "The field containing the timestamp, or empty if the entire value is a "
                "timestamp")
        .define("target.type", ConfigType.STRING, importance=Importance.HIGH,
                doc="The desired timestamp representation: string, unix, Date, Time, or "
                    "Timestamp", validator=ValidString.in_(*VALID_TYPES))
        .define("format", ConfigType.STRING, "", Importance.MEDIUM,
                "A SimpleDateFormat-compatible format for the timestamp. Used to generate the "
                "output when type=string or used to parse the input if the input is a string.")
        .define("unix.precision", ConfigType.STRING, "milliseconds", Importance.LOW,
                "The desired Unix precision for the timestamp: seconds, milliseconds, "
                "microseconds, or nanoseconds.",
                validator=ValidString.in_(*_PRECISIONS))
        .define("replace.null.with.default", ConfigType.BOOLEAN, True, Importance.MEDIUM,
                "Whether to replace fields that have a default value and that are null to the "
                "default value."))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        c = self.config
        self.field: str = c.get("field")
        self.target: str = c.get("target.type")
        pattern: str = c.get("format")
        if self.target == TYPE_STRING and not pattern.strip():
            raise ConfigException("TimestampConverter requires format option to be specified "
                                  "when using string timestamps")
        try:
            self.format = JavaDateFormat(pattern) if pattern.strip() else None
        except ValueError as exc:
            raise ConfigException("TimestampConverter requires a SimpleDateFormat-compatible "
                                  f"pattern for string timestamps: {pattern}") from exc
        self.precision: str = c.get("unix.precision")
        self.replace_null = bool(c.get("replace.null.with.default"))
        self.cache = SchemaCache()

    # -- raw (a UTC datetime) <-> each type
    def _to_raw(self, kind: str, value: Any) -> _dt.datetime:
        if kind == TYPE_STRING:
            if self.format is None:
                raise DataException("TimestampConverter requires format option to be "
                                    "specified when using string timestamps")
            try:
                return self.format.parse(value)
            except ValueError as exc:
                raise DataException(f"Could not parse timestamp: value ({value}) does not match "
                                    f"pattern ({self.format.pattern})") from exc
        if kind == TYPE_UNIX:
            if not isinstance(value, int) or isinstance(value, bool):
                raise DataException(f"Expected Unix timestamp to be a Long, but found "
                                    f"{type(value)}")
            micros = value * _PRECISIONS[self.precision]
            return _EPOCH + _dt.timedelta(microseconds=int(micros))
        return _logical_to_raw(kind, value)

    def _from_raw(self, kind: str, raw: _dt.datetime) -> Any:
        if kind == TYPE_STRING:
            assert self.format is not None
            return self.format.format(raw)
        if kind == TYPE_UNIX:
            delta = raw - _EPOCH
            micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            if self.precision == "nanoseconds":
                return micros * 1000
            return micros // int(_PRECISIONS[self.precision])
        if kind == TYPE_DATE:
            return raw.astimezone(_dt.UTC).date()
        if kind == TYPE_TIME:
            return raw.astimezone(_dt.UTC).time()
        return millis_to_datetime(datetime_to_millis(raw)) if raw.microsecond % 1000 else raw

    def _target_schema(self, optional: bool) -> Schema:
        builder = {TYPE_STRING: SchemaBuilder.string, TYPE_UNIX: SchemaBuilder.int64,
                   TYPE_DATE: Date.builder, TYPE_TIME: Time.builder,
                   TYPE_TIMESTAMP: Timestamp.builder}[self.target]()
        if optional:
            builder.optional()
        return builder.build()

    def convert(self, value: Any, kind: str) -> Any:
        if value is None:
            return None
        return self._from_raw(self.target, self._to_raw(kind, value))

    def apply(self, record: R) -> R | None:
        schema = self.operating_schema(record)
        value = self.operating_value(record)
        if schema is None:
            return self._apply_schemaless(record, value)
        return self._apply_with_schema(record, schema, value)

    def _apply_schemaless(self, record: R, raw: Any) -> R:
        if not self.field:
            return self.new_record(record, None, self.convert(raw, _infer_kind(raw)))
        if raw is None:
            return record
        value = require_map(raw, self.PURPOSE)
        if self.field in value:
            value[self.field] = self.convert(value[self.field], _infer_kind(value[self.field]))
        return self.new_record(record, None, value)

    def _apply_with_schema(self, record: R, schema: Schema, raw: Any) -> R:
        if not self.field:
            kind = schema_kind(schema)
            return self.new_record(record, self._target_schema(schema.optional),
                                   self.convert(raw, kind))
        if raw is None:
            return record
        value = require_struct(raw, self.PURPOSE)
        updated_schema = self.cache.get(value.schema)
        if updated_schema is None:
            builder = copy_schema_basics(value.schema, SchemaBuilder.struct())
            for f in value.schema.fields:
                builder.field(f.name, self._target_schema(f.schema.optional)
                              if f.name == self.field else f.schema)
            if value.schema.optional:
                builder.optional()
            updated_schema = builder.build()
            self.cache.put(value.schema, updated_schema)
        updated = Struct(updated_schema)
        for f in value.schema.fields:
            item = struct_value(value, f.name, self.replace_null)
            if f.name == self.field:
                item = self.convert(item, schema_kind(f.schema))
            updated.put(f.name, item)
        return self.new_record(record, updated_schema, updated)


def _utc(value: _dt.datetime) -> _dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)


def _logical_to_raw(kind: str, value: Any) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return _utc(value)
    if kind == TYPE_DATE and isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC)
    if kind == TYPE_TIME and isinstance(value, _dt.time):
        return _dt.datetime.combine(_EPOCH.date(), value, tzinfo=_dt.UTC)
    raise DataException(f"Expected {kind} to be a java.util.Date, but found {type(value)}")


def schema_kind(schema: Schema) -> str:
    """Which of the five representations a schema is (DataException for none)."""
    if schema.name == Timestamp.LOGICAL_NAME:
        return TYPE_TIMESTAMP
    if schema.name == Date.LOGICAL_NAME:
        return TYPE_DATE
    if schema.name == Time.LOGICAL_NAME:
        return TYPE_TIME
    if schema.type is Type.STRING:
        return TYPE_STRING
    if schema.type is Type.INT64:
        return TYPE_UNIX
    raise DataException(f"Schema {schema!r} does not correspond to a known timestamp type "
                        "format")


def _infer_kind(value: Any) -> str:
    if isinstance(value, _dt.datetime):
        return TYPE_TIMESTAMP
    if isinstance(value, _dt.date):
        return TYPE_DATE
    if isinstance(value, _dt.time):
        return TYPE_TIME
    if isinstance(value, int) and not isinstance(value, bool):
        return TYPE_UNIX
    if isinstance(value, str):
        return TYPE_STRING
    raise DataException(f"TimestampConverter does not support {type(value)} objects as "
                        "timestamps")


class TimestampConverterKey(TimestampConverter, KeyMixin):
    pass


class TimestampConverterValue(TimestampConverter, ValueMixin):
    pass


class TimestampRouter(Transform):
    """Route to `topic.format` with ${topic} and ${timestamp} (the record's timestamp in
    `timestamp.format`)."""

    CONFIG_DEF = (
        ConfigDef()
        .define("topic.format", ConfigType.STRING, "${topic}-${timestamp}", Importance.HIGH,
                "Format string which can contain ${topic} and ${timestamp} as placeholders "
                "for the topic and timestamp, respectively.")
        .define("timestamp.format", ConfigType.STRING, "yyyyMMdd", Importance.HIGH,
                "Format string for the timestamp that is compatible with "
                "java.text.SimpleDateFormat."))

    def configure(self, configs: Mapping[str, Any]) -> None:
        super().configure(configs)
        self.topic_format: str = self.config.get("topic.format")
        self.timestamp_format = JavaDateFormat(self.config.get("timestamp.format"))

    def apply(self, record: R) -> R | None:
        if record.timestamp is None:
            raise DataException(f"Timestamp missing on record: {record}")
        stamp = self.timestamp_format.format(millis_to_datetime(record.timestamp))
        topic = self.topic_format.replace("${topic}", record.topic) \
            .replace("${timestamp}", stamp)
        return record.new_record(topic, record.kafka_partition, record.key_schema, record.key,
                                 record.value_schema, record.value, record.timestamp)


