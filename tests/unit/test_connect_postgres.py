"""strom.connect.postgres without a server: the pgoutput decoder on byte fixtures built by hand
(the layouts of PostgreSQL's "Logical Replication Message Formats"), the type mapping, the
change events a task builds from a decoded stream (before/after/op, tombstones, offsets, the
skipping of what a stored offset covers) and the JDBC-style helpers."""

from __future__ import annotations

import datetime as dt
import decimal
import struct

import pytest

from strom.connect.data import Date, Decimal, Time, Timestamp, Type
from strom.connect.discovery import find_connector
from strom.connect.postgres import pgoutput, types
from strom.connect.postgres.cdc import PostgresCdcSourceTask, _Position
from strom.connect.postgres.common import TableFilter, jdbc_url_params
from strom.connect.postgres.pgoutput import ColumnValue as CV
from strom.connect.postgres.query import select_tables
from strom.connect.records import SourceRecord


def t(text: str) -> CV:
    return CV(pgoutput.TEXT, text.encode())


# -- decoder: hand-built bytes ----------------------------------------------------------------

def test_begin_and_commit_from_bytes() -> None:
    begin = b"B" + struct.pack(">Q", 0x1_0000_0020) + struct.pack(">q", 5_000_000) \
        + struct.pack(">I", 731)
    assert pgoutput.decode(begin) == pgoutput.Begin(0x1_0000_0020, 5_000_000, 731)
    commit = b"C\x00" + struct.pack(">QQq", 0x20, 0x48, 7)
    assert pgoutput.decode(commit) == pgoutput.Commit(0, 0x20, 0x48, 7)


def test_relation_from_bytes() -> None:
    raw = (b"R" + struct.pack(">I", 16384) + b"public\x00orders\x00" + b"f"
           + struct.pack(">h", 2)
           + b"\x01" + b"id\x00" + struct.pack(">Ii", 23, -1)
           + b"\x00" + b"price\x00" + struct.pack(">Ii", 1700, (10 << 16 | 2) + 4))
    relation = pgoutput.decode(raw)
    assert relation == pgoutput.Relation(16384, "public", "orders", "f", (
        pgoutput.RelationColumn(1, "id", 23, -1),
        pgoutput.RelationColumn(0, "price", 1700, (10 << 16 | 2) + 4)))
    assert isinstance(relation, pgoutput.Relation)
    assert relation.columns[0].is_key and not relation.columns[1].is_key


def test_insert_update_delete_from_bytes() -> None:
    tuple2 = struct.pack(">h", 3) + b"t" + struct.pack(">i", 2) + b"42" + b"n" + b"u"
    assert pgoutput.decode(b"I" + struct.pack(">I", 7) + b"N" + tuple2) == pgoutput.Insert(
        7, (t("42"), CV(pgoutput.NULL), CV(pgoutput.UNCHANGED)))
    old = struct.pack(">h", 1) + b"t" + struct.pack(">i", 1) + b"1"
    new = struct.pack(">h", 1) + b"t" + struct.pack(">i", 1) + b"2"
    prefix = b"U" + struct.pack(">I", 7)
    assert pgoutput.decode(prefix + b"O" + old + b"N" + new) == pgoutput.Update(
        7, (t("2"),), old=(t("1"),))
    assert pgoutput.decode(prefix + b"K" + old + b"N" + new) == pgoutput.Update(
        7, (t("2"),), key=(t("1"),))
    assert pgoutput.decode(prefix + b"N" + new) == pgoutput.Update(7, (t("2"),))
    assert pgoutput.decode(b"D" + struct.pack(">I", 7) + b"K" + old) == pgoutput.Delete(
        7, key=(t("1"),))
    assert pgoutput.decode(b"D" + struct.pack(">I", 7) + b"O" + old) == pgoutput.Delete(
        7, old=(t("1"),))


def test_truncate_type_origin_message_from_bytes() -> None:
    assert pgoutput.decode(b"T" + struct.pack(">iB", 2, 1) + struct.pack(">II", 5, 6)) \
        == pgoutput.Truncate(1, (5, 6))
    assert pgoutput.decode(b"Y" + struct.pack(">I", 90000) + b"public\x00mood\x00") \
        == pgoutput.TypeMessage(90000, "public", "mood")
    assert pgoutput.decode(b"O" + struct.pack(">Q", 99) + b"upstream\x00") \
        == pgoutput.Origin(99, "upstream")
    assert pgoutput.decode(b"M\x01" + struct.pack(">Q", 3) + b"p\x00" + struct.pack(">i", 2)
                           + b"hi") == pgoutput.LogicalMessage(1, 3, "p", b"hi")


