"""The PostgreSQL sink's pure parts: connection URLs, statements, rows from records, runs,
type mapping and value coercion (no database)."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from strom.connect.data import (
    INT32_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Date,
    Decimal,
    SchemaBuilder,
    Struct,
    Time,
    Timestamp,
)
from strom.connect.errors import DataException
from strom.connect.postgres_sink import (
    Run,
    Settings,
    TableId,
    coerce,
    make_row,
    parse_connection_url,
    runs_of,
    sql_type,
    statement,
)
from strom.connect.records import SinkRecord

KEY = SchemaBuilder.struct().field("id", INT32_SCHEMA).build()
VALUE = (SchemaBuilder.struct().field("id", INT32_SCHEMA).field("name", STRING_SCHEMA)
         .field("note", OPTIONAL_STRING_SCHEMA).build())


def settings(**props: str) -> Settings:
    return Settings.from_props({"connection.url": "jdbc:postgresql://h:5432/db", **props})


def record(id_: int, name: str | None = "n", offset: int = 0, topic: str = "t") -> SinkRecord:
    value = Struct(VALUE).put("id", id_).put("name", name) if name is not None else None
    return SinkRecord(topic=topic, kafka_partition=2, key_schema=KEY,
                      key=Struct(KEY).put("id", id_), value_schema=VALUE if value else None,
                      value=value, kafka_offset=offset)


def test_connection_urls() -> None:
    dsn, user, password, server = parse_connection_url(
        "jdbc:postgresql://db.example:6543/shop?user=u&password=p&sslmode=require"
        "&currentSchema=sales&loggerLevel=OFF")
    assert dsn == "postgresql://db.example:6543/shop?sslmode=require"
    assert (user, password) == ("u", "p")
    assert server == {"search_path": "sales"}
    assert parse_connection_url("postgresql://a:b@h/db")[0] == "postgresql://a:b@h/db"
    s = settings(**{"connection.url": "jdbc:postgresql://h/db?user=x",
                    "connection.password": "secret"})
    assert (s.user, s.password) == ("x", "secret")


def test_statements() -> None:
    table = TableId.parse("public.orders")
    assert str(table) == '"public"."orders"'
    assert str(TableId.parse('we"ird')) == '"we""ird"'
    cols = ("id", "name", "note")
    assert statement(Run(table, "upsert", ("id",), cols)) == (
        'INSERT INTO "public"."orders" ("id", "name", "note") VALUES ($1, $2, $3) '
        'ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name", "note" = EXCLUDED."note"')
    assert statement(Run(table, "update", ("id",), cols)) == (
        'UPDATE "public"."orders" SET "name" = $2, "note" = $3 WHERE "id" = $1')
    assert statement(Run(table, "delete", ("id",), ("id",))) == (
        'DELETE FROM "public"."orders" WHERE "id" = $1')
    assert statement(Run(table, "insert", (), cols)) == (
        'INSERT INTO "public"."orders" ("id", "name", "note") VALUES ($1, $2, $3)')
    assert statement(Run(table, "upsert", ("id",), ("id",))).endswith(
        'ON CONFLICT ("id") DO NOTHING')


def test_insert_mode_skips_conflicts_only_for_kafka_keys() -> None:
    """insert.mode=insert is a plain INSERT (a duplicate key is bad data, as the JDBC sink's);
    only pk.mode=kafka, whose conflicts are the same record again, adds DO NOTHING."""
    for pk_mode, safe in (("record_key", False), ("record_value", False), ("kafka", True)):
        row = make_row(settings(**{"pk.mode": pk_mode}), record(5))
        assert row is not None and row.op == "insert" and row.redelivery_safe is safe
        [run] = runs_of([row])
        sql = statement(run)
        assert sql.startswith('INSERT INTO "t" (')
        assert sql.endswith("DO NOTHING") is safe, sql
        assert "ON CONFLICT" not in sql or safe
    upsert = make_row(settings(**{"pk.mode": "kafka", "insert.mode": "upsert"}), record(5))
    assert upsert is not None and not upsert.redelivery_safe


def test_rows_by_pk_mode() -> None:
    row = make_row(settings(**{"pk.mode": "record_key", "insert.mode": "upsert"}), record(5))
    assert row is not None
    assert (row.op, row.key_columns, row.columns, row.values) == (
        "upsert", ("id",), ("id", "name", "note"), (5, "n", None))
    row = make_row(settings(**{"pk.mode": "kafka"}), record(5, offset=9))
    assert row is not None
    assert row.columns[:3] == ("__connect_topic", "__connect_partition", "__connect_offset")
    assert row.values[:3] == ("t", 2, 9)
    row = make_row(settings(**{"pk.mode": "record_value", "pk.fields": "name",
                               "fields.whitelist": "id", "table.name.format": "x_${topic}"}),
                   record(5))
    assert row is not None
    assert (str(row.table), row.key_columns, row.columns) == ('"x_t"', ("name",),
                                                              ("name", "id"))
    assert make_row(settings(**{"pk.mode": "record_key"}), record(5, None)) is None
    delete = make_row(settings(**{"pk.mode": "record_key", "delete.enabled": "true"}),
                      record(5, None))
    assert delete is not None and (delete.op, delete.columns, delete.values) == (
        "delete", ("id",), (5,))
    with pytest.raises(DataException, match="not in the record key"):
        make_row(settings(**{"pk.mode": "record_key", "pk.fields": "nope"}), record(5))


def test_runs_keep_the_order() -> None:
    s = settings(**{"pk.mode": "record_key", "insert.mode": "upsert",
                    "delete.enabled": "true"})
    rows = [make_row(s, r) for r in [record(1), record(2), record(1, None), record(1),
                                     record(3, topic="other")]]
    runs = runs_of(r for r in rows if r is not None)
    assert [(run.op, len(run.rows), run.table.name) for run in runs] == [
        ("upsert", 2, "t"), ("delete", 1, "t"), ("upsert", 1, "t"), ("upsert", 1, "other")]


def test_type_mapping() -> None:
    assert sql_type(Decimal.schema(3)) == "NUMERIC"
    assert sql_type(Date.SCHEMA) == "DATE"
    assert sql_type(Time.SCHEMA) == "TIME"
    assert sql_type(Timestamp.SCHEMA) == "TIMESTAMP"
    assert sql_type(SchemaBuilder.array(STRING_SCHEMA).build()) == "TEXT[]"


def test_coercion() -> None:
    utc = dt.UTC
    paris = __import__("zoneinfo").ZoneInfo("Europe/Paris")
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=utc)
    assert coerce(aware, "timestamp without time zone", paris) == dt.datetime(2024, 1, 1, 13)
    assert coerce("2024-01-01T12:00:00Z", "timestamp with time zone", utc) == aware
    assert coerce(0, "date", utc) == dt.date(1970, 1, 1)
    assert coerce(1.5, "numeric", utc) == decimal.Decimal("1.5")
    assert coerce({"a": [1]}, "jsonb", utc) == '{"a": [1]}'
    assert coerce("AAE=", "bytea", utc) == b"\x00\x01"
    with pytest.raises(DataException, match="integer column"):
        coerce("x", "integer", utc)
