"""The PostgreSQL sink connector (strom.connect.postgres_sink) against a real PostgreSQL: the
task driven directly with SinkRecords (insert, upsert, delete, auto.create with every type,
auto.evolve, one transaction per batch, redelivery, bad data to the errant record reporter,
connection errors as RetriableException, schemaless values)."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from strom.connect.api import SinkTaskContext, TopicPartition
from strom.connect.data import (
    BOOLEAN_SCHEMA,
    BYTES_SCHEMA,
    FLOAT32_SCHEMA,
    FLOAT64_SCHEMA,
    INT8_SCHEMA,
    INT16_SCHEMA,
    INT32_SCHEMA,
    INT64_SCHEMA,
    OPTIONAL_INT32_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Date,
    Decimal,
    Schema,
    SchemaBuilder,
    Struct,
    Time,
    Timestamp,
)
from strom.connect.discovery import find_connector
from strom.connect.errors import ConfigException, ConnectException, RetriableException
from strom.connect.postgres_sink import PostgresSinkConnector, PostgresSinkTask
from strom.connect.records import SinkRecord

KEY = SchemaBuilder.struct().name("Key").field("id", INT32_SCHEMA).build()
VALUE = (SchemaBuilder.struct().name("Value").field("id", INT32_SCHEMA)
         .field("name", STRING_SCHEMA).field("qty", OPTIONAL_INT32_SCHEMA).build())


class Reporter:
    def __init__(self) -> None:
        self.reported: list[tuple[SinkRecord, BaseException]] = []

    def report(self, record: SinkRecord, error: BaseException) -> None:
        self.reported.append((record, error))


class Context(SinkTaskContext):
    def __init__(self, reporter: Reporter | None = None) -> None:
        self.reporter = reporter
        self.timeout_ms: int | None = None

    def offset(self, offsets: Mapping[TopicPartition, int] | TopicPartition,
               offset: int | None = None) -> None:
        pass

    def timeout(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms

    def assignment(self) -> set[TopicPartition]:
        return set()

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    def resume(self, *partitions: TopicPartition) -> None:
        pass

    def request_commit(self) -> None:
        pass

    def errant_record_reporter(self) -> Reporter | None:
        return self.reporter


def jdbc(url: str) -> dict[str, str]:
    """The JDBC sink's connection configs for a postgresql:// URL."""
    parts = urlsplit(url)
    return {"connection.url": f"jdbc:postgresql://{parts.hostname}:{parts.port}{parts.path}",
            "connection.user": parts.username or "", "connection.password": parts.password or ""}


def run(url: str, props: Mapping[str, str], *batches: Sequence[SinkRecord],
        context: Context | None = None) -> None:
    async def body() -> None:
        task = PostgresSinkTask()
        task.initialize(context or Context())
        task.start({**jdbc(url), **props})
        try:
            for batch in batches:
                await task.put(batch)
        finally:
            await task.stop()
    asyncio.run(body())


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async def body() -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await connection.fetch(sql, *args)]
        finally:
            await connection.close()
    return asyncio.run(body())


def execute(url: str, sql: str) -> None:
    async def body() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()
    asyncio.run(body())


_offsets: dict[str, int] = {}


def rec(id_: int | None, name: str | None = None, qty: int | None = None, *,
        topic: str = "orders", value_schema: Schema | None = VALUE, value: Any = "build",
        offset: int | None = None, key: Any = "build",
        key_schema: Schema | None = KEY) -> SinkRecord:
    if offset is None:
        offset = _offsets.get(topic, 0)
    _offsets[topic] = offset + 1
    if key == "build":
        key = Struct(KEY).put("id", id_) if id_ is not None else None
    if value == "build":
        value = Struct(VALUE).put("id", id_).put("name", name).put("qty", qty)
    return SinkRecord(topic=topic, kafka_partition=0, key_schema=key_schema, key=key,
                      value_schema=value_schema, value=value, kafka_offset=offset)


def test_connector_names_and_task_configs() -> None:
    for name in ("PostgresSink", "io.confluent.connect.jdbc.JdbcSinkConnector", "JdbcSink",
                 "strom.connect.postgres_sink.PostgresSinkConnector"):
        assert find_connector(name).cls is PostgresSinkConnector, name
    connector = PostgresSinkConnector()
    connector.start({"connection.url": "jdbc:postgresql://h:5432/db", "topics": "t"})
    assert len(connector.task_configs(3)) == 3