@pytest.mark.parametrize("raw", [b"", b"Z", b"B\x00\x01", b"I" + struct.pack(">I", 1) + b"X",
                                 b"R" + struct.pack(">I", 1) + b"public"])
def test_malformed_messages_raise(raw: bytes) -> None:
    with pytest.raises(pgoutput.PgOutputError):
        pgoutput.decode(raw)


def test_encode_is_the_inverse_of_decode() -> None:
    messages: list[pgoutput.Message] = [
        pgoutput.Begin(1, 2, 3), pgoutput.Commit(0, 4, 5, 6), pgoutput.Origin(7, "o"),
        pgoutput.Relation(1, "s", "t", "d", (pgoutput.RelationColumn(1, "a", 23, -1),)),
        pgoutput.TypeMessage(1, "s", "t"), pgoutput.Insert(1, (t("x"), CV(pgoutput.NULL))),
        pgoutput.Update(1, (t("y"),), old=(t("x"),)), pgoutput.Delete(1, key=(t("x"),)),
        pgoutput.Truncate(2, (1, 2)), pgoutput.LogicalMessage(0, 1, "p", b"c")]
    for m in messages:
        assert pgoutput.decode(pgoutput.encode(m)) == m


def test_lsn_text() -> None:
    assert pgoutput.format_lsn(0x1_6B37_4D48) == "1/6B374D48"
    assert pgoutput.parse_lsn("1/6B374D48") == 0x1_6B37_4D48
    assert pgoutput.pg_timestamp_ms(0) == 946_684_800_000


# -- type mapping ---------------------------------------------------------------------------

def test_schemas_of_types() -> None:
    assert types.schema_for(types.INT2).type is Type.INT16
    assert types.schema_for(types.INT4).type is Type.INT32
    assert types.schema_for(types.INT8).type is Type.INT64
    assert types.schema_for(types.FLOAT4).type is Type.FLOAT32
    assert types.schema_for(types.FLOAT8).type is Type.FLOAT64
    assert types.schema_for(types.BOOL).type is Type.BOOLEAN
    assert types.schema_for(types.BYTEA).type is Type.BYTES
    for oid in (types.TEXT, types.VARCHAR, types.JSON, types.JSONB, types.UUID, 99999):
        assert types.schema_for(oid).type is Type.STRING
    numeric = types.schema_for(types.NUMERIC, (10 << 16 | 2) + 4)
    assert numeric.name == Decimal.LOGICAL_NAME and numeric.parameters["scale"] == "2"
    assert types.schema_for(types.NUMERIC).type is Type.STRING  # unconstrained
    assert types.schema_for(types.DATE).name == Date.LOGICAL_NAME
    assert types.schema_for(types.TIME).name == Time.LOGICAL_NAME
    assert types.schema_for(types.TIMESTAMP).name == Timestamp.LOGICAL_NAME
    assert types.schema_for(types.TIMESTAMPTZ).name == Timestamp.LOGICAL_NAME
    assert types.schema_for(types.INT4).optional
    assert not types.schema_for(types.INT4, optional=False).optional


