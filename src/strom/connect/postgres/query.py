"""Query-based PostgreSQL source, as Confluent's JDBC source connector: tables (or one query)
polled every `poll.interval.ms` in `bulk`, `incrementing`, `timestamp` or
`timestamp+incrementing` mode, with the JDBC connector's offsets (``{"incrementing": N}``,
``{"timestamp": ms, "timestamp_nanos": n}``, both for timestamp+incrementing).

Source partitions: ``{"protocol": "1", "table": "<db>.<schema>.<table>"}`` per table, ``{"query":
"query"}`` in query mode. Topics: `topic.prefix` + the table's name (the prefix alone for a
query). Values are structs named after the table, one optional field per column; no key.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from strom import __version__
from strom.connect.api import SourceConnector, SourceTask, Task
from strom.connect.config import ConfigDef, ConfigType, Importance, ValidString
from strom.connect.data import Schema, SchemaBuilder, Struct
from strom.connect.errors import ConnectException
from strom.connect.postgres import types
from strom.connect.postgres.common import (
    connect,
    jdbc_url_params,
    qualified,
    quote_ident,
    split_list,
)
from strom.connect.records import SourceRecord

log = logging.getLogger(__name__)

MODES: Final = ("bulk", "incrementing", "timestamp", "timestamp+incrementing")


def query_config_def() -> ConfigDef:
    d = ConfigDef()
    s, i = ConfigType.STRING, ConfigType.INT
    high, medium, low = Importance.HIGH, Importance.MEDIUM, Importance.LOW
    d.define("connection.url", s, None, high, "jdbc:postgresql://host:port/db")
    d.define("connection.user", s, None, high, "user")
    d.define("connection.password", ConfigType.PASSWORD, None, high, "password")
    d.define("mode", s, "bulk", high, " | ".join(MODES), validator=ValidString.in_(*MODES))
    d.define("incrementing.column.name", s, "", medium, "a strictly increasing column")
    d.define("timestamp.column.name", s, "", medium, "a timestamp column updated on change")
    d.define("table.whitelist", s, "", medium, "tables to copy (legacy name)")
    d.define("table.include.list", s, "", medium, "tables to copy ([schema.]table)")
    d.define("table.blacklist", s, "", medium, "tables not to copy (legacy name)")
    d.define("table.exclude.list", s, "", medium, "tables not to copy")
    d.define("schema.pattern", s, None, low, "the schema of the tables (default: any "
             "but the system ones)")
    d.define("query", s, "", medium, "a query instead of tables")
    d.define("topic.prefix", s, "", high, "topic prefix (the topic itself with a query)")
    d.define("poll.interval.ms", i, 5000, medium, "how often each table is queried")
    d.define("batch.max.rows", i, 100, low, "most rows per poll and table")
    d.define("timestamp.delay.interval.ms", i, 0, medium,
             "how long after a timestamp a row is read (for late committing transactions)")
    d.define("timestamp.initial", ConfigType.LONG, None, low,
             "ms since the epoch to start from when there is no offset (-1: now)")
    return d


class PostgresQuerySourceConnector(SourceConnector):
    """Query-based copying of PostgreSQL tables (Confluent's JdbcSourceConnector)."""

    def __init__(self) -> None:
        self._props: dict[str, str] = {}
        self._tables: list[str] = []

    def version(self) -> str:
        return __version__

    def config(self) -> ConfigDef:
        return query_config_def()

    def start(self, props: Mapping[str, str]) -> None:
        self._props = dict(props)
        query_config_def().parse(self._props)
        mode = self._props.get("mode", "bulk")
        if mode in ("incrementing", "timestamp+incrementing") and not self._props.get(
                "incrementing.column.name"):
            raise ConnectException(f"mode {mode} needs incrementing.column.name")
        if mode.startswith("timestamp") and not self._props.get("timestamp.column.name"):
            raise ConnectException(f"mode {mode} needs timestamp.column.name")
        if self._props.get("query"):
            self._tables = []
            return
        conn = connect(_connection_params(self._props))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT schemaname, tablename FROM pg_tables "
                            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
                            "ORDER BY 1, 2")
                found = [(str(a), str(b)) for a, b in cur.fetchall()]
        finally:
            conn.close()
        self._tables = select_tables(found, self._props)
        if not self._tables:
            raise ConnectException("no table to copy (table.include.list / table.whitelist)")

    def task_class(self) -> type[Task]:
        return PostgresQuerySourceTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        if not self._tables:
            return [dict(self._props)]
        count = max(1, min(max_tasks, len(self._tables)))
        return [{**self._props, "tables": ",".join(self._tables[n::count])}
                for n in range(count)]

    def stop(self) -> None:
        pass