@pytest.mark.parametrize(("props", "message"), [
    ({"delete.enabled": "true", "pk.mode": "record_value"}, "record_key"),
    ({"insert.mode": "upsert"}, "requires a primary key"),
    ({"insert.mode": "merge"}, "insert.mode"),
    ({"connection.url": "jdbc:mysql://h/db"}, "not a PostgreSQL URL"),
    ({"db.timezone": "Mars/Olympus"}, "db.timezone"),
])
def test_config_errors(props: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigException, match=message):
        PostgresSinkConnector().start({"connection.url": "jdbc:postgresql://h:5432/db",
                                       **props})


def test_insert_mode(postgres_url: str) -> None:
    run(postgres_url, {"auto.create": "true"},
        [rec(1, "a", 10), rec(2, "b"), rec(3, "c", 30)], [rec(4, "d", 40)])
    assert query(postgres_url, 'SELECT id, name, qty FROM "orders" ORDER BY id') == [
        (1, "a", 10), (2, "b", None), (3, "c", 30), (4, "d", 40)]
    # pk.mode=none: no primary key, so the same records again are new rows
    run(postgres_url, {}, [rec(1, "a", 10)])
    assert query(postgres_url, "SELECT count(*) FROM orders WHERE id = 1") == [(2,)]


def test_upsert_with_record_key(postgres_url: str) -> None:
    props = {"auto.create": "true", "insert.mode": "upsert", "pk.mode": "record_key"}
    run(postgres_url, props, [rec(1, "first"), rec(2, "other"), rec(1, "second")],
        [rec(1, "third", 3)])
    assert query(postgres_url, "SELECT id, name, qty FROM orders ORDER BY id") == [
        (1, "third", 3), (2, "other", None)]
    assert query(postgres_url, """
        SELECT a.attname FROM pg_index i JOIN pg_attribute a
          ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = 'orders'::regclass AND i.indisprimary""") == [("id",)]


def test_upsert_with_a_primitive_key(postgres_url: str) -> None:
    value = SchemaBuilder.struct().field("name", STRING_SCHEMA).build()
    props = {"auto.create": "true", "insert.mode": "upsert", "pk.mode": "record_key",
             "pk.fields": "code", "table.name.format": "items_${topic}"}

    def item(code: str, name: str) -> SinkRecord:
        return rec(None, topic="t", key=code, key_schema=STRING_SCHEMA, value_schema=value,
                   value=Struct(value).put("name", name))
    run(postgres_url, props, [item("a", "1"), item("b", "2"), item("a", "3")])
    assert query(postgres_url, "SELECT code, name FROM items_t ORDER BY code") == [
        ("a", "3"), ("b", "2")]


def test_update_mode(postgres_url: str) -> None:
    run(postgres_url, {"auto.create": "true", "insert.mode": "upsert",
                       "pk.mode": "record_value", "pk.fields": "id"}, [rec(1, "a"), rec(2, "b")])
    run(postgres_url, {"insert.mode": "update", "pk.mode": "record_value", "pk.fields": "id"},
        [rec(2, "B", 5), rec(3, "missing")])
    assert query(postgres_url, "SELECT id, name, qty FROM orders ORDER BY id") == [
        (1, "a", None), (2, "B", 5)]


def test_delete_on_tombstone(postgres_url: str) -> None:
    props = {"auto.create": "true", "insert.mode": "upsert", "pk.mode": "record_key",
             "delete.enabled": "true"}
    tombstone = rec(1, value_schema=None, value=None)
    run(postgres_url, props, [rec(1, "a"), rec(2, "b"), rec(3, "c")],
        [tombstone, rec(9, value_schema=None, value=None)],  # deleting a missing row is fine
        [rec(2, "b2"), rec(3, value_schema=None, value=None), rec(3, "back")])
    assert query(postgres_url, "SELECT id, name FROM orders ORDER BY id") == [
        (2, "b2"), (3, "back")]
    # delete.enabled=false: tombstones are ignored
    run(postgres_url, {"insert.mode": "upsert", "pk.mode": "record_key"},
        [rec(2, value_schema=None, value=None)])
    assert query(postgres_url, "SELECT count(*) FROM orders") == [(2,)]


