"""The PostgreSQL sink connector, with the semantics and configs of Confluent's JDBC sink
(io.confluent.connect.jdbc.JdbcSinkConnector) for PostgreSQL, on asyncpg.

Each `put` batch is written in one transaction: records become rows of the table
`table.name.format` names (``${topic}``), by `insert.mode` (insert, upsert with
``INSERT ... ON CONFLICT (pk) DO UPDATE``, update) with the primary key of `pk.mode` (none,
kafka: topic/partition/offset, record_key, record_value); tombstones delete rows when
`delete.enabled`. Consecutive records for the same table, operation and columns go to the
server together (binary COPY for plain inserts, executemany otherwise, `batch.size` rows at a
time). Tables are created from the value schema (`auto.create`) and missing optional columns
added (`auto.evolve`).

Errors: a batch that fails on bad data (SQLSTATE classes 22 and 23, or a value that cannot
be converted) is rolled back and written again record by record, each in a savepoint, and the
failing records go to the errant record reporter (the dead letter queue) when
`errors.tolerance=all`, else the task fails. Connection losses and transient server errors
raise RetriableException (the batch is redelivered after `retry.backoff.ms`) up to
`max.retries` times in a row. Records are reported only once their batch committed, so a
batch redelivered after a transient failure reports its bad records once.

`insert.mode=insert` is a plain INSERT, as the JDBC sink's: a duplicate key (SQLSTATE 23505)
is bad data (the task fails, or the record goes to the dead letter queue). Only with
`pk.mode=kafka`, where a conflict can only be the same record delivered again, is it
`ON CONFLICT DO NOTHING`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import json
import logging
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from strom import __version__
from strom.connect.api import SinkConnector, SinkTask, Task, TopicPartition
from strom.connect.config import (
    NO_DEFAULT,
    CaseInsensitiveValidString,
    ConfigDef,
    ConfigType,
    Importance,
    Range,
)
from strom.connect.data import (
    INT32_SCHEMA,
    INT64_SCHEMA,
    STRING_SCHEMA,
    Date,
    Decimal,
    Schema,
    Struct,
    Time,
    Timestamp,
    Type,
    infer_schema,
)
from strom.connect.errors import (
    ConfigException,
    ConnectException,
    DataException,
    RetriableException,
)
from strom.connect.records import SinkRecord

log = logging.getLogger(__name__)

CONNECTION_URL = "connection.url"
CONNECTION_USER = "connection.user"
CONNECTION_PASSWORD = "connection.password"
INSERT_MODE = "insert.mode"
PK_MODE = "pk.mode"
PK_FIELDS = "pk.fields"
DELETE_ENABLED = "delete.enabled"
AUTO_CREATE = "auto.create"
AUTO_EVOLVE = "auto.evolve"
TABLE_NAME_FORMAT = "table.name.format"
BATCH_SIZE = "batch.size"
FIELDS_WHITELIST = "fields.whitelist"
FIELDS_INCLUDE_LIST = "fields.include.list"
DB_TIMEZONE = "db.timezone"
MAX_RETRIES = "max.retries"
RETRY_BACKOFF_MS = "retry.backoff.ms"

KAFKA_PK_FIELDS = ("__connect_topic", "__connect_partition", "__connect_offset")
KAFKA_PK_SCHEMAS = (STRING_SCHEMA, INT32_SCHEMA, INT64_SCHEMA)
DEFAULT_KEY_FIELD = "__connect_key"

# SQLSTATE classes: bad data (the record's fault) and transient conditions (retry).
DATA_ERROR_CLASSES = ("22", "23")
TRANSIENT_CLASSES = ("08", "40", "53", "57")


def config_def() -> ConfigDef:
    d = ConfigDef()
    d.define(CONNECTION_URL, ConfigType.STRING, NO_DEFAULT, Importance.HIGH,
             "JDBC connection URL (jdbc:postgresql://host:port/db) or a postgresql:// URL")
    d.define(CONNECTION_USER, ConfigType.STRING, None, Importance.HIGH, "JDBC connection user")
    d.define(CONNECTION_PASSWORD, ConfigType.PASSWORD, None, Importance.HIGH,
             "JDBC connection password")
    d.define(INSERT_MODE, ConfigType.STRING, "insert", Importance.HIGH,
             "The insertion mode: insert, upsert or update",
             validator=CaseInsensitiveValidString.in_("insert", "upsert", "update"))
    d.define(PK_MODE, ConfigType.STRING, "none", Importance.HIGH,
             "The primary key mode: none, kafka, record_key or record_value",
             validator=CaseInsensitiveValidString.in_("none", "kafka", "record_key",
                                                      "record_value"))
    d.define(PK_FIELDS, ConfigType.LIST, "", Importance.MEDIUM,
             "The primary key field names (their meaning depends on pk.mode)")
    d.define(DELETE_ENABLED, ConfigType.BOOLEAN, False, Importance.MEDIUM,
             "Whether to treat null record values as deletes (requires pk.mode=record_key)")
    d.define(AUTO_CREATE, ConfigType.BOOLEAN, False, Importance.MEDIUM,
             "Whether to create the destination table from the record schema")
    d.define(AUTO_EVOLVE, ConfigType.BOOLEAN, False, Importance.MEDIUM,
             "Whether to add columns for new optional fields of the record schema")
    d.define(TABLE_NAME_FORMAT, ConfigType.STRING, "${topic}", Importance.MEDIUM,
             "The destination table name; ${topic} is the record's topic")
    d.define(BATCH_SIZE, ConfigType.INT, 3000, Importance.MEDIUM,
             "Rows sent to the database together", validator=Range.at_least(1))
    d.define(FIELDS_WHITELIST, ConfigType.LIST, "", Importance.MEDIUM,
             "Record value fields to write (all when empty)")
    d.define(FIELDS_INCLUDE_LIST, ConfigType.LIST, "", Importance.MEDIUM,
             "Record value fields to write (all when empty); fields.whitelist's newer name")
    d.define(DB_TIMEZONE, ConfigType.STRING, "UTC", Importance.MEDIUM,
             "The time zone timestamps are written in to timestamp columns")
    d.define(MAX_RETRIES, ConfigType.INT, 10, Importance.MEDIUM,
             "Retries on connection or transient errors before the task fails",
             validator=Range.at_least(0))
    d.define(RETRY_BACKOFF_MS, ConfigType.INT, 3000, Importance.MEDIUM,
             "The wait before a retry, ms", validator=Range.at_least(0))
    return d


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    dsn: str
    user: str | None
    password: str | None
    server_settings: dict[str, str]
    insert_mode: str
    pk_mode: str
    pk_fields: tuple[str, ...]
    delete_enabled: bool
    auto_create: bool
    auto_evolve: bool
    table_format: str
    batch_size: int
    fields_include: frozenset[str]
    timezone: dt.tzinfo
    max_retries: int
    retry_backoff_ms: int
    tolerate: bool = False

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> Settings:
        values = config_def().parse(props)
        insert_mode = str(values[INSERT_MODE]).lower()
        pk_mode = str(values[PK_MODE]).lower()
        pk_fields = tuple(f.strip() for f in values[PK_FIELDS] or [] if f.strip())
        if values[DELETE_ENABLED] and pk_mode != "record_key":
            raise ConfigException("Primary key mode must be 'record_key' when delete support "
                                  "is enabled")
        if insert_mode in ("upsert", "update") and pk_mode == "none":
            raise ConfigException(f"Insert mode '{insert_mode}' requires a primary key: set "
                                  "pk.mode to kafka, record_key or record_value")
        if pk_mode == "kafka" and pk_fields and len(pk_fields) != 3:
            raise ConfigException(PK_FIELDS, ",".join(pk_fields),
                                  "pk.mode=kafka takes exactly 3 field names (topic, "
                                  "partition, offset) or none")
        try:
            timezone: dt.tzinfo = zoneinfo.ZoneInfo(str(values[DB_TIMEZONE]))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigException(DB_TIMEZONE, values[DB_TIMEZONE],
                                  "Invalid time zone identifier") from exc
        dsn, url_user, url_password, server_settings = parse_connection_url(
            str(values[CONNECTION_URL]))
        password = values[CONNECTION_PASSWORD]
        include = [f.strip() for f in (values[FIELDS_INCLUDE_LIST] or values[FIELDS_WHITELIST]
                                       or []) if f.strip()]
        return cls(
            dsn=dsn, user=values[CONNECTION_USER] or url_user,
            password=(password.value if password is not None else None) or url_password,
            server_settings=server_settings, insert_mode=insert_mode, pk_mode=pk_mode,
            pk_fields=pk_fields, delete_enabled=bool(values[DELETE_ENABLED]),
            auto_create=bool(values[AUTO_CREATE]), auto_evolve=bool(values[AUTO_EVOLVE]),
            table_format=str(values[TABLE_NAME_FORMAT]), batch_size=int(values[BATCH_SIZE]),
            fields_include=frozenset(include), timezone=timezone,
            max_retries=int(values[MAX_RETRIES]),
            retry_backoff_ms=int(values[RETRY_BACKOFF_MS]),
            tolerate=props.get("errors.tolerance", "none").strip().lower() == "all")


# JDBC URL parameters asyncpg understands under another name, or as a server setting.
_URL_PARAMS = {"sslmode": "sslmode", "connectTimeout": "connect_timeout"}


def parse_connection_url(url: str) -> tuple[str, str | None, str | None, dict[str, str]]:
    """A JDBC PostgreSQL URL (or a postgresql:// one) as (dsn for asyncpg, user, password,
    server settings). JDBC's `user`, `password`, `sslmode`, `currentSchema` (the search path)
    and `ApplicationName` are kept; other JDBC driver parameters are ignored."""
    text = url.strip()
    if text.startswith("jdbc:"):
        text = text[len("jdbc:"):]
    parts = urlsplit(text)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigException(CONNECTION_URL, url, "not a PostgreSQL URL (jdbc:postgresql://"
                              "host:port/database or postgresql://...)")
    user = password = None
    query: list[tuple[str, str]] = []
    server_settings: dict[str, str] = {}
    for key, value in parse_qsl(parts.query):
        if key == "user":
            user = value
        elif key == "password":
            password = value
        elif key == "currentSchema":
            server_settings["search_path"] = value
        elif key == "ApplicationName":
            server_settings["application_name"] = value
        elif key in _URL_PARAMS:
            query.append((_URL_PARAMS[key], value))
        else:
            log.info("ignoring the JDBC URL parameter %s", key)
    rebuilt = urlunsplit(("postgresql", parts.netloc, parts.path,
                          "&".join(f"{k}={v}" for k, v in query), ""))
    return rebuilt, user, password, server_settings


# ---------------------------------------------------------------------------------------------
# Tables, columns and type mapping


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class TableId:
    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> TableId:
        parts = text.split(".")
        if len(parts) == 1:
            return cls(None, parts[0])
        return cls(parts[-2], parts[-1])  # db.schema.table: the database is the connection's

    def __str__(self) -> str:
        return quote(self.name) if self.schema is None else \
            f"{quote(self.schema)}.{quote(self.name)}"


def sql_type(schema: Schema) -> str:
    """The PostgreSQL column type for a Connect schema (the JDBC sink's PostgreSqlDialect)."""
    if schema.name == Decimal.LOGICAL_NAME:
        return "NUMERIC"
    if schema.name == Date.LOGICAL_NAME:
        return "DATE"
    if schema.name == Time.LOGICAL_NAME:
        return "TIME"
    if schema.name == Timestamp.LOGICAL_NAME:
        return "TIMESTAMP"
    mapping = {Type.INT8: "SMALLINT", Type.INT16: "SMALLINT", Type.INT32: "INT",
               Type.INT64: "BIGINT", Type.FLOAT32: "REAL", Type.FLOAT64: "DOUBLE PRECISION",
               Type.BOOLEAN: "BOOLEAN", Type.STRING: "TEXT", Type.BYTES: "BYTEA"}
    if schema.type in mapping:
        return mapping[schema.type]
    if schema.type is Type.ARRAY and schema.value_schema is not None \
            and schema.value_schema.type.is_primitive:
        return sql_type(schema.value_schema) + "[]"
    raise ConnectException(f"Unsupported type for column value: {schema.type}"
                           + (f" ({schema.name})" if schema.name else ""))


def sql_literal(value: Any) -> str:
    """A default value as a SQL literal."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return "'\\x" + bytes(value).hex() + "'::bytea"
    if isinstance(value, dt.datetime):
        moment: dt.datetime = value
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        return "'" + moment.isoformat() + "'"
    if isinstance(value, dt.date | dt.time):
        return "'" + str(value.isoformat()) + "'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise ConnectException(f"Unsupported default value {value!r}")


@dataclass
class TableInfo:
    columns: dict[str, str]  # name -> data type as information_schema names it


@dataclass
class Row:
    """One record as a statement's parameters: its table, operation and columns."""

    record: SinkRecord
    table: TableId
    op: str  # insert, upsert, update, delete
    key_columns: tuple[str, ...]
    columns: tuple[str, ...]  # key columns first, then the value's
    values: tuple[Any, ...]
    schemas: tuple[Schema | None, ...]  # None: schemaless
    # insert with pk.mode=kafka: a conflict is the same record again, skipped
    redelivery_safe: bool = False

    @property
    def group(self) -> tuple[TableId, str, tuple[str, ...], tuple[str, ...], bool]:
        return (self.table, self.op, self.key_columns, self.columns, self.redelivery_safe)


@dataclass
class Run:
    """Consecutive rows with the same table, operation and columns: one statement."""

    table: TableId
    op: str
    key_columns: tuple[str, ...]
    columns: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)
    redelivery_safe: bool = False