def test_values_from_text() -> None:
    p = types.parse_text
    assert p(types.BOOL, -1, "t") is True and p(types.BOOL, -1, "f") is False
    assert p(types.INT8, -1, "-9223372036854775808") == -(2**63)
    assert p(types.FLOAT8, -1, "1.5") == 1.5
    assert p(types.NUMERIC, (10 << 16 | 2) + 4, "12.3") == decimal.Decimal("12.30")
    assert str(p(types.NUMERIC, (10 << 16 | 2) + 4, "12.3")) == "12.30"
    assert p(types.NUMERIC, -1, "1.000001") == "1.000001"
    with pytest.raises(ValueError):
        p(types.NUMERIC, (10 << 16 | 2) + 4, "NaN")
    assert p(types.BYTEA, -1, "\\x00ff") == b"\x00\xff"
    assert p(types.BYTEA, -1, "a\\\\b\\001") == b"a\\b\x01"
    assert p(types.DATE, -1, "2024-02-29") == dt.date(2024, 2, 29)
    assert p(types.TIME, -1, "13:14:15.123456") == dt.time(13, 14, 15, 123000)
    assert p(types.TIMESTAMP, -1, "2024-01-02 03:04:05.678") == dt.datetime(
        2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    assert p(types.TIMESTAMPTZ, -1, "2024-01-02 03:04:05+02") == dt.datetime(
        2024, 1, 2, 1, 4, 5, tzinfo=dt.UTC)
    assert p(types.JSONB, -1, '{"a": 1}') == '{"a": 1}'
    assert p(types.INT4, -1, None) is None
    with pytest.raises(ValueError):
        p(types.DATE, -1, "infinity")


def test_jdbc_timestamp_parts_round_trip() -> None:
    stamp = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    millis, nanos = types.to_timestamp_parts(stamp)
    assert millis == int(stamp.timestamp() * 1000) and nanos == 123456000
    assert types.from_timestamp_parts(millis, nanos) == stamp


# -- events from a decoded stream -------------------------------------------------------------

class _Catalog:
    """Stands in for the catalog connection: the primary key of every table is `id`."""

    def cursor(self) -> _Catalog:
        return self

    def __enter__(self) -> _Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, params: object = None) -> None:
        pass

    def fetchall(self) -> list[tuple[str]]:
        return [("id",)]


def stream_task(tombstones: bool = True,
                resume: tuple[int, int, bool] | None = None) -> PostgresCdcSourceTask:
    task = PostgresCdcSourceTask()
    task.prefix, task.dbname, task.tombstones = "srv", "db", tombstones
    task.filter = TableFilter(["public\\.items"])
    task._meta = _Catalog()
    # (end LSN, events done, complete): an offset without commit_lsn (older versions')
    task._resume = None if resume is None else _Position(resume[0], None, *resume[1:])
    return task


RELATION = pgoutput.Relation(10, "public", "items", "f", (
    pgoutput.RelationColumn(1, "id", types.INT4, -1),
    pgoutput.RelationColumn(1, "name", types.TEXT, -1)))
OTHER = pgoutput.Relation(11, "public", "other", "d", (
    pgoutput.RelationColumn(1, "id", types.INT4, -1),))


def feed(task: PostgresCdcSourceTask, messages: list[pgoutput.Message]) -> list[SourceRecord]:
    out = []
    for n, m in enumerate(messages):
        out.extend(task._handle(pgoutput.encode(m), 1000 + n))
    return out


def transaction(xid: int, end: int, *changes: pgoutput.Message) -> list[pgoutput.Message]:
    return [pgoutput.Begin(end - 8, 0, xid), *changes, pgoutput.Commit(0, end - 8, end, 0)]


def test_a_transaction_becomes_change_events_with_tombstones() -> None:
    task = stream_task()
    records = feed(task, [RELATION, OTHER, *transaction(
        500, 0x100,
        pgoutput.Insert(10, (t("1"), t("a"))),
        pgoutput.Insert(11, (t("9"),)),  # not captured
        pgoutput.Update(10, (t("1"), t("b")), old=(t("1"), t("a"))),
        pgoutput.Delete(10, old=(t("1"), t("b"))))])
    assert [r.value.get("op") if r.value else None for r in records] == ["c", "u", "d", None]
    create, update, delete, tombstone = records
    assert create.topic == "srv.public.items"
    assert create.value.get("before") is None and create.value.get("after").get("name") == "a"
    assert update.value.get("before").get("name") == "a"
    assert update.value.get("after").get("name") == "b"
    assert delete.value.get("before").get("name") == "b" and delete.value.get("after") is None
    assert tombstone.value is None and tombstone.key == delete.key
    assert create.key.get("id") == 1 and create.key_schema.name == "srv.public.items.Key"
    source = update.value.get("source")
    assert [source.get(f) for f in ("txId", "db", "schema", "table", "lsn")] \
        == [500, "db", "public", "items", 1005]
    assert [r.source_offset["event"] for r in records] == [1, 2, 3, 3]
    assert {r.source_offset["lsn"] for r in records} == {0x100}
    assert all(r.source_offset["events"] == 3 for r in records)
    assert create.source_partition == {"server": "srv"}


def test_no_tombstones_when_disabled() -> None:
    task = stream_task(tombstones=False)
    records = feed(task, [RELATION, *transaction(1, 0x10, pgoutput.Delete(
        10, key=(t("1"), CV(pgoutput.NULL))))])
    assert len(records) == 1 and records[0].value.get("before").get("id") == 1
    assert records[0].value.get("before").get("name") is None  # REPLICA IDENTITY DEFAULT: key only