def test_tombstones_for_a_table_that_does_not_exist_are_ignored(postgres_url: str) -> None:
    run(postgres_url, {"insert.mode": "upsert", "pk.mode": "record_key",
                       "delete.enabled": "true"}, [rec(1, value_schema=None, value=None)])
    assert query(postgres_url, "SELECT to_regclass('orders') IS NULL") == [(True,)]


EVERY_TYPE = (SchemaBuilder.struct().name("Every")
              .field("i8", INT8_SCHEMA).field("i16", INT16_SCHEMA).field("i32", INT32_SCHEMA)
              .field("i64", INT64_SCHEMA).field("f32", FLOAT32_SCHEMA)
              .field("f64", FLOAT64_SCHEMA).field("flag", BOOLEAN_SCHEMA)
              .field("text", STRING_SCHEMA).field("raw", BYTES_SCHEMA)
              .field("price", Decimal.schema(2)).field("day", Date.SCHEMA)
              .field("at", Time.SCHEMA).field("ts", Timestamp.SCHEMA)
              .field("maybe", OPTIONAL_STRING_SCHEMA).build())
EXPECTED_TYPES = {
    "i8": "smallint", "i16": "smallint", "i32": "integer", "i64": "bigint", "f32": "real",
    "f64": "double precision", "flag": "boolean", "text": "text", "raw": "bytea",
    "price": "numeric", "day": "date", "at": "time without time zone",
    "ts": "timestamp without time zone", "maybe": "text"}


def test_auto_create_with_every_type(postgres_url: str) -> None:
    ts = dt.datetime(2024, 2, 29, 23, 59, 58, 123000, tzinfo=dt.UTC)
    values = {"i8": -128, "i16": 32767, "i32": -2_000_000_000, "i64": 9_000_000_000_000,
              "f32": 1.5, "f64": 3.141592653589793, "flag": True, "text": "héllo 'q' \"d\"",
              "raw": b"\x00\xffbytes", "price": decimal.Decimal("-12345.67"),
              "day": dt.date(1999, 12, 31), "at": dt.time(13, 14, 15, 16000), "ts": ts,
              "maybe": None}
    value = Struct(EVERY_TYPE)
    for name, v in values.items():
        value.put(name, v)
    run(postgres_url, {"auto.create": "true", "pk.mode": "kafka"},
        [rec(None, topic="every", key=None, key_schema=None, value_schema=EVERY_TYPE,
             value=value, offset=42)])
    columns = dict(query(postgres_url, "SELECT column_name, data_type FROM "
                         "information_schema.columns WHERE table_name = 'every'"))
    assert columns == {**EXPECTED_TYPES, "__connect_topic": "text",
                       "__connect_partition": "integer", "__connect_offset": "bigint"}
    nullable = dict(query(postgres_url, "SELECT column_name, is_nullable FROM "
                          "information_schema.columns WHERE table_name = 'every'"))
    assert nullable["maybe"] == "YES" and nullable["i8"] == "NO"
    names = list(values)
    rows = query(postgres_url, "SELECT __connect_topic, __connect_partition, __connect_offset, "
                 + ", ".join(names) + " FROM every")
    assert len(rows) == 1
    assert rows[0][:3] == ("every", 0, 42)
    got = dict(zip(names, rows[0][3:], strict=True))
    # timestamp columns hold db.timezone (UTC) wall-clock time
    assert got == {**values, "ts": ts.replace(tzinfo=None)}


def test_db_timezone(postgres_url: str) -> None:
    schema = SchemaBuilder.struct().field("ts", Timestamp.SCHEMA).build()
    ts = dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.UTC)
    run(postgres_url, {"auto.create": "true", "db.timezone": "Europe/Paris"},
        [rec(None, topic="tz", value_schema=schema, value=Struct(schema).put("ts", ts))])
    assert query(postgres_url, "SELECT ts FROM tz") == [(dt.datetime(2024, 7, 1, 14, 0),)]