def _fields_of(value: Any, schema: Schema | None) -> list[tuple[str, Schema | None, Any]]:
    if isinstance(value, Struct):  # get(Field): no search of the fields by name
        return [(f.name, f.schema, value.get(f)) for f in value.schema.fields]
    if isinstance(value, Mapping):
        field_schemas = {f.name: f.schema for f in schema.fields} \
            if schema is not None and schema.type is Type.STRUCT else {}
        return [(str(k), field_schemas.get(str(k)), v) for k, v in value.items()]
    raise DataException(f"Value must be a Struct or a map, found {type(value).__name__}")


Column = tuple[str, Schema | None, Any]  # name, schema (None: schemaless), value


def _pick(available: list[Column], wanted: Sequence[str], where: str) -> list[Column]:
    by_name = {c[0]: c for c in available}
    for name in wanted:
        if name not in by_name:
            raise DataException(f"PK field '{name}' is not in the record {where}")
    return [by_name[name] for name in wanted or tuple(by_name)]


def _record_key_columns(settings: Settings, record: SinkRecord) -> list[Column]:
    if record.key is None:
        raise DataException("pk.mode=record_key needs a record key, found null")
    if isinstance(record.key, Struct | Mapping):
        return _pick(_fields_of(record.key, record.key_schema), settings.pk_fields, "key")
    if len(settings.pk_fields) > 1:
        raise DataException("pk.mode=record_key with a primitive key takes one pk.fields name")
    name = settings.pk_fields[0] if settings.pk_fields else DEFAULT_KEY_FIELD
    return [(name, record.key_schema or infer_schema(record.key), record.key)]


