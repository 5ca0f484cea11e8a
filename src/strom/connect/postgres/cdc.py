"""PostgreSQL change data capture through logical replication (pgoutput), Debezium-style.

The task creates the publication and the replication slot when missing, snapshots the included
tables in a REPEATABLE READ transaction using the snapshot the slot exported at its creation
(so the snapshot and the stream meet exactly at the slot's consistent point), then streams the
slot, in commit order. A poll returns at most `max.batch.size` records: a transaction's changes
are held until its Commit while they fit in one batch; a larger transaction is sent in batches
before its Commit arrives (at most a batch of its changes is held in memory).

Offsets (source partition ``{"server": topic.prefix}``): during the snapshot
``{"lsn": consistent point, "snapshot": true[, "last_snapshot_record": true]}``; then
``{"lsn": end LSN of the transaction, "commit_lsn": its commit LSN, "txId": xid,
"ts_usec": commit time, "event": i, "events": n}`` (the i-th of the transaction's n change
events), or, for the events of a large transaction sent before its Commit (n not known yet),
``{"lsn": commit LSN, "commit_lsn": commit LSN, "txId", "ts_usec", "event": i}``. The commit
LSN (the Begin message's final LSN) identifies the transaction as soon as it begins. The slot's
confirmed_flush_lsn moves (Standby Status Update) only in `commit()`, to the end LSN of the
last transaction whose events Connect committed entirely, so a restart resumes from the stored
offset with nothing lost; a transaction cut in the middle is received again and its first
`event` events are skipped. When idle with everything polled confirmed, the slot follows the
server's sent position (WAL of uncaptured tables is not held). A broken stream is reopened from
the slot, skipping what was already polled.

An UPDATE that changes the key (pgoutput sends the old key, or the old row under REPLICA
IDENTITY FULL, and it differs from the new one) is sent as Debezium does: a delete of the old
key (header ``__debezium.newkey``), its tombstone, then a create of the new key (header
``__debezium.oldkey``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import select
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import psycopg2
import psycopg2.extras

from strom import __version__
from strom.connect.api import SourceConnector, SourceTask, Task
from strom.connect.config import ConfigDef, ConfigType, Importance, ValidString
from strom.connect.data import (
    OPTIONAL_INT64_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Headers,
    Schema,
    SchemaBuilder,
    Struct,
    Type,
)
from strom.connect.errors import ConnectException
from strom.connect.postgres import pgoutput, types
from strom.connect.postgres.common import (
    TableFilter,
    connect,
    qualified,
    quote_ident,
    split_list,
)
from strom.connect.records import SourceRecord

log = logging.getLogger(__name__)

SNAPSHOT_MODES: Final = ("initial", "always", "never", "no_data", "initial_only",
                          "when_needed", "exported")
# Debezium's other names for `initial` (older releases, or "snapshot when offsets are missing").
INITIAL_ALIASES: Final = ("when_needed", "exported")
AUTOCREATE_MODES: Final = ("all_tables", "filtered", "disabled")
POLL_WAIT_S: Final = 0.5
RECONNECT_WAIT_S: Final = 1.0
# Debezium's headers of the two events of a primary key change.
PK_UPDATE_NEWKEY: Final = "__debezium.newkey"
PK_UPDATE_OLDKEY: Final = "__debezium.oldkey"
_ALL: Final = sys.maxsize  # every change event of a transaction (already delivered)


def cdc_config_def() -> ConfigDef:
    d = ConfigDef()
    s, i, b = ConfigType.STRING, ConfigType.INT, ConfigType.BOOLEAN
    high, medium, low = Importance.HIGH, Importance.MEDIUM, Importance.LOW
    d.define("database.hostname", s, "localhost", high, "PostgreSQL host")
    d.define("database.port", i, 5432, high, "PostgreSQL port")
    d.define("database.user", s, "postgres", high, "user (needs REPLICATION and SELECT)")
    d.define("database.password", ConfigType.PASSWORD, None, high, "password")
    d.define("database.dbname", s, "postgres", high, "database")
    d.define("database.sslmode", s, None, low, "libpq sslmode")
    d.define("topic.prefix", s, None, high, "topic prefix and logical server name "
             "(topics <prefix>.<schema>.<table>; the source partition {\"server\": prefix})")
    d.define("table.include.list", s, "", medium, "regexes of schema.table to capture")
    d.define("table.exclude.list", s, "", medium, "regexes of schema.table not to capture")
    d.define("slot.name", s, "debezium", medium, "the logical replication slot")
    d.define("publication.name", s, "dbz_publication", medium, "the publication")
    d.define("publication.autocreate.mode", s, "all_tables", medium,
             "all_tables | filtered | disabled", validator=ValidString.in_(*AUTOCREATE_MODES))
    d.define("plugin.name", s, "pgoutput", low, "only pgoutput",
             validator=ValidString.in_("pgoutput"))
    d.define("snapshot.mode", s, "initial", medium, " | ".join(SNAPSHOT_MODES),
             validator=ValidString.in_(*SNAPSHOT_MODES))
    d.define("tombstones.on.delete", b, True, medium, "a tombstone after each delete")
    d.define("max.batch.size", i, 2048, low, "most records per poll (a larger transaction "
             "is sent in several polls)")
    d.define("snapshot.fetch.size", i, 10240, low, "rows fetched at a time in the snapshot")
    d.define("status.update.interval.ms", i, 10000, low, "standby status updates interval")
    d.define("slot.drop.on.stop", b, False, low, "drop the slot when the task stops "
             "(tests and demos: changes made while stopped are then lost)")
    d.define("database.server.name", s, None, low, "older name of topic.prefix")
    return d


class PostgresCdcSourceConnector(SourceConnector):
    """Change data capture of PostgreSQL tables (Debezium's PostgresConnector)."""

    def __init__(self) -> None:
        self._props: dict[str, str] = {}

    def version(self) -> str:
        return __version__

    def config(self) -> ConfigDef:
        return cdc_config_def()

    def start(self, props: Mapping[str, str]) -> None:
        self._props = dict(props)
        if not props.get("topic.prefix"):
            if not props.get("database.server.name"):
                raise ConnectException("topic.prefix is required")
            self._props["topic.prefix"] = props["database.server.name"]

    def task_class(self) -> type[Task]:
        return PostgresCdcSourceTask

    def task_configs(self, max_tasks: int) -> list[dict[str, str]]:
        return [dict(self._props)]  # one slot: one task

    def stop(self) -> None:
        pass


@dataclass
class _Table:
    """Schemas and converters of one captured relation."""

    schema: str
    name: str
    columns: list[tuple[str, int, int]]  # name, type oid, typmod
    key_columns: list[str]
    topic: str
    key_schema: Schema | None
    value_schema: Schema
    envelope_schema: Schema

    def row(self, texts: Mapping[str, Any]) -> Struct:
        value = Struct(self.value_schema)
        for name, oid, typmod in self.columns:
            if name not in texts:
                continue
            raw = texts[name]
            if raw is _UNCHANGED:
                field = self.value_schema.field(name)
                is_string = field is not None and field.schema.type is Type.STRING
                value.put(name, types.UNAVAILABLE_VALUE if is_string else None)
                continue
            try:
                value.put(name, types.parse_text(oid, typmod, raw))
            except ValueError as error:
                log.warning("%s.%s.%s: %s; sent as null", self.schema, self.name, name, error)
        return value

    def has_key_values(self, row: Struct | None) -> bool:
        """Whether the row holds every key column (an old tuple of a replica identity index
        other than the primary key may not)."""
        return row is not None and all(row.get(name) is not None for name in self.key_columns)

    def key(self, row: Struct | None) -> Struct | None:
        if self.key_schema is None or row is None:
            return None
        key = Struct(self.key_schema)
        for name in self.key_columns:
            key.put(name, row.get(name))
        return key


_UNCHANGED = object()


@dataclass
class _Change:
    """A captured change event of the transaction being read, not yet a record."""

    op: str
    table: _Table
    before: Struct | None
    after: Struct | None
    lsn: int  # the change's own LSN
    number: int  # its place among the transaction's change events, from 1
    headers: Headers | None = None


@dataclass
class _Txn:
    """The transaction being read: its Begin, how many of its change events were already
    delivered (None: not known before its Commit, an offset stored by an older version), its
    change events so far and those not yet sent."""

    begin: pgoutput.Begin
    skip: int | None
    count: int = 0
    pending: list[_Change] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class _Position:
    """How far the records (polled, or whose offsets are stored) go: `done` change events of a
    transaction, all of them when `complete`. `lsn` is the transaction's end LSN when its
    events count is known, else its commit LSN; `commit_lsn` is None in offsets stored by
    versions that did not record it."""

    lsn: int
    commit_lsn: int | None
    done: int
    complete: bool

    @classmethod
    def of(cls, offset: Mapping[str, Any]) -> _Position:
        done = int(offset.get("event", 0))
        events = offset.get("events")
        commit = offset.get("commit_lsn")
        return cls(int(offset["lsn"]), None if commit is None else int(commit), done,
                   events is not None and done >= int(events))

SOURCE_SCHEMA: Final = (
    SchemaBuilder.struct().name("io.debezium.connector.postgresql.Source")
    .field("version", STRING_SCHEMA).field("connector", STRING_SCHEMA)
    .field("name", STRING_SCHEMA).field("ts_ms", SchemaBuilder.int64().build())
    .field("snapshot", OPTIONAL_STRING_SCHEMA).field("db", STRING_SCHEMA)
    .field("schema", STRING_SCHEMA).field("table", STRING_SCHEMA)
    .field("txId", OPTIONAL_INT64_SCHEMA).field("lsn", OPTIONAL_INT64_SCHEMA).build())


def build_table(prefix: str, schema: str, name: str, columns: list[tuple[str, int, int]],
                key_columns: list[str]) -> _Table:
    base = f"{prefix}.{schema}.{name}"
    value = SchemaBuilder.struct().name(f"{base}.Value").optional()
    for col, oid, typmod in columns:
        value.field(col, types.schema_for(oid, typmod, optional=True))
    value_schema = value.build()
    key_schema = None
    if key_columns:
        key = SchemaBuilder.struct().name(f"{base}.Key")
        by_name = {c[0]: c for c in columns}
        for col in key_columns:
            _, oid, typmod = by_name[col]
            key.field(col, types.schema_for(oid, typmod, optional=False))
        key_schema = key.build()
    envelope = (SchemaBuilder.struct().name(f"{base}.Envelope")
                .field("before", value_schema).field("after", value_schema)
                .field("source", SOURCE_SCHEMA).field("op", STRING_SCHEMA)
                .field("ts_ms", OPTIONAL_INT64_SCHEMA).build())
    return _Table(schema, name, columns, key_columns, base, key_schema, value_schema, envelope)


class PostgresCdcSourceTask(SourceTask):
    def __init__(self) -> None:
        self.props: dict[str, str] = {}
        self.prefix = ""
        self._meta: Any = None  # autocommit connection for catalog queries
        self._repl: Any = None  # the replication connection
        self._cursor: Any = None
        self._streaming = False
        self._snapshot: Iterator[SourceRecord] | None = None
        self._snapshot_conn: Any = None
        self._start_lsn = 0
        self._resume: _Position | None = None  # what to skip of the stream
        self._relations: dict[int, pgoutput.Relation] = {}
        self._tables: dict[tuple[Any, ...], _Table] = {}
        self._txn: _Txn | None = None
        self._ready: list[SourceRecord] = []  # made, not yet returned by poll
        self.batch = 2048
        self._flushed = 0
        self._returned: _Position | None = None  # where the records polled end
        self._stopping = False

    def version(self) -> str:
        return __version__

    @property
    def partition(self) -> dict[str, str]:
        return {"server": self.prefix}

    # -- start --------------------------------------------------------------------------

    def start(self, props: Mapping[str, str]) -> None:
        self.props = {**{k: str(v) for k, v in _defaults().items()}, **props}
        self.prefix = self.props["topic.prefix"]
        self.filter = TableFilter(split_list(self.props["table.include.list"]),
                                  split_list(self.props["table.exclude.list"]))
        self.slot = self.props["slot.name"]
        self.publication = self.props["publication.name"]
        self.tombstones = self.props["tombstones.on.delete"].lower() == "true"
        self.batch = int(self.props["max.batch.size"])
        self.dbname = self.props["database.dbname"]
        self._stopping = False
        self._meta = connect(self._params())
        self._meta.autocommit = True
        self._ensure_publication()

        offset = None
        if self.context is not None:
            offset = self.context.offset_storage_reader().offset(self.partition)
        mode = self.props["snapshot.mode"]
        mode = "initial" if mode in INITIAL_ALIASES else mode
        snapshot_done = offset is not None and (not offset.get("snapshot")
                                                or bool(offset.get("last_snapshot_record")))
        want_snapshot = mode == "always" or (mode in ("initial", "initial_only")
                                             and not snapshot_done)
        if offset is not None and not offset.get("snapshot"):
            position = _Position.of(offset)
            self._resume = self._returned = position
            self._start_lsn = position.lsn if position.complete else 0
            self._flushed = self._start_lsn
        elif offset is not None and snapshot_done:
            self._start_lsn = int(offset["lsn"])
        self._repl = connect(self._params(),
                             connection_factory=psycopg2.extras.LogicalReplicationConnection)
        self._cursor = self._repl.cursor()
        exported: tuple[int, str] | None = None
        if not self._slot_exists():
            if offset is not None:
                log.warning("replication slot %s is missing: created again; changes made "
                            "since the stored offset %s are lost", self.slot, offset)
            self._cursor.execute(
                f"CREATE_REPLICATION_SLOT {quote_ident(self.slot)} LOGICAL pgoutput "
                "EXPORT_SNAPSHOT")
            row = self._cursor.fetchone()
            exported = (pgoutput.parse_lsn(row[1]), row[2])
            self._start_lsn = 0
            self._resume = None
        if want_snapshot:
            self._snapshot = self._snapshot_records(exported)
        self.initial_only = mode == "initial_only"

    def _params(self) -> dict[str, Any]:
        p = self.props
        params: dict[str, Any] = {"host": p["database.hostname"],
                                  "port": int(p["database.port"]),
                                  "user": p["database.user"], "dbname": p["database.dbname"]}
        if p.get("database.password"):
            params["password"] = p["database.password"]
        if p.get("database.sslmode"):
            params["sslmode"] = p["database.sslmode"]
        return params

    def _slot_exists(self) -> bool:
        with self._meta.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
            return cur.fetchone() is not None

    def _captured_tables(self) -> list[tuple[str, str]]:
        with self._meta.cursor() as cur:
            cur.execute("SELECT schemaname, tablename FROM pg_tables ORDER BY 1, 2")
            return [(s, t) for s, t in cur.fetchall() if self.filter(s, t)]

    def _ensure_publication(self) -> None:
        mode = self.props["publication.autocreate.mode"]
        with self._meta.cursor() as cur:
            cur.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s",
                        (self.publication,))
            row = cur.fetchone()
            name = quote_ident(self.publication)
            if mode == "disabled":
                if row is None:
                    raise ConnectException(f"publication {self.publication} does not exist "
                                           "and publication.autocreate.mode=disabled")
                return
            if mode == "all_tables":
                if row is None:
                    cur.execute(f"CREATE PUBLICATION {name} FOR ALL TABLES")
                return
            tables = ", ".join(qualified(s, t) for s, t in self._captured_tables())
            if not tables:
                raise ConnectException("publication.autocreate.mode=filtered: no table "
                                       "matches table.include.list")
            if row is None:
                cur.execute(f"CREATE PUBLICATION {name} FOR TABLE {tables}")
            elif row[0] in (False, "f"):
                cur.execute(f"ALTER PUBLICATION {name} SET TABLE {tables}")

    # -- snapshot -------------------------------------------------------------------------

    def _table_info(self, cur: Any, schema: str, table: str) -> _Table:
        cur.execute(
            "SELECT a.attname, a.atttypid, a.atttypmod FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum", (schema, table))
        columns = [(name, int(oid), int(typmod)) for name, oid, typmod in cur.fetchall()]
        return build_table(self.prefix, schema, table, columns,
                           self._primary_key(cur, schema, table))

    @staticmethod
    def _primary_key(cur: Any, schema: str, table: str) -> list[str]:
        cur.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)", (schema, table))
        return [row[0] for row in cur.fetchall()]

    def _snapshot_records(self, exported: tuple[int, str] | None) -> Iterator[SourceRecord]:
        conn = connect(self._params())
        self._snapshot_conn = conn
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur = conn.cursor()
        if exported is not None:
            cur.execute("SET TRANSACTION SNAPSHOT %s", (exported[1],))
            lsn = exported[0]
        else:
            # No exported snapshot (the slot existed): rows changed since the slot's
            # confirmed position arrive again from the stream (at-least-once, none lost).
            cur.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                        "WHERE slot_name = %s", (self.slot,))
            row = cur.fetchone()
            lsn = pgoutput.parse_lsn(row[0]) if row and row[0] else 0
        tables = [self._table_info(cur, s, t) for s, t in self._captured_tables()]
        log.info("snapshot of %d tables at %s", len(tables), pgoutput.format_lsn(lsn))
        if self.props["snapshot.mode"] == "no_data":
            tables = []
        return self._snapshot_rows(conn, tables, lsn)

    def _snapshot_rows(self, conn: Any, tables: list[_Table], lsn: int
                       ) -> Iterator[SourceRecord]:
        offset = {"lsn": lsn, "snapshot": True}
        pending: SourceRecord | None = None
        fetch = int(self.props["snapshot.fetch.size"])
        for number, table in enumerate(tables):
            names = [c[0] for c in table.columns]
            rows = conn.cursor(name=f"strom_snapshot_{number}")
            rows.itersize = fetch
            rows.execute(f"SELECT {', '.join(quote_ident(n) for n in names)} "
                         f"FROM {qualified(table.schema, table.name)}")
            now = int(time.time() * 1000)
            for raw in rows:
                after = table.row(dict(zip(names, raw, strict=True)))
                record = self._event(table, "r", None, after, now, None, None, offset,
                                     snapshot="true")
                if pending is not None:
                    yield pending
                pending = record
            rows.close()
        conn.rollback()
        conn.close()
        self._snapshot_conn = None
        if pending is not None:
            last = {**offset, "last_snapshot_record": True}
            pending.value.get("source").put("snapshot", "last")
            yield dataclasses.replace(pending, source_offset=last)
        self._start_lsn = lsn

    # -- events ---------------------------------------------------------------------------

    def _event(self, table: _Table, op: str, before: Struct | None, after: Struct | None,
               ts_ms: int, tx_id: int | None, lsn: int | None, offset: Mapping[str, Any],
               snapshot: str | None = None, headers: Headers | None = None) -> SourceRecord:
        source = Struct(SOURCE_SCHEMA)
        (source.put("version", __version__).put("connector", "postgresql")
         .put("name", self.prefix).put("ts_ms", ts_ms).put("snapshot", snapshot or "false")
         .put("db", self.dbname).put("schema", table.schema).put("table", table.name)
         .put("txId", tx_id).put("lsn", lsn))
        envelope = Struct(table.envelope_schema)
        (envelope.put("before", before).put("after", after).put("source", source)
         .put("op", op).put("ts_ms", int(time.time() * 1000)))
        return SourceRecord(topic=table.topic, key_schema=table.key_schema,
                            key=table.key(after if after is not None else before),
                            value_schema=table.envelope_schema, value=envelope,
                            timestamp=ts_ms, headers=headers or Headers(),
                            source_partition=self.partition, source_offset=dict(offset))

    def _table_for(self, relation: pgoutput.Relation) -> _Table:
        key = (relation.oid, relation.namespace, relation.name, relation.columns)
        table = self._tables.get(key)
        if table is None:
            with self._meta.cursor() as cur:
                pk = self._primary_key(cur, relation.namespace, relation.name)
            columns = [(c.name, c.type_oid, c.type_modifier) for c in relation.columns]
            if not pk and relation.replica_identity in ("d", "i"):
                pk = [c.name for c in relation.columns if c.is_key]
            table = build_table(self.prefix, relation.namespace, relation.name, columns, pk)
            self._tables[key] = table
        return table

    @staticmethod
    def _texts(relation: pgoutput.Relation,
               values: tuple[pgoutput.ColumnValue, ...] | None) -> dict[str, Any] | None:
        if values is None:
            return None
        out: dict[str, Any] = {}
        for column, value in zip(relation.columns, values, strict=False):
            if value.kind == pgoutput.UNCHANGED:
                out[column.name] = _UNCHANGED
            else:
                out[column.name] = value.text()
        return out

    def _handle(self, payload: bytes, data_start: int) -> list[SourceRecord]:
        """Decode one message of the stream; the records it completes (a Commit, or a batch
        of a large transaction)."""
        message = pgoutput.decode(payload)
        if isinstance(message, pgoutput.Begin):
            self._txn = _Txn(message, self._delivered(message.final_lsn))
        elif isinstance(message, pgoutput.Relation):
            self._relations[message.oid] = message
        elif isinstance(message, pgoutput.Insert | pgoutput.Update | pgoutput.Delete):
            relation = self._relations[message.relation_oid]
            if not self.filter(relation.namespace, relation.name) or self._txn is None:
                return []
            table = self._table_for(relation)
            if isinstance(message, pgoutput.Insert):
                after = table.row(self._texts(relation, message.new) or {})
                self._add("c", table, None, after, data_start)
            elif isinstance(message, pgoutput.Update):
                old = self._texts(relation, message.old or message.key)
                after = table.row(self._texts(relation, message.new) or {})
                before = table.row(old) if old is not None else None
                old_key = table.key(before) if table.has_key_values(before) else None
                new_key = table.key(after)
                if old_key is not None and new_key is not None and old_key != new_key:
                    # A key change: Debezium's delete of the old key (then its tombstone)
                    # and create of the new one.
                    self._add("d", table, before, None, data_start, Headers().add(
                        PK_UPDATE_NEWKEY, new_key, table.key_schema))
                    self._add("c", table, None, after, data_start, Headers().add(
                        PK_UPDATE_OLDKEY, old_key, table.key_schema))
                else:
                    self._add("u", table, before, after, data_start)
            else:
                old = self._texts(relation, message.old or message.key)
                before = table.row(old or {})
                self._add("d", table, before, None, data_start)
            return self._send_early()
        elif isinstance(message, pgoutput.Truncate):
            log.info("TRUNCATE of relations %s not sent (as Debezium's default "
                     "skipped.operations=t)", message.relation_oids)
        elif isinstance(message, pgoutput.Commit):
            return self._commit_transaction(message)
        return []

    def _delivered(self, final_lsn: int) -> int | None:
        """How many change events of the transaction whose commit LSN is `final_lsn` were
        delivered already (by the stored offset, or before a reconnection): 0, `_ALL`, or None
        when only its Commit tells (an offset without `commit_lsn`: its `lsn` is an end LSN)."""
        resume = self._resume
        if resume is None:
            return 0
        if resume.commit_lsn is not None:
            if final_lsn < resume.commit_lsn:
                return _ALL
            self._resume = None
            if final_lsn == resume.commit_lsn:
                return _ALL if resume.complete else resume.done
            return 0
        # A transaction commits at or after the end of the one before it: one beginning
        # before the stored end LSN is that transaction or an earlier one.
        if final_lsn >= resume.lsn:
            self._resume = None
            return 0
        return _ALL if resume.complete else None

    def _add(self, op: str, table: _Table, before: Struct | None, after: Struct | None,
             lsn: int, headers: Headers | None = None) -> None:
        txn = self._txn
        assert txn is not None
        txn.count += 1
        if txn.skip is not None and txn.count <= txn.skip:
            return  # delivered already
        txn.pending.append(_Change(op, table, before, after, lsn, txn.count, headers))

    def _send_early(self) -> list[SourceRecord]:
        """A transaction holding more than a batch of changes: send all but its last change
        now (their offsets cannot count the transaction's events yet; the last change's,
        sent at the Commit, does)."""
        txn = self._txn
        if txn is None or txn.skip is None or len(txn.pending) <= self.batch:
            return []
        changes, txn.pending = txn.pending[:-1], txn.pending[-1:]
        return self._records(txn, changes, None)

    def _records(self, txn: _Txn, changes: list[_Change], commit: pgoutput.Commit | None
                 ) -> list[SourceRecord]:
        begin = txn.begin
        ts_ms = pgoutput.pg_timestamp_ms(begin.commit_ts)
        records: list[SourceRecord] = []
        for change in changes:
            offset: dict[str, Any] = {
                "lsn": commit.end_lsn if commit is not None else begin.final_lsn,
                "commit_lsn": begin.final_lsn, "txId": begin.xid, "ts_usec": begin.commit_ts,
                "event": change.number}
            if commit is not None:
                offset["events"] = txn.count
            record = self._event(change.table, change.op, change.before, change.after, ts_ms,
                                 begin.xid, change.lsn, offset, headers=change.headers)
            records.append(record)
            if change.op == "d" and self.tombstones and record.key is not None:
                records.append(SourceRecord(
                    topic=change.table.topic, key_schema=change.table.key_schema,
                    key=record.key, timestamp=ts_ms, headers=record.headers.copy(),
                    source_partition=self.partition, source_offset=offset))
        return records

    def _commit_transaction(self, commit: pgoutput.Commit) -> list[SourceRecord]:
        txn, self._txn = self._txn, None
        if txn is None:
            return []
        changes = txn.pending
        if txn.skip is None:  # an offset of an older version: decided by the end LSN
            resume = self._resume
            assert resume is not None
            if commit.end_lsn < resume.lsn:
                return []
            self._resume = None
            changes = [c for c in changes if c.number > resume.done]
        return self._records(txn, changes, commit)

    # -- poll / commit ----------------------------------------------------------------------

    def poll(self) -> list[SourceRecord] | None:
        if self._snapshot is not None:
            snapshot: list[SourceRecord] = []
            for record in self._snapshot:
                snapshot.append(record)
                if len(snapshot) >= self.batch:
                    return snapshot
            self._snapshot = None
            return snapshot
        if self.initial_only:
            time.sleep(POLL_WAIT_S)
            return None
        try:
            return self._stream()
        except psycopg2.Error as error:
            # The connection broke (server restart, wal_sender_timeout while paused, a
            # terminated walsender): start again from the slot, skipping what was returned.
            log.warning("replication stream of slot %s broke (%s): reconnecting", self.slot,
                        str(error).strip())
            self._drop_replication()
            time.sleep(RECONNECT_WAIT_S)
            return None

    def _stream(self) -> list[SourceRecord]:
        if self._repl is None:
            self._repl = connect(
                self._params(), connection_factory=psycopg2.extras.LogicalReplicationConnection)
            self._cursor = self._repl.cursor()
        if self._meta is None or self._meta.closed:
            self._meta = connect(self._params())
            self._meta.autocommit = True
        if not self._streaming:
            self._cursor.start_replication(
                slot_name=self.slot, decode=False, start_lsn=self._start_lsn,
                options={"proto_version": "1", "publication_names": self.publication},
                status_interval=max(1, int(self.props["status.update.interval.ms"]) // 1000))
            self._streaming = True
        deadline = time.monotonic() + POLL_WAIT_S
        while len(self._ready) < self.batch and not self._stopping:
            message = self._cursor.read_message()
            if message is not None:
                self._ready.extend(self._handle(message.payload, message.data_start))
                continue
            remaining = deadline - time.monotonic()
            if self._ready or remaining <= 0:
                break
            if self._txn is None:
                self._confirm_idle()
            select.select([self._repl], [], [], min(remaining, 0.1))
        return self._take()

    def _take(self) -> list[SourceRecord]:
        """At most a batch of the records made (a delete is not parted from its tombstone,
        which shares its offset, unless the batch holds only the two)."""
        cut = min(self.batch, len(self._ready))
        if 1 < cut < len(self._ready) \
                and self._ready[cut].source_offset == self._ready[cut - 1].source_offset:
            cut -= 1
        elif cut == 1 < len(self._ready) \
                and self._ready[1].source_offset == self._ready[0].source_offset:
            cut = 2
        records, self._ready = self._ready[:cut], self._ready[cut:]
        if records:
            self._returned = _Position.of(records[-1].source_offset)
        return records

    def _confirm_idle(self) -> None:
        """Idle, with everything polled confirmed: confirm the server's sent position too (WAL
        of other tables and databases), so an idle slot does not hold WAL (Debezium needs
        heartbeats for this). Also the keepalive that wal_sender_timeout wants."""
        everything_confirmed = self._returned is None or (
            self._returned.complete and self._returned.lsn <= self._flushed)
        wal_end = int(self._cursor.wal_end or 0)
        if everything_confirmed and wal_end > self._flushed and self._start_lsn <= wal_end:
            self._cursor.send_feedback(write_lsn=wal_end, flush_lsn=wal_end, force=True)
            self._flushed = wal_end
        else:
            self._cursor.send_feedback()

    def _drop_replication(self) -> None:
        for conn in (self._repl, self._meta):
            if conn is not None:
                with contextlib.suppress(psycopg2.Error):
                    conn.close()
        self._repl = self._cursor = self._meta = None
        self._streaming = False
        self._txn, self._ready = None, []
        self._start_lsn = 0  # the slot's confirmed position
        self._resume = self._returned

    def commit(self) -> None:
        """Connect committed the offsets: confirm the slot up to the last transaction whose
        events were all committed."""
        if self.context is None or self._cursor is None or not self._streaming:
            return
        offset = self.context.offset_storage_reader().offset(self.partition)
        if offset is None or offset.get("snapshot"):
            return
        position = _Position.of(offset)
        if not position.complete:
            return
        lsn = position.lsn
        if lsn > self._flushed:
            try:
                self._cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn, force=True)
            except psycopg2.Error as error:
                log.warning("confirming slot %s failed (%s): the next poll reconnects",
                            self.slot, str(error).strip())
                self._drop_replication()
                return
            self._flushed = lsn
            log.debug("slot %s confirmed up to %s", self.slot, pgoutput.format_lsn(lsn))

    def stop(self) -> None:
        self._stopping = True
        for conn in (self._snapshot_conn, self._repl, self._meta):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # closing anyway
                    log.debug("closing a connection failed", exc_info=True)
        self._snapshot_conn = self._repl = self._meta = self._cursor = None
        self._streaming = False
        if self.props.get("slot.drop.on.stop", "false").lower() == "true":
            self._drop_slot()

    def _drop_slot(self) -> None:
        """Drop the slot once the (closed) replication connection's walsender released it."""
        conn = connect(self._params())
        try:
            conn.autocommit = True
            deadline = time.monotonic() + 10
            with conn.cursor() as cur:
                while time.monotonic() < deadline:
                    cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                                (self.slot,))
                    row = cur.fetchone()
                    if row is None:
                        return
                    if row[0] in (False, "f"):
                        cur.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
                        log.info("dropped replication slot %s", self.slot)
                        return
                    time.sleep(0.05)
            log.warning("replication slot %s still active: not dropped", self.slot)
        finally:
            conn.close()


def _defaults() -> dict[str, Any]:
    return {name: value for name, value in cdc_config_def().default_values().items()
            if value is not None}