def test_auto_evolve(postgres_url: str) -> None:
    run(postgres_url, {"auto.create": "true"}, [rec(1, "a")])
    wider = (SchemaBuilder.struct().name("Value").field("id", INT32_SCHEMA)
             .field("name", STRING_SCHEMA).field("qty", OPTIONAL_INT32_SCHEMA)
             .field("note", OPTIONAL_STRING_SCHEMA)
             .field("level", SchemaBuilder.int32().default_value(7).build()).build())
    value = Struct(wider).put("id", 2).put("name", "b").put("note", "new").put("level", 1)
    record = rec(None, value_schema=wider, value=value)
    with pytest.raises(ConnectException, match="auto-evolution is disabled"):
        run(postgres_url, {}, [record])
    run(postgres_url, {"auto.evolve": "true"}, [record])
    assert query(postgres_url, "SELECT id, name, note, level FROM orders ORDER BY id") == [
        (1, "a", None, 7), (2, "b", "new", 1)]
    required = (SchemaBuilder.struct().name("Value").field("id", INT32_SCHEMA)
                .field("name", STRING_SCHEMA).field("must", STRING_SCHEMA).build())
    with pytest.raises(ConnectException, match="not optional and does not have a default"):
        run(postgres_url, {"auto.evolve": "true"},
            [rec(None, value_schema=required,
                 value=Struct(required).put("id", 3).put("name", "c").put("must", "x"))])
    assert query(postgres_url, "SELECT count(*) FROM orders") == [(2,)]


def test_a_batch_is_one_transaction(postgres_url: str) -> None:
    execute(postgres_url, "CREATE TABLE orders (id int, name text, qty int, "
                          "xid bigint DEFAULT txid_current())")
    first = [rec(i, f"n{i}") for i in range(50)]
    second = [rec(i, f"n{i}") for i in range(50, 60)]
    # batch.size 7: the first put goes to the server in 8 statements, in one transaction
    run(postgres_url, {"batch.size": "7"}, first, second)
    assert query(postgres_url, "SELECT count(*), count(DISTINCT xid) FROM orders "
                               "WHERE id < 50") == [(50, 1)]
    assert query(postgres_url, "SELECT count(DISTINCT xid) FROM orders") == [(2,)]


def test_redelivery_leaves_the_table_unchanged_in_upsert_mode(postgres_url: str) -> None:
    props = {"auto.create": "true", "insert.mode": "upsert", "pk.mode": "record_key",
             "delete.enabled": "true"}
    batch = [rec(1, "a"), rec(2, "b"), rec(1, "a2", 5), rec(3, "c"),
             rec(2, value_schema=None, value=None)]
    run(postgres_url, props, batch)
    before = query(postgres_url, "SELECT * FROM orders ORDER BY id")
    assert before == [(1, "a2", 5), (3, "c", None)]
    # the same records again (a rewound consumer), whole and from the middle
    run(postgres_url, props, batch, batch[2:], batch[:3] + batch[3:])
    assert query(postgres_url, "SELECT * FROM orders ORDER BY id") == before


def test_redelivery_with_kafka_keys_in_insert_mode(postgres_url: str) -> None:
    props = {"auto.create": "true", "pk.mode": "kafka"}
    batch = [rec(i, f"n{i}", offset=100 + i) for i in range(5)]
    run(postgres_url, props, batch)
    run(postgres_url, props, batch[1:], batch)
    assert query(postgres_url, "SELECT count(*), min(__connect_offset), max(__connect_offset) "
                               "FROM orders") == [(5, 100, 104)]


def test_bad_data_goes_to_the_errant_record_reporter(postgres_url: str) -> None:
    execute(postgres_url, "CREATE TABLE orders (id int PRIMARY KEY, name varchar(3), "
                          "qty int CHECK (qty >= 0))")
    batch = [rec(1, "ok"), rec(2, "too long"), rec(3, "ok", -1), rec(4, "ok", 4)]
    reporter = Reporter()
    run(postgres_url, {"errors.tolerance": "all"}, batch, context=Context(reporter))
    assert query(postgres_url, "SELECT id FROM orders ORDER BY id") == [(1,), (4,)]
    assert [r.key.get("id") for r, _ in reporter.reported] == [2, 3]
    assert [getattr(e, "sqlstate", None) for _, e in reporter.reported] == ["22001", "23514"]