def _key_columns(settings: Settings, record: SinkRecord, value_fields: list[Column]
                 ) -> list[Column]:
    if settings.pk_mode == "kafka":
        names = settings.pk_fields or KAFKA_PK_FIELDS
        values = (record.topic, record.kafka_partition, record.kafka_offset)
        return [(n, s, v) for n, s, v in zip(names, KAFKA_PK_SCHEMAS, values, strict=True)]
    if settings.pk_mode == "record_key":
        return _record_key_columns(settings, record)
    if settings.pk_mode == "record_value":
        return _pick(value_fields, settings.pk_fields, "value")
    return []


def make_row(settings: Settings, record: SinkRecord) -> Row | None:
    """The row a record writes (None: skipped, a tombstone with deletes disabled or with
    pk.mode=record_value)."""
    if record.value is None and (not settings.delete_enabled
                                 or settings.pk_mode == "record_value"):
        return None
    op = "delete" if record.value is None else settings.insert_mode
    value_fields = [] if record.value is None else _fields_of(record.value, record.value_schema)
    keys = _key_columns(settings, record, value_fields)
    key_names = {n for n, _, _ in keys}
    include = settings.fields_include
    columns = keys + [c for c in value_fields if c[0] not in key_names
                      and (not include or c[0] in include)]
    return Row(record, TableId.parse(settings.table_format.replace("${topic}", record.topic)),
               op, tuple(n for n, _, _ in keys), tuple(n for n, _, _ in columns),
               tuple(_to_param(v) for _, _, v in columns), tuple(s for _, s, _ in columns),
               redelivery_safe=op == "insert" and settings.pk_mode == "kafka")