def test_nothing_before_commit_and_an_unchanged_toast_placeholder() -> None:
    task = stream_task()
    begin, change, commit = transaction(1, 0x10, pgoutput.Update(
        10, (t("1"), CV(pgoutput.UNCHANGED))))
    assert feed(task, [RELATION, begin, change]) == []
    [record] = feed(task, [commit])
    assert record.value.get("after").get("name") == types.UNAVAILABLE_VALUE
    assert record.value.get("before") is None


def test_a_stored_offset_skips_what_was_delivered() -> None:
    first = transaction(1, 0x10, pgoutput.Insert(10, (t("1"), t("a"))))
    second = transaction(2, 0x20, pgoutput.Insert(10, (t("2"), t("b"))),
                         pgoutput.Insert(10, (t("3"), t("c"))))
    third = transaction(3, 0x30, pgoutput.Insert(10, (t("4"), t("d"))))
    # Stored: the first of the second transaction's two events.
    task = stream_task(resume=(0x20, 1, False))
    records = feed(task, [RELATION, *first, *second, *third])
    assert [r.value.get("after").get("id") for r in records] == [3, 4]
    task = stream_task(resume=(0x20, 2, True))
    records = feed(task, [RELATION, *first, *second, *third])
    assert [r.value.get("after").get("id") for r in records] == [4]


def test_a_primary_key_change_is_a_delete_and_a_create() -> None:
    """As Debezium: the old key's delete (header __debezium.newkey) and tombstone, then the
    new key's create (header __debezium.oldkey); under REPLICA IDENTITY DEFAULT (the old key,
    'K') and FULL (the old row, 'O')."""
    for old in ((t("1"), CV(pgoutput.NULL)), (t("1"), t("a"))):
        task = stream_task()
        records = feed(task, [RELATION, *transaction(
            7, 0x40, pgoutput.Update(10, (t("42"), t("a")), key=old) if old[1].kind
            == pgoutput.NULL else pgoutput.Update(10, (t("42"), t("a")), old=old))])
        assert [(r.key.get("id"), r.value.get("op") if r.value else None) for r in records] \
            == [(1, "d"), (1, None), (42, "c")]
        delete, tombstone, create = records
        assert delete.value.get("before").get("id") == 1 and delete.value.get("after") is None
        assert create.value.get("before") is None
        assert create.value.get("after").get("id") == 42
        [newkey] = delete.headers.all_with_name("__debezium.newkey")
        assert newkey.value.get("id") == 42 and newkey.schema == delete.key_schema
        assert tombstone.headers == delete.headers
        [oldkey] = create.headers.all_with_name("__debezium.oldkey")
        assert oldkey.value.get("id") == 1
        assert [r.source_offset["event"] for r in records] == [1, 1, 2]
        assert all(r.source_offset["events"] == 2 for r in records)
    # the same key (FULL identity sends the old row on every update): one update
    task = stream_task()
    [update] = feed(task, [RELATION, *transaction(
        8, 0x50, pgoutput.Update(10, (t("1"), t("b")), old=(t("1"), t("a"))))])
    assert update.value.get("op") == "u" and update.headers.is_empty()
    # an old tuple without the primary key (a replica identity index on other columns): the
    # key change cannot be told, one update as before
    task = stream_task()
    [update] = feed(task, [RELATION, *transaction(
        9, 0x60, pgoutput.Update(10, (t("5"), t("b")), key=(CV(pgoutput.NULL), t("a"))))])
    assert update.value.get("op") == "u" and update.key.get("id") == 5


def test_a_poll_takes_at_most_a_batch_and_keeps_a_delete_with_its_tombstone() -> None:
    task = stream_task()
    task.batch = 2
    task._ready = feed(task, [RELATION, *transaction(
        1, 0x10, pgoutput.Insert(10, (t("1"), t("a"))),
        pgoutput.Delete(10, key=(t("2"), CV(pgoutput.NULL))),
        pgoutput.Insert(10, (t("3"), t("c"))))])
    polls = []
    while task._ready:
        polls.append([(r.key.get("id"), r.value is None) for r in task._take()])
    assert polls == [[(1, False)], [(2, False), (2, True)], [(3, False)]]
    assert task._returned == _Position(0x10, 0x10 - 8, 3, True)
    task.batch = 1
    task._ready = feed(task, [*transaction(
        2, 0x20, pgoutput.Delete(10, key=(t("4"), CV(pgoutput.NULL))))])
    assert len(task._take()) == 2  # the pair, even above a batch of 1