def test_insert_mode_fails_on_a_duplicate_key(postgres_url: str) -> None:
    """insert.mode=insert with record keys is a plain INSERT, as the JDBC sink's: a key written
    again is bad data, the task fails (tolerance none) or the record is reported (all)."""
    props = {"auto.create": "true", "pk.mode": "record_key"}
    run(postgres_url, props, [rec(1, "first"), rec(2, "two")])
    with pytest.raises(ConnectException, match="could not be written"):
        run(postgres_url, props, [rec(3, "three"), rec(1, "again")])
    assert query(postgres_url, "SELECT id, name FROM orders ORDER BY id") == [
        (1, "first"), (2, "two")]  # the failed batch rolled back whole
    reporter = Reporter()
    run(postgres_url, {**props, "errors.tolerance": "all"},
        [rec(3, "three"), rec(1, "again"), rec(4, "four"), rec(4, "dup")],
        context=Context(reporter))
    assert query(postgres_url, "SELECT id, name FROM orders ORDER BY id") == [
        (1, "first"), (2, "two"), (3, "three"), (4, "four")]
    assert [(r.key.get("id"), r.value.get("name")) for r, _ in reporter.reported] == [
        (1, "again"), (4, "dup")]
    assert {getattr(e, "sqlstate", None) for _, e in reporter.reported} == {"23505"}


def test_bad_records_are_reported_once_when_the_batch_is_retried(postgres_url: str) -> None:
    """A batch with a record that cannot become a row fails transiently (its connection is
    terminated while it waits for a lock) and is redelivered: the bad record reaches the
    reporter once, after the batch committed."""
    props = {**jdbc(postgres_url), "auto.create": "true", "insert.mode": "upsert",
             "pk.mode": "record_key", "errors.tolerance": "all"}
    reporter = Reporter()
    bad = rec(None, topic="orders", key=Struct(KEY).put("id", 9), value_schema=None,
              value="not a struct")
    batch = [rec(2, "b"), bad, rec(3, "c")]

    async def body() -> None:
        task = PostgresSinkTask()
        task.initialize(Context(reporter))
        task.start(props)
        try:
            await task.put([rec(1, "a")])
            locker = await asyncpg.connect(postgres_url)
            lock = locker.transaction()
            await lock.start()
            await locker.execute("LOCK TABLE orders IN EXCLUSIVE MODE")
            put = asyncio.ensure_future(task.put(batch))
            waiting: list[Any] = []
            for _ in range(200):
                waiting = await locker.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()")
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting, "the batch never waited for the lock"
            await locker.execute("SELECT pg_terminate_backend($1)", waiting[0]["pid"])
            with pytest.raises(RetriableException):
                await put
            await lock.rollback()
            await locker.close()
            assert reporter.reported == []  # nothing committed, nothing reported yet
            await task.put(batch)  # the worker's redelivery
        finally:
            await task.stop()

    asyncio.run(body())
    assert query(postgres_url, "SELECT id FROM orders ORDER BY id") == [(1,), (2,), (3,)]
    assert [r.kafka_offset for r, _ in reporter.reported] == [bad.kafka_offset]


def test_bad_data_without_tolerance_fails_the_whole_batch(postgres_url: str) -> None:
    execute(postgres_url, "CREATE TABLE orders (id int PRIMARY KEY, name varchar(3), qty int)")
    reporter = Reporter()
    with pytest.raises(ConnectException, match="could not be written"):
        run(postgres_url, {}, [rec(1, "ok"), rec(2, "too long"), rec(3, "ok")],
            context=Context(reporter))
    assert query(postgres_url, "SELECT count(*) FROM orders") == [(0,)]
    assert reporter.reported == []


def test_connection_errors_are_retriable_then_fatal() -> None:
    from strom.testing.postgres import free_port
    context = Context()
    props = {"connection.url": f"jdbc:postgresql://127.0.0.1:{free_port()}/db",
             "max.retries": "2", "retry.backoff.ms": "1234"}

    async def body() -> list[type[BaseException]]:
        task = PostgresSinkTask()
        task.initialize(context)
        task.start(props)
        raised = []
        for _ in range(3):
            try:
                await task.put([rec(1, "a")])
            except Exception as error:
                raised.append(type(error))
        await task.stop()
        return raised
    assert asyncio.run(body()) == [RetriableException, RetriableException, ConnectException]
    assert context.timeout_ms == 1234