def _to_param(value: Any) -> Any:
    """A Connect value as an asyncpg parameter (before the column's own coercion)."""
    if value is None:
        return None
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, Struct):
        raise DataException("nested Struct values cannot be written to a column")
    return value


def _parse_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=value)
    if isinstance(value, str):
        parsed = dt.datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
    raise DataException(f"cannot write {value!r} to a timestamp column")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _to_date(value: Any, timezone: dt.tzinfo) -> Any:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    if _is_int(value):
        return dt.date(1970, 1, 1) + dt.timedelta(days=value)
    return value


def _to_time(value: Any, timezone: dt.tzinfo) -> Any:
    if isinstance(value, str):
        return dt.time.fromisoformat(value)
    if _is_int(value):
        return (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=value)).time()
    return value


def _to_numeric(value: Any, timezone: dt.tzinfo) -> Any:
    if isinstance(value, float | str) or _is_int(value):
        return decimal.Decimal(str(value))
    return value


def _to_float(value: Any, timezone: dt.tzinfo) -> Any:
    if isinstance(value, decimal.Decimal | str) or _is_int(value):
        return float(value)
    return value


def _to_int(value: Any, timezone: dt.tzinfo) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str | decimal.Decimal):
        return int(value)
    return value


def _to_text(value: Any, timezone: dt.tzinfo) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        return json.dumps(_jsonable(value))
    return str(value)


