"""The S3 sink's file formats: JSON lines (values as JsonConverter writes them without schemas)
and Parquet (pyarrow; a Connect schema becomes an Arrow schema, Structs become records).

A format turns a record value into a row when the record arrives (so a value that does not fit
fails at `put`, for the errant record reporter) and rows into a file's bytes when the file is
committed. Both are deterministic: the same rows give the same bytes, so a file rewritten after a
redelivery is the same object.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import gzip
from collections.abc import Mapping, Sequence
from typing import Any

from strom.connect.data import Date, Decimal, Schema, Struct, Time, Timestamp, Type
from strom.connect.errors import ConfigException, DataException

JSON_FORMAT = "io.confluent.connect.s3.format.json.JsonFormat"
PARQUET_FORMAT = "io.confluent.connect.s3.format.parquet.ParquetFormat"
PARQUET_CODECS = {"none": "NONE", "uncompressed": "NONE", "snappy": "SNAPPY", "gzip": "GZIP",
                  "lz4": "LZ4", "zstd": "ZSTD", "brotli": "BROTLI"}
# The column a value whose schema is not a STRUCT is written to.
VALUE_COLUMN = "value"


class Format:
    extension = ""
    content_type = "application/octet-stream"

    def row(self, topic: str, schema: Schema | None, value: Any) -> Any:
        raise NotImplementedError

    def render(self, schema: Schema | None, rows: Sequence[Any]) -> bytes:
        raise NotImplementedError


class JsonLinesFormat(Format):
    content_type = "application/json"

    def __init__(self, compression: str = "none") -> None:
        from strom.connect.converters.json_converter import JsonConverter
        self.converter = JsonConverter()
        self.converter.configure({"schemas.enable": "false"}, False)
        self.gzip = compression == "gzip"
        self.extension = ".json.gz" if self.gzip else ".json"

    def row(self, topic: str, schema: Schema | None, value: Any) -> bytes:
        return self.converter.from_connect_data(topic, schema, value) or b"null"

    def render(self, schema: Schema | None, rows: Sequence[Any]) -> bytes:
        data = b"".join(row + b"\n" for row in rows)
        return gzip.compress(data, mtime=0) if self.gzip else data


class ParquetFormat(Format):
    def __init__(self, codec: str = "snappy") -> None:
        try:
            self.codec = PARQUET_CODECS[codec.strip().lower()]
        except KeyError:
            raise ConfigException("parquet.codec", codec, "String must be one of: "
                                  + ", ".join(PARQUET_CODECS)) from None
        self.extension = (".parquet" if self.codec == "NONE"
                          else f".{self.codec.lower()}.parquet")
        self._schemas: dict[Schema, Any] = {}

    def row(self, topic: str, schema: Schema | None, value: Any) -> dict[str, Any]:
        if schema is None:
            raise DataException("ParquetFormat needs records with a value schema (a converter "
                                "with schemas, e.g. JsonConverter with schemas.enable=true, or "
                                "Avro)")
        converted = to_arrow_value(schema, value)
        if schema.type is Type.STRUCT and schema.name not in _LOGICAL:
            return dict(converted)
        return {VALUE_COLUMN: converted}

    def arrow_schema(self, schema: Schema) -> Any:
        cached = self._schemas.get(schema)
        if cached is None:
            import pyarrow as pa
            if schema.type is Type.STRUCT and schema.name not in _LOGICAL:
                fields = [pa.field(f.name, arrow_type(f.schema), nullable=f.schema.optional)
                          for f in schema.fields]
            else:
                fields = [pa.field(VALUE_COLUMN, arrow_type(schema), nullable=schema.optional)]
            metadata = {"connect.name": schema.name} if schema.name else None
            cached = self._schemas[schema] = pa.schema(fields, metadata=metadata)
        return cached

    def render(self, schema: Schema | None, rows: Sequence[Any]) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq
        assert schema is not None
        table = pa.Table.from_pylist(list(rows), schema=self.arrow_schema(schema))
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=self.codec)
        return bytes(sink.getvalue().to_pybytes())


def make_format(format_class: str, parquet_codec: str, compression: str) -> Format:
    simple = format_class.strip().rsplit(".", 1)[-1].lower()
    if simple in ("jsonformat", "json"):
        return JsonLinesFormat(compression)
    if simple in ("parquetformat", "parquet"):
        return ParquetFormat(parquet_codec)
    raise ConfigException("format.class", format_class,
                          f"Supported formats: {JSON_FORMAT}, {PARQUET_FORMAT}")


_LOGICAL = {Decimal.LOGICAL_NAME, Date.LOGICAL_NAME, Time.LOGICAL_NAME, Timestamp.LOGICAL_NAME}


def arrow_type(schema: Schema) -> Any:
    """The Arrow type of a Connect schema (logical types as Arrow's: decimal128, date32,
    time32[ms], timestamp[ms, UTC])."""
    import pyarrow as pa
    if schema.name == Decimal.LOGICAL_NAME:
        params = schema.parameters or {}
        scale = int(params.get("scale", 0))
        precision = int(params.get("connect.decimal.precision", 38))
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision,
                                                                                      scale)
    if schema.name == Date.LOGICAL_NAME:
        return pa.date32()
    if schema.name == Time.LOGICAL_NAME:
        return pa.time32("ms")
    if schema.name == Timestamp.LOGICAL_NAME:
        return pa.timestamp("ms", tz="UTC")
    simple = {Type.INT8: pa.int8(), Type.INT16: pa.int16(), Type.INT32: pa.int32(),
              Type.INT64: pa.int64(), Type.FLOAT32: pa.float32(), Type.FLOAT64: pa.float64(),
              Type.BOOLEAN: pa.bool_(), Type.STRING: pa.string(), Type.BYTES: pa.binary()}
    if schema.type in simple:
        return simple[schema.type]
    if schema.type is Type.ARRAY:
        assert schema.value_schema is not None
        return pa.list_(pa.field("element", arrow_type(schema.value_schema),
                                 nullable=schema.value_schema.optional))
    if schema.type is Type.MAP:
        assert schema.key_schema is not None and schema.value_schema is not None
        return pa.map_(arrow_type(schema.key_schema),
                       pa.field("value", arrow_type(schema.value_schema),
                                nullable=schema.value_schema.optional))
    return pa.struct([pa.field(f.name, arrow_type(f.schema), nullable=f.schema.optional)
                      for f in schema.fields])


def to_arrow_value(schema: Schema, value: Any, path: str = "value") -> Any:
    """A Connect value as the Python value pyarrow takes for `arrow_type(schema)`."""
    if value is None:
        if schema.default is not None:
            value = schema.default
        elif schema.optional:
            return None
        else:
            raise DataException(f"{path}: null for a required field without a default")
    if schema.name in _LOGICAL:
        return _logical_value(schema, value, path)
    if schema.type is Type.STRUCT:
        if not isinstance(value, Struct):
            raise DataException(f"{path}: expected a Struct, got {type(value).__name__}")
        return {f.name: to_arrow_value(f.schema, value.get(f), f"{path}.{f.name}")
                for f in schema.fields}
    if schema.type is Type.ARRAY:
        assert schema.value_schema is not None
        return [to_arrow_value(schema.value_schema, v, f"{path}[]") for v in value]
    if schema.type is Type.MAP:
        return _map_value(schema, value, path)
    if schema.type is Type.BYTES and isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value


def _logical_value(schema: Schema, value: Any, path: str) -> Any:
    if schema.name == Timestamp.LOGICAL_NAME and isinstance(value, _dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)
    if not isinstance(value, _dt.date | _dt.time | _decimal.Decimal):
        raise DataException(f"{path}: {type(value).__name__} for {schema.name}")
    return value


def _map_value(schema: Schema, value: Any, path: str) -> list[tuple[Any, Any]]:
    assert schema.key_schema is not None and schema.value_schema is not None
    if not isinstance(value, Mapping):
        raise DataException(f"{path}: expected a map, got {type(value).__name__}")
    return [(to_arrow_value(schema.key_schema, k, f"{path}.key"),
             to_arrow_value(schema.value_schema, v, f"{path}.value"))
            for k, v in value.items()]