def test_a_lost_connection_is_retried(postgres_url: str) -> None:
    props = {**jdbc(postgres_url), "auto.create": "true", "insert.mode": "upsert",
             "pk.mode": "record_key"}

    async def body() -> None:
        task = PostgresSinkTask()
        task.initialize(Context())
        task.start(props)
        await task.put([rec(1, "a")])
        killer = await asyncpg.connect(postgres_url)
        await killer.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE pid <> pg_backend_pid() AND datname = current_database()")
        await killer.close()
        # Either the loss is seen at once (a reconnection) or the put raises
        # RetriableException and the worker's redelivery reconnects.
        for _ in range(3):
            try:
                await task.put([rec(2, "b")])
                break
            except RetriableException:
                continue
        await task.stop()
    asyncio.run(body())
    assert query(postgres_url, "SELECT id FROM orders ORDER BY id") == [(1,), (2,)]


def test_schemaless_values_into_an_existing_table(postgres_url: str) -> None:
    execute(postgres_url, "CREATE TABLE events (id bigint PRIMARY KEY, name text, "
                          "at timestamp, amount numeric, doc jsonb, ok boolean)")
    props = {"insert.mode": "upsert", "pk.mode": "record_value", "pk.fields": "id"}
    values = [{"id": 1, "name": "a", "at": "2024-01-02T03:04:05Z", "amount": 1.25,
               "doc": {"k": [1, 2]}, "ok": True},
              {"id": 2, "name": None, "at": 1_700_000_000_000, "amount": 3, "doc": None},
              {"id": 1, "name": "a2"}]
    run(postgres_url, props, [rec(None, topic="events", key=None, key_schema=None,
                                  value_schema=None, value=v) for v in values])
    assert query(postgres_url, "SELECT id, name, at, amount, doc::text, ok FROM events "
                               "ORDER BY id") == [
        (1, "a2", dt.datetime(2024, 1, 2, 3, 4, 5), decimal.Decimal("1.25"),
         '{"k": [1, 2]}', True),
        (2, None, dt.datetime(2023, 11, 14, 22, 13, 20), decimal.Decimal(3), None, None)]


def test_auto_create_refuses_schemaless_values(postgres_url: str) -> None:
    with pytest.raises(ConnectException, match=r"auto\.create needs schemas"):
        run(postgres_url, {"auto.create": "true"},
            [rec(None, topic="nope", key=None, key_schema=None, value_schema=None,
                 value={"id": 1})])
    with pytest.raises(ConnectException, match="missing and auto-creation is disabled"):
        run(postgres_url, {}, [rec(1, "a")])


def test_fields_include_list(postgres_url: str) -> None:
    run(postgres_url, {"auto.create": "true", "insert.mode": "upsert",
                       "pk.mode": "record_key", "fields.include.list": "name"},
        [rec(1, "a", 5)])
    assert query(postgres_url, "SELECT column_name FROM information_schema.columns WHERE "
                               "table_name = 'orders' ORDER BY ordinal_position") == [
        ("id",), ("name",)]


# ---------------------------------------------------------------------------------------------
# End to end: a topic of JSON records with schemas -> the standalone worker -> a table


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    from tests.integration.group_clients import GROUP_BROKER_SETTINGS
    return dict(GROUP_BROKER_SETTINGS)


ROW = (SchemaBuilder.struct().name("cdc.public.items.Value").optional()
       .field("id", INT32_SCHEMA).field("name", STRING_SCHEMA)
       .field("price", Decimal.builder(2).optional().build()).build())
ENVELOPE = (SchemaBuilder.struct().name("cdc.public.items.Envelope")
            .field("before", ROW).field("after", ROW).field("op", STRING_SCHEMA)
            .field("ts_ms", INT64_SCHEMA).build())


def _json(schema: Schema | None, value: Any) -> bytes | None:
    from strom.connect.converters.json_converter import JsonConverter
    converter = JsonConverter()
    converter.configure({"schemas.enable": "true"}, False)
    return converter.from_connect_data("t", schema, value)


def _change(op: str, id_: int, name: str | None = None, price: str | None = None,
            before: tuple[str, str | None] | None = None) -> dict[str, Any]:
    def item(n: str, p: str | None) -> Struct:
        return (Struct(ROW).put("id", id_).put("name", n)
                .put("price", decimal.Decimal(p) if p is not None else None))
    value = (Struct(ENVELOPE).put("op", op).put("ts_ms", 1)
             .put("before", item(*before) if before else None)
             .put("after", item(name, price) if name is not None else None))
    return {"key": _json(KEY, Struct(KEY).put("id", id_)), "value": _json(ENVELOPE, value)}