def _when_str(convert: Callable[[str], Any]) -> Callable[[Any, dt.tzinfo], Any]:
    return lambda value, _tz: convert(value) if isinstance(value, str) else value


# information_schema's data_type -> the conversion of a value for such a column
_COERCIONS: dict[str, Callable[[Any, dt.tzinfo], Any]] = {
    "timestamp without time zone":
        lambda v, tz: _parse_datetime(v).astimezone(tz).replace(tzinfo=None),
    "timestamp with time zone": lambda v, _tz: _parse_datetime(v),
    "date": _to_date,
    "time without time zone": _to_time,
    "time with time zone": _to_time,
    "json": lambda v, _tz: json.dumps(_jsonable(v)),
    "jsonb": lambda v, _tz: json.dumps(_jsonable(v)),
    "numeric": _to_numeric,
    "real": _to_float,
    "double precision": _to_float,
    "smallint": _to_int,
    "integer": _to_int,
    "bigint": _to_int,
    "text": _to_text,
    "character varying": _to_text,
    "character": _to_text,
    "boolean": _when_str(lambda v: {"true": True, "false": False}[v.strip().lower()]),
    "bytea": _when_str(lambda v: base64.b64decode(v, validate=True)),
    "uuid": _when_str(uuid.UUID),
}


def coerce(value: Any, column_type: str, timezone: dt.tzinfo) -> Any:
    """The value as the column's type wants it (asyncpg encodes by the column's type)."""
    convert = _COERCIONS.get(column_type)
    if value is None or convert is None:
        return value
    try:
        return convert(value, timezone)
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        raise DataException(f"cannot write {value!r} to a {column_type} column: {exc}") from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, Struct):
        return {f.name: _jsonable(value.get(f)) for f in value.schema.fields}
    return value