def big_transaction(xid: int, end: int, first: int, count: int) -> list[pgoutput.Message]:
    return transaction(xid, end, *(pgoutput.Insert(10, (t(str(n)), t("x")))
                                   for n in range(first, first + count)))


def ids(records: list[SourceRecord]) -> list[int]:
    return [r.value.get("after").get("id") for r in records]


def test_a_large_transaction_is_sent_before_its_commit() -> None:
    """More changes than max.batch.size: all but the last are sent as they come (offsets
    without the events count, so not complete), the last at the Commit; a resume from the
    middle, by the commit LSN, skips what was delivered."""
    task = stream_task()
    task.batch = 4
    begin, *changes, commit = big_transaction(9, 0x100, 0, 10)
    out: list[list[SourceRecord]] = [feed(task, [RELATION, begin])]
    for change in changes:
        out.append(feed(task, [change]))
    out.append(feed(task, [commit]))
    sizes = [len(o) for o in out]
    assert sum(sizes) == 10 and max(sizes) <= 4, sizes
    records = [r for o in out for r in o]
    assert ids(records) == list(range(10))
    assert [r.source_offset["event"] for r in records] == list(range(1, 11))
    # batches of 4 sent when a 5th change arrives; the rest at the Commit
    assert ["events" in r.source_offset for r in records] == [False] * 8 + [True] * 2
    early, last = records[:8], records[-1]
    assert {r.source_offset["lsn"] for r in early} == {0x100 - 8}  # the commit LSN
    assert last.source_offset["events"] == 10 and last.source_offset["lsn"] == 0x100
    assert {r.source_offset["commit_lsn"] for r in records} == {0x100 - 8}
    # Stored: the 6th event, sent early. A restart skips the transactions before and the
    # first 6 events of this one.
    before = transaction(8, 0x80, pgoutput.Insert(10, (t("99"), t("y"))))
    after = transaction(10, 0x120, pgoutput.Insert(10, (t("100"), t("z"))))
    task = stream_task()
    task._resume = _Position.of(records[5].source_offset)
    assert not task._resume.complete
    again = feed(task, [RELATION, *before, *big_transaction(9, 0x100, 0, 10), *after])
    assert ids(again) == [6, 7, 8, 9, 100]
    # Stored: the transaction's last event: complete.
    task = stream_task()
    task._resume = _Position.of(last.source_offset)
    assert task._resume.complete
    again = feed(task, [RELATION, *before, *big_transaction(9, 0x100, 0, 10), *after])
    assert ids(again) == [100]


# -- names and helpers ------------------------------------------------------------------------

def test_connector_names() -> None:
    cdc = "io.debezium.connector.postgresql.PostgresConnector"
    jdbc = "io.confluent.connect.jdbc.JdbcSourceConnector"
    for name in (cdc, "PostgresCdcSource", "PostgresCdcSourceConnector",
                 "strom.connect.postgres.cdc.PostgresCdcSourceConnector"):
        assert find_connector(name).class_name == cdc
    for name in (jdbc, "JdbcSourceConnector", "PostgresQuerySource"):
        assert find_connector(name).class_name == jdbc


def test_jdbc_url() -> None:
    assert jdbc_url_params("jdbc:postgresql://db.example:6543/shop?user=u&password=p%20w") \
        == {"host": "db.example", "port": 6543, "dbname": "shop", "user": "u",
            "password": "p w"}
    with pytest.raises(ValueError):
        jdbc_url_params("jdbc:mysql://x/y")


def test_table_selection() -> None:
    found = [("public", "a"), ("public", "b"), ("other", "a")]
    assert select_tables(found, {"table.whitelist": "a"}) == ["public.a", "other.a"]
    assert select_tables(found, {"table.include.list": "public.a,b"}) == ["public.a",
                                                                          "public.b"]
    assert select_tables(found, {"table.blacklist": "a"}) == ["public.b"]
    table_filter = TableFilter(["public\\..*"], ["public\\.b"])
    assert table_filter("public", "a") and not table_filter("public", "b")
    assert not table_filter("other", "a") and not TableFilter([])("pg_catalog", "pg_class")