def select_tables(found: list[tuple[str, str]], props: Mapping[str, str]) -> list[str]:
    """`schema.table` names of the tables to copy, as the JDBC connector's whitelist and
    blacklist: a name matches `table` or `schema.table`."""
    include = split_list(props.get("table.include.list") or props.get("table.whitelist"))
    exclude = split_list(props.get("table.exclude.list") or props.get("table.blacklist"))
    schema = props.get("schema.pattern")

    def matches(names: list[str], s: str, t: str) -> bool:
        return t in names or f"{s}.{t}" in names

    out = []
    for s, t in found:
        if schema and s != schema:
            continue
        if include and not matches(include, s, t):
            continue
        if exclude and matches(exclude, s, t):
            continue
        out.append(f"{s}.{t}")
    return out


def _connection_params(props: Mapping[str, str]) -> dict[str, Any]:
    url = props.get("connection.url")
    if not url:
        raise ConnectException("connection.url is required")
    params = jdbc_url_params(url)
    if props.get("connection.user"):
        params["user"] = props["connection.user"]
    if props.get("connection.password"):
        params["password"] = props["connection.password"]
    return params


@dataclass
class _Source:
    """One table (or the query) with its offset."""

    partition: dict[str, str]
    base: str  # SELECT ... of everything
    topic: str
    name: str
    columns: list[tuple[str, int, int]] = field(default_factory=list)
    schema: Schema | None = None
    incrementing: int | None = None
    timestamp: _dt.datetime | None = None
    next_poll: float = 0.0