def statement(run: Run) -> str:
    table = str(run.table)
    cols = run.columns
    keys = run.key_columns
    if run.op == "delete":
        where = " AND ".join(f"{quote(c)} = ${i + 1}" for i, c in enumerate(cols))
        return f"DELETE FROM {table} WHERE {where}"
    if run.op == "update":
        non_keys = [c for c in cols if c not in keys]
        positions = {c: i + 1 for i, c in enumerate(cols)}
        sets = ", ".join(f"{quote(c)} = ${positions[c]}" for c in non_keys) or \
            f"{quote(keys[0])} = {quote(keys[0])}"
        where = " AND ".join(f"{quote(c)} = ${positions[c]}" for c in keys)
        return f"UPDATE {table} SET {sets} WHERE {where}"
    names = ", ".join(quote(c) for c in cols)
    params = ", ".join(f"${i + 1}" for i in range(len(cols)))
    sql = f"INSERT INTO {table} ({names}) VALUES ({params})"
    if run.op == "upsert":
        non_keys = [c for c in cols if c not in keys]
        conflict = ", ".join(quote(c) for c in keys)
        if non_keys:
            sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in non_keys)
            sql += f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}"
        else:
            sql += f" ON CONFLICT ({conflict}) DO NOTHING"
    elif keys and run.redelivery_safe:
        # insert with pk.mode=kafka: the key is the record's own position, so a conflict is
        # the same record delivered again (the JDBC sink would fail on it). Other keys: a
        # plain INSERT, a duplicate key is bad data (SQLSTATE 23505), as the JDBC sink's.
        sql += f" ON CONFLICT ({', '.join(quote(c) for c in keys)}) DO NOTHING"
    return sql


def runs_of(rows: Iterable[Row]) -> list[Run]:
    """Consecutive rows grouped by table, operation and columns (the order is kept)."""
    out: list[Run] = []
    for row in rows:
        if out and (out[-1].table, out[-1].op, out[-1].key_columns, out[-1].columns,
                    out[-1].redelivery_safe) == row.group:
            out[-1].rows.append(row)
        else:
            out.append(Run(row.table, row.op, row.key_columns, row.columns, [row],
                           row.redelivery_safe))
    return out


def sqlstate(error: BaseException) -> str:
    return str(getattr(error, "sqlstate", "") or "")


def is_data_error(error: BaseException) -> bool:
    return isinstance(error, DataException) or sqlstate(error)[:2] in DATA_ERROR_CLASSES


def is_transient(error: BaseException) -> bool:
    import asyncpg
    if sqlstate(error)[:2] in TRANSIENT_CLASSES:
        return True
    # InternalClientError: asyncpg's protocol state after the server ended the connection in
    # the middle of an operation ("cannot switch to state ...; another operation is in
    # progress"); the connection is dropped and the batch redelivered like any lost link.
    return isinstance(error, OSError | TimeoutError | asyncpg.InterfaceError
                      | asyncpg.PostgresConnectionError | asyncpg.InternalClientError)


# ---------------------------------------------------------------------------------------------
# The connector and its task


class PostgresSinkConnector(SinkConnector):
    """Writes topics to PostgreSQL tables (insert, upsert, update, delete on tombstones)."""

    def __init__(self) -> None:
        self._props: dict[str, str] = {}

    def version(self) -> str:
        return __version__

    def config(self) -> ConfigDef:
        return config_def()

    def start(self, props: Mapping[str, str]) -> None:
        Settings.from_props(props)  # a bad config fails the connector, not only its tasks
        self._props = dict(props)

    def task_class(self) -> type[Task]:
        return PostgresSinkTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [dict(self._props) for _ in range(max_tasks)]

    def stop(self) -> None:
        pass