def _tombstone(id_: int) -> dict[str, Any]:
    return {"key": _json(KEY, Struct(KEY).put("id", id_)), "value": None}


def _rows(url: str, sql: str) -> list[tuple[Any, ...]] | None:
    try:
        return query(url, sql)
    except asyncpg.UndefinedTableError:
        return None


def test_end_to_end_cdc_topic_to_table(broker: Any, postgres_url: str, tmp_path: Any) -> None:
    from tests.integration.conftest import produce_all, producer, unique_name
    from tests.integration.connect_worker import ConnectWorker, wait_for
    topic, name = unique_name("cdc"), unique_name("pgsink")
    delivered = produce_all(producer(broker.bootstrap_servers), topic, [
        _change("r", 1, "one", "1.50"), _change("c", 2, "two", None),
        _change("u", 1, "uno", "1.75", before=("one", "1.50")),
        _change("d", 2, before=("two", None)), _tombstone(2),
        _change("c", 3, "three", "3.00")])
    assert not delivered.failed
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": "org.apache.kafka.connect.json.JsonConverter",
             "value.converter": "org.apache.kafka.connect.json.JsonConverter",
             "offset.flush.interval.ms": "200"}
    config = {"connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
              "tasks.max": "1", "topics": topic, **jdbc(postgres_url),
              "table.name.format": "items", "insert.mode": "upsert", "pk.mode": "record_key",
              "delete.enabled": "true", "auto.create": "true",
              "transforms": "unwrap",
              "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
              "transforms.unwrap.drop.tombstones": "false"}
    with ConnectWorker(props) as worker:
        code, body = worker.request("POST", "/connectors", {"name": name, "config": config})
        assert code == 201, body
        expected = [(1, "uno", decimal.Decimal("1.75")), (3, "three", decimal.Decimal("3.00"))]
        wait_for(lambda: _rows(postgres_url, "SELECT id, name, price FROM items ORDER BY id")
                 == expected, what="the table to match the topic")
        code, status = worker.request("GET", f"/connectors/{name}/status")
        assert status["tasks"][0]["state"] == "RUNNING", status
        # more changes while it runs
        produce_all(producer(broker.bootstrap_servers), topic, [
            _change("u", 3, "tres", None, before=("three", "3.00")),
            _change("d", 1, before=("uno", "1.75")), _tombstone(1)])
        wait_for(lambda: _rows(postgres_url, "SELECT id, name, price FROM items ORDER BY id")
                 == [(3, "tres", None)], what="the updates and deletes")
        # Rewind the sink's consumer group (KIP-875: stop, reset the offsets, resume): the
        # whole topic is written again, and the table ends as it was.
        [(xmin,)] = query(postgres_url, "SELECT xmin::text FROM items")
        assert worker.request("PUT", f"/connectors/{name}/stop")[0] == 204
        code, body = worker.request("DELETE", f"/connectors/{name}/offsets")
        assert code == 200, body
        assert worker.request("PUT", f"/connectors/{name}/resume")[0] == 202
        wait_for(lambda: query(postgres_url, "SELECT id, name, price, xmin::text <> $1 "
                               "FROM items ORDER BY id", xmin) == [(3, "tres", None, True)],
                 what="the redelivered topic rewritten to the same table")


def test_end_to_end_bad_rows_go_to_the_dead_letter_queue(broker: Any, postgres_url: str
                                                         ) -> None:
    from tests.integration.conftest import consume_partitions, produce_all, producer, unique_name
    from tests.integration.connect_worker import ConnectWorker, wait_for
    execute(postgres_url, "CREATE TABLE target (id int PRIMARY KEY, name varchar(5), "
                          "qty int)")
    topic, name, dlq = unique_name("in"), unique_name("pgsink"), unique_name("dlq")
    schema_value = VALUE

    def record(id_: int, text: str) -> dict[str, Any]:
        return {"key": _json(KEY, Struct(KEY).put("id", id_)),
                "value": _json(schema_value, Struct(VALUE).put("id", id_).put("name", text))}
    produce_all(producer(broker.bootstrap_servers), topic,
                [record(1, "ok"), record(2, "far too long"), record(3, "fine")])
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": "org.apache.kafka.connect.json.JsonConverter",
             "value.converter": "org.apache.kafka.connect.json.JsonConverter",
             "offset.flush.interval.ms": "200"}
    config = {"connector.class": "PostgresSink", "topics": topic, **jdbc(postgres_url),
              "table.name.format": "target", "insert.mode": "upsert",
              "pk.mode": "record_key", "errors.tolerance": "all",
              "errors.deadletterqueue.topic.name": dlq,
              "errors.deadletterqueue.topic.replication.factor": "1",
              "errors.deadletterqueue.context.headers.enable": "true"}
    with ConnectWorker(props) as worker:
        code, body = worker.request("POST", "/connectors", {"name": name, "config": config})
        assert code == 201, body
        wait_for(lambda: _rows(postgres_url, "SELECT id FROM target ORDER BY id")
                 == [(1,), (3,)], what="the good rows")
        messages = consume_partitions(broker.bootstrap_servers, dlq, expected=1)
    assert len(messages) == 1
    headers = dict(messages[0].headers() or [])
    assert headers["__connect.errors.stage"] == b"TASK_PUT"
    assert headers["__connect.errors.offset"] == b"1"
    assert b"StringDataRightTruncation" in headers["__connect.errors.exception.class.name"]