class PostgresQuerySourceTask(SourceTask):
    def __init__(self) -> None:
        self.sources: list[_Source] = []
        self._conn: Any = None

    def version(self) -> str:
        return __version__

    def start(self, props: Mapping[str, str]) -> None:
        defaults = {k: v for k, v in query_config_def().default_values().items()
                    if v is not None}
        self.props = {**{k: str(v) for k, v in defaults.items()}, **props}
        self.mode = self.props["mode"]
        self.inc_column = self.props["incrementing.column.name"]
        self.ts_column = self.props["timestamp.column.name"]
        self.interval = int(self.props["poll.interval.ms"]) / 1000
        self.batch = int(self.props["batch.max.rows"])
        self.delay_ms = int(self.props["timestamp.delay.interval.ms"])
        self._conn = connect(_connection_params(self.props))
        self._conn.autocommit = True
        dbname = self._conn.get_dsn_parameters().get("dbname", "")
        prefix = self.props["topic.prefix"]
        if self.props.get("query"):
            self.sources = [_Source({"query": "query"}, self.props["query"], prefix,
                                    prefix or "query")]
        else:
            for name in split_list(self.props.get("tables")):
                schema, _, table = name.partition(".")
                self.sources.append(_Source(
                    {"protocol": "1", "table": f"{dbname}.{schema}.{table}"},
                    f"SELECT * FROM {qualified(schema, table)}", prefix + table, table))
        reader = self.context.offset_storage_reader() if self.context is not None else None
        initial = self.props.get("timestamp.initial")
        for source in self.sources:
            offset = reader.offset(source.partition) if reader is not None else None
            if offset is not None:
                if offset.get("incrementing") is not None:
                    source.incrementing = int(offset["incrementing"])
                if offset.get("timestamp") is not None:
                    source.timestamp = types.from_timestamp_parts(
                        int(offset["timestamp"]), offset.get("timestamp_nanos"))
            elif initial is not None and initial != "None":
                millis = int(initial)
                source.timestamp = (_dt.datetime.now(_dt.UTC) if millis == -1
                                    else types.from_timestamp_parts(millis, None))
            self._describe(source)

    def _describe(self, source: _Source) -> None:
        with self._conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({source.base}) AS strom_q LIMIT 0")
            columns = []
            for column in cur.description:
                typmod = -1
                # An unconstrained numeric reads as internal size -1 (precision 65535).
                if column.type_code == types.NUMERIC and column.scale is not None \
                        and column.precision is not None and (column.internal_size or 0) > 0:
                    typmod = ((column.precision << 16) | column.scale) + 4
                columns.append((column.name, int(column.type_code), typmod))
        builder = SchemaBuilder.struct().name(source.name)
        for name, oid, typmod in columns:
            builder.field(name, types.schema_for(oid, typmod, optional=True))
        source.columns, source.schema = columns, builder.build()

    def _statement(self, source: _Source) -> tuple[str, list[Any]]:
        sql = f"SELECT * FROM ({source.base}) AS strom_q"
        params: list[Any] = []
        inc = f"strom_q.{quote_ident(self.inc_column)}" if self.inc_column else ""
        ts = f"strom_q.{quote_ident(self.ts_column)}" if self.ts_column else ""
        upper = f"{ts} < now() - %s * interval '1 millisecond'"
        epoch = "1970-01-01 00:00:00+00"
        last_ts = source.timestamp.isoformat() if source.timestamp is not None else epoch
        if self.mode == "incrementing":
            sql += f" WHERE {inc} > %s ORDER BY {inc} ASC LIMIT {self.batch}"
            params = [source.incrementing if source.incrementing is not None else -(2**63)]
        elif self.mode == "timestamp":
            sql += f" WHERE {ts} > %s::timestamptz AND {upper} ORDER BY {ts} ASC"
            params = [last_ts, self.delay_ms]
        elif self.mode == "timestamp+incrementing":
            sql += (f" WHERE {upper} AND ({ts} > %s::timestamptz OR ({ts} = %s::timestamptz "
                    f"AND {inc} > %s)) ORDER BY {ts} ASC, {inc} ASC LIMIT {self.batch}")
            last_inc = source.incrementing if source.incrementing is not None else -(2**63)
            params = [self.delay_ms, last_ts, last_ts, last_inc]
        return sql, params

    def poll(self) -> list[SourceRecord] | None:
        now = time.monotonic()
        due = [s for s in self.sources if s.next_poll <= now]
        if not due:
            time.sleep(min(0.5, max(0.0, min(s.next_poll for s in self.sources) - now)))
            return None
        records: list[SourceRecord] = []
        for source in due:
            sql, params = self._statement(source)
            with self._conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall()
            for raw in rows:
                records.append(self._record(source, raw))
            full = self.mode in ("incrementing", "timestamp+incrementing") and \
                len(rows) >= self.batch
            source.next_poll = now if full else now + self.interval
        return records

    def _record(self, source: _Source, raw: tuple[Any, ...]) -> SourceRecord:
        assert source.schema is not None
        value = Struct(source.schema)
        texts: dict[str, Any] = {}
        for (name, oid, typmod), text in zip(source.columns, raw, strict=True):
            texts[name] = text
            try:
                value.put(name, types.parse_text(oid, typmod, text))
            except ValueError as error:
                log.warning("%s.%s: %s; sent as null", source.name, name, error)
        offset: dict[str, Any] = {}
        if self.mode in ("incrementing", "timestamp+incrementing"):
            source.incrementing = int(texts[self.inc_column])
            offset["incrementing"] = source.incrementing
        if self.mode.startswith("timestamp"):
            stamp = _dt.datetime.fromisoformat(texts[self.ts_column])
            stamp = stamp.replace(tzinfo=_dt.UTC) if stamp.tzinfo is None else stamp
            source.timestamp = stamp
            millis, nanos = types.to_timestamp_parts(stamp)
            offset["timestamp"], offset["timestamp_nanos"] = millis, nanos
        return SourceRecord(topic=source.topic, value_schema=source.schema, value=value,
                            source_partition=source.partition, source_offset=offset)

    def stop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