class PostgresSinkTask(SinkTask):
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.connection: Any = None
        self.tables: dict[TableId, TableInfo] = {}
        self.remaining_retries = 0

    def version(self) -> str:
        return __version__

    def start(self, props: Mapping[str, str]) -> None:
        self.settings = Settings.from_props(props)
        self.remaining_retries = self.settings.max_retries

    async def stop(self) -> None:
        await self._disconnect()

    async def _connect(self) -> Any:
        import asyncpg
        assert self.settings is not None
        if self.connection is None or self.connection.is_closed():
            s = self.settings
            self.connection = await asyncpg.connect(
                s.dsn, user=s.user, password=s.password, timeout=30,
                server_settings=s.server_settings or None)
            self.tables.clear()
        return self.connection

    async def _disconnect(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), 5)
            except Exception:
                connection.terminate()

    async def put(self, records: Sequence[SinkRecord]) -> None:
        if not records:
            return
        settings = self.settings
        assert settings is not None
        try:
            await self._write(records)
        except Exception as error:
            if not is_transient(error):
                raise
            await self._disconnect()
            if self.remaining_retries <= 0:
                raise ConnectException(f"writing to PostgreSQL failed after "
                                       f"{settings.max_retries} retries: {error}") from error
            self.remaining_retries -= 1
            log.warning("writing %d records to PostgreSQL failed (%s): %d retries left",
                        len(records), error, self.remaining_retries)
            if self.context is not None:
                self.context.timeout(settings.retry_backoff_ms)
            raise RetriableException(str(error)) from error
        self.remaining_retries = settings.max_retries

    async def _write(self, records: Sequence[SinkRecord]) -> None:
        settings = self.settings
        assert settings is not None
        connection = await self._connect()
        rows: list[Row] = []
        # Bad records are reported once the batch committed: a batch that fails transiently
        # is redelivered whole, and would report them again. Without tolerance the first one
        # fails the task at once (nothing written).
        failed: list[tuple[SinkRecord, BaseException]] = []
        tolerated = self._reporter() is not None
        for record in records:
            try:
                row = make_row(settings, record)
            except DataException as error:
                if not tolerated:
                    await self._report(record, error)
                failed.append((record, error))
                continue
            if row is not None:
                rows.append(row)
        runs = [run for run in runs_of(rows) if await self._ensure_table(connection, run)]
        try:
            async with connection.transaction():
                for run in runs:
                    await self._execute(connection, run)
        except Exception as error:
            if not is_data_error(error):
                raise
            log.info("a batch of %d records failed on bad data (%s): writing them one by one",
                     len(rows), error)
            failed.extend(await self._write_one_by_one(connection, runs))
        position = {id(record): n for n, record in enumerate(records)}
        failed.sort(key=lambda bad: position.get(id(bad[0]), 0))  # in the batch's order
        for bad_record, bad_error in failed:
            await self._report(bad_record, bad_error)

    async def _write_one_by_one(self, connection: Any, runs: list[Run]
                                ) -> list[tuple[SinkRecord, BaseException]]:
        """Each row in a savepoint; the rows that failed on bad data (to report once the
        transaction committed)."""
        failed: list[tuple[SinkRecord, BaseException]] = []
        tolerated = self._reporter() is not None
        async with connection.transaction():
            for run in runs:
                sql = statement(run)
                info = self.tables[run.table]
                for row in run.rows:
                    try:
                        async with connection.transaction():  # a savepoint
                            await connection.execute(sql, *self._params(row, info))
                    except Exception as error:
                        if not is_data_error(error):
                            raise
                        if not tolerated:  # the whole batch is rolled back
                            await self._report(row.record, error)
                        failed.append((row.record, error))
        return failed

    def _reporter(self) -> Any:
        """The errant record reporter, when bad records are tolerated (errors.tolerance=all);
        otherwise a bad record fails the task."""
        assert self.settings is not None
        if self.context is None or not self.settings.tolerate:
            return None
        return self.context.errant_record_reporter()

    async def _report(self, record: SinkRecord, error: BaseException) -> None:
        reporter = self._reporter()
        if reporter is None:
            raise ConnectException(
                f"record {record.topic}-{record.kafka_partition}@{record.kafka_offset} could "
                f"not be written: {error}") from error
        log.warning("record %s-%s@%s could not be written, reported: %s", record.topic,
                    record.kafka_partition, record.kafka_offset, error)
        done = reporter.report(record, error)
        if done is not None and hasattr(done, "result"):
            await asyncio.wrap_future(done)

    def _params(self, row: Row, info: TableInfo) -> tuple[Any, ...]:
        assert self.settings is not None
        timezone = self.settings.timezone
        return tuple(coerce(v, info.columns.get(c, ""), timezone)
                     for c, v in zip(row.columns, row.values, strict=True))

    async def _execute(self, connection: Any, run: Run) -> None:
        assert self.settings is not None
        info = self.tables[run.table]
        params = [self._params(row, info) for row in run.rows]
        size = self.settings.batch_size
        if run.op == "insert" and not run.key_columns:
            for start in range(0, len(params), size):
                await connection.copy_records_to_table(
                    run.table.name, schema_name=run.table.schema, columns=list(run.columns),
                    records=params[start:start + size])
            return
        sql = statement(run)
        for start in range(0, len(params), size):
            await connection.executemany(sql, params[start:start + size])

    # -- tables -------------------------------------------------------------------------------

    async def _table_info(self, connection: Any, table: TableId) -> TableInfo | None:
        rows = await connection.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2",
            table.schema, table.name)
        if not rows:
            return None
        return TableInfo({r["column_name"]: r["data_type"] for r in rows})

    async def _ensure_table(self, connection: Any, run: Run) -> bool:
        """Create or evolve the run's table as needed; False when the run is to be skipped
        (deletes from a table that does not exist)."""
        settings = self.settings
        assert settings is not None
        info = self.tables.get(run.table)
        if info is not None and all(c in info.columns for c in run.columns):
            return True
        info = await self._table_info(connection, run.table)
        row = run.rows[0]
        schemas = dict(zip(row.columns, row.schemas, strict=True))
        if info is None and run.op == "delete":
            log.info("ignoring %d deletes from %s: no such table", len(run.rows), run.table)
            return False
        if info is None:
            if not settings.auto_create:
                raise ConnectException(f"Table {run.table} is missing and auto-creation is "
                                       "disabled")
            await connection.execute(self._create_sql(run.table, run, schemas))
            info = await self._table_info(connection, run.table)
            assert info is not None
        missing = [c for c in run.columns if c not in info.columns]
        if missing:
            unknown = [c for c in missing if schemas[c] is None]
            if unknown:
                raise ConnectException(
                    f"Table {run.table} has no column {', '.join(unknown)} and the record is "
                    "schemaless: the column cannot be added (auto.evolve needs schemas)")
            if not settings.auto_evolve:
                raise ConnectException(f"Table {run.table} is missing fields "
                                       f"({', '.join(missing)}) and auto-evolution is disabled")
            for name in missing:
                schema = schemas[name]
                assert schema is not None
                if not schema.optional and schema.default is None:
                    raise ConnectException(
                        f"Cannot ALTER TABLE {run.table} to add missing field {name}, as the "
                        "field is not optional and does not have a default value")
                await connection.execute(f"ALTER TABLE {run.table} ADD COLUMN IF NOT EXISTS "
                                         + self._column_sql(name, schema, False))
                log.info("added column %s to table %s", name, run.table)
            info = await self._table_info(connection, run.table)
            assert info is not None
        self.tables[run.table] = info
        return True

    def _column_sql(self, name: str, schema: Schema, key: bool) -> str:
        sql = f"{quote(name)} {sql_type(schema)}"
        if schema.default is not None:
            default = schema.default
            if schema.name == Timestamp.LOGICAL_NAME and isinstance(default, dt.datetime):
                assert self.settings is not None
                default = coerce(default, "timestamp without time zone",
                                 self.settings.timezone)
            sql += f" DEFAULT {sql_literal(default)}"
        if key or not schema.optional:
            sql += " NOT NULL"
        return sql

    def _create_sql(self, table: TableId, run: Run, schemas: Mapping[str, Schema | None]
                    ) -> str:
        schemaless = [c for c in run.columns if schemas[c] is None]
        if schemaless:
            raise ConnectException(
                f"Table {table} is missing and cannot be created from a schemaless record "
                f"(no schema for {', '.join(schemaless)}): auto.create needs schemas, as the "
                "JDBC sink (use a converter with schemas, e.g. JsonConverter with "
                "schemas.enable=true, or create the table first)")
        columns = []
        for name in run.columns:
            schema = schemas[name]
            assert schema is not None
            columns.append(self._column_sql(name, schema, name in run.key_columns))
        if run.key_columns:
            columns.append("PRIMARY KEY (" + ", ".join(quote(c) for c in run.key_columns)
                           + ")")
        log.info("creating table %s", table)
        return f"CREATE TABLE IF NOT EXISTS {table} (\n  " + ",\n  ".join(columns) + "\n)"

    def flush(self, current_offsets: Mapping[TopicPartition, int]) -> None:
        # Every put commits its own transaction: nothing is pending.
        return None