def test_end_to_end_insert_mode_duplicate_keys(broker: Any, postgres_url: str) -> None:
    """insert.mode=insert, pk.mode=record_key through the worker: a key produced twice fails
    the task under errors.tolerance=none, and goes to the dead letter queue with the error
    headers under errors.tolerance=all."""
    from tests.integration.conftest import consume_partitions, produce_all, producer, unique_name
    from tests.integration.connect_worker import ConnectWorker, wait_for
    execute(postgres_url, "CREATE TABLE strict (id int PRIMARY KEY, name text, qty int)")
    execute(postgres_url, "CREATE TABLE lenient (id int PRIMARY KEY, name text, qty int)")
    topic, dlq = unique_name("dups"), unique_name("dlq")

    def record(id_: int, text: str) -> dict[str, Any]:
        return {"key": _json(KEY, Struct(KEY).put("id", id_)),
                "value": _json(VALUE, Struct(VALUE).put("id", id_).put("name", text))}
    produce_all(producer(broker.bootstrap_servers), topic,
                [record(1, "one"), record(2, "two"), record(1, "again"), record(3, "three")])
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": "org.apache.kafka.connect.json.JsonConverter",
             "value.converter": "org.apache.kafka.connect.json.JsonConverter",
             "offset.flush.interval.ms": "200"}
    base = {"connector.class": "PostgresSink", "topics": topic, **jdbc(postgres_url),
            "insert.mode": "insert", "pk.mode": "record_key"}
    with ConnectWorker(props) as worker:
        code, body = worker.request("POST", "/connectors", {"name": "strict", "config": {
            **base, "table.name.format": "strict"}})
        assert code == 201, body
        code, body = worker.request("POST", "/connectors", {"name": "lenient", "config": {
            **base, "table.name.format": "lenient", "errors.tolerance": "all",
            "errors.deadletterqueue.topic.name": dlq,
            "errors.deadletterqueue.topic.replication.factor": "1",
            "errors.deadletterqueue.context.headers.enable": "true"}})
        assert code == 201, body

        def strict_state() -> str | None:
            tasks = worker.request("GET", "/connectors/strict/status")[1].get("tasks") or []
            return str(tasks[0]["state"]) if tasks else None
        wait_for(lambda: strict_state() == "FAILED", what="the strict task failed")
        wait_for(lambda: _rows(postgres_url, "SELECT id, name FROM lenient ORDER BY id")
                 == [(1, "one"), (2, "two"), (3, "three")], what="the lenient rows")
        messages = consume_partitions(broker.bootstrap_servers, dlq, expected=1)
        time.sleep(0.5)
        messages = consume_partitions(broker.bootstrap_servers, dlq, expected=1)
        status = worker.request("GET", "/connectors/lenient/status")[1]
        assert status["tasks"][0]["state"] == "RUNNING", status
    # the failing batch rolled back (whatever batches the consumer made, "again" is not in)
    assert _rows(postgres_url, "SELECT name FROM strict WHERE id = 1") in ([], [("one",)])
    assert len(messages) == 1
    headers = dict(messages[0].headers() or [])
    assert headers["__connect.errors.stage"] == b"TASK_PUT"
    assert headers["__connect.errors.offset"] == b"2"
    assert b"UniqueViolation" in headers["__connect.errors.exception.class.name"]
