"""The PostgreSQL source connectors against a real PostgreSQL (wal_level=logical) and an
embedded broker, run by an in-process standalone worker: CDC snapshot then stream with
before/after images and tombstones, a worker restart resuming from the stored LSN (changes
made while it was down arrive, the snapshot is not repeated), concurrent writers (every change
once, in commit order per key), and the query mode (incrementing, timestamp+incrementing)
resuming from its offsets."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from strom.testing import EmbeddedBroker
from strom.testing.postgres import PASSWORD, USER, PostgresServer, PostgresUnavailable
from tests.integration.conftest import consume_partitions
from tests.integration.connect_worker import ConnectWorker, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

pytestmark = pytest.mark.slow

LOGICAL = {"wal_level": "logical", "max_replication_slots": "20", "max_wal_senders": "20"}


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer(fsync=False, settings=LOGICAL)
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server


class Db:
    """A new database of the test's own, with a psycopg2 connection (autocommit)."""

    def __init__(self, pg: PostgresServer) -> None:
        self.pg = pg
        self.name = pg.new_database().rsplit("/", 1)[1]
        self.conn = self.connect()

    def connect(self) -> Any:
        conn = psycopg2.connect(host="127.0.0.1", port=self.pg.port, user=USER,
                                password=PASSWORD, dbname=self.name)
        conn.autocommit = True
        return conn

    def run(self, *statements: str) -> None:
        with self.conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)

    def scalar(self, sql: str) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return None if row is None else row[0]

    def cdc_config(self, prefix: str, **extra: str) -> dict[str, str]:
        return {"connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "tasks.max": "1", "database.hostname": "127.0.0.1",
                "database.port": str(self.pg.port), "database.user": USER,
                "database.password": PASSWORD, "database.dbname": self.name,
                "topic.prefix": prefix, "slot.name": f"slot_{uuid.uuid4().hex[:10]}",
                "publication.name": f"pub_{prefix}", **extra}

    def jdbc_config(self, prefix: str, **extra: str) -> dict[str, str]:
        return {"connector.class": "io.confluent.connect.jdbc.JdbcSourceConnector",
                "tasks.max": "1",
                "connection.url": f"jdbc:postgresql://127.0.0.1:{self.pg.port}/{self.name}",
                "connection.user": USER, "connection.password": PASSWORD,
                "topic.prefix": prefix, "poll.interval.ms": "200", **extra}

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def db(pg: PostgresServer) -> Iterator[Db]:
    database = Db(pg)
    yield database
    database.close()


def worker(broker: EmbeddedBroker, offsets: Path) -> ConnectWorker:
    return ConnectWorker({
        "bootstrap.servers": broker.bootstrap_servers,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "value.converter.decimal.format": "NUMERIC",
        "offset.storage.file.filename": str(offsets),
        "offset.flush.interval.ms": "200"})


def create(w: ConnectWorker, name: str, config: dict[str, str]) -> None:
    code, body = w.request("POST", "/connectors", {"name": name, "config": config})
    assert code == 201, body
    wait_for(lambda: w.request("GET", f"/connectors/{name}/status")[1]["tasks"]
             and w.request("GET", f"/connectors/{name}/status")[1]["tasks"][0]["state"]
             == "RUNNING", what="the task running")


def events(broker: EmbeddedBroker, topic: str, expected: int) -> list[tuple[Any, Any]]:
    messages = consume_partitions(broker.bootstrap_servers, topic, expected=expected)
    assert len(messages) >= expected, f"{len(messages)} of {expected} on {topic}"
    return [(json.loads(m.key()) if m.key() else None,
             json.loads(m.value()) if m.value() is not None else None) for m in messages]


def ops(batch: list[tuple[Any, Any]]) -> list[tuple[Any, str | None]]:
    return [(k["id"] if k else None, v["op"] if v else None) for k, v in batch]


ITEMS = ("CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), "
         "at timestamptz, doc jsonb, ok bool, day date, raw bytea)",
         "ALTER TABLE items REPLICA IDENTITY FULL")


def test_snapshot_then_stream(broker: EmbeddedBroker, db: Db, tmp_path: Path) -> None:
    db.run(*ITEMS, "INSERT INTO items VALUES (1, 'one', 1.5, '2024-01-02 03:04:05+00', "
           "'{\"a\": 1}', true, '2024-01-02', '\\x00ff'), (2, 'two', 2, NULL, NULL, false, "
           "NULL, NULL), (3, 'three', 3.25, NULL, NULL, NULL, NULL, NULL)")
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.public.items"
    config = db.cdc_config(prefix)
    with worker(broker, tmp_path / "offsets") as w:
        create(w, "cdc", config)
        snapshot = events(broker, topic, 3)
        consistent = db.scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                               f"WHERE slot_name = '{config['slot.name']}'")
        assert ops(snapshot) == [(1, "r"), (2, "r"), (3, "r")]
        first = snapshot[0][1]
        assert first["before"] is None
        assert first["after"] == {"id": 1, "name": "one", "price": 1.5,
                                  "at": 1704164645000, "doc": '{"a": 1}', "ok": True,
                                  "day": 19724, "raw": "AP8="}
        assert first["source"]["snapshot"] == "true"
        assert snapshot[2][1]["source"]["snapshot"] == "last"
        assert first["source"]["db"] == db.name and first["source"]["table"] == "items"
        db.run("INSERT INTO items (id, name) VALUES (4, 'four')",
               "UPDATE items SET name = 'ONE', price = 9.99 WHERE id = 1",
               "DELETE FROM items WHERE id = 2")
        batch = events(broker, topic, 7)[3:]
        assert ops(batch) == [(4, "c"), (1, "u"), (2, "d"), (2, None)]
        _, create_event = batch[0]
        assert create_event["before"] is None and create_event["after"]["name"] == "four"
        _, update = batch[1]
        assert update["before"]["name"] == "one" and update["before"]["price"] == 1.5
        assert update["after"]["name"] == "ONE" and update["after"]["price"] == 9.99
        assert update["source"]["lsn"] > 0 and update["source"]["txId"] > 0
        _, delete = batch[2]
        assert delete["before"]["name"] == "two" and delete["after"] is None
        assert batch[3] == ({"id": 2}, None)  # the tombstone
        # The slot is confirmed (only) up to what Connect committed: past the snapshot now.
        slot_query = ("SELECT confirmed_flush_lsn > '{}'::pg_lsn FROM pg_replication_slots "
                      "WHERE slot_name = '{}'").format(consistent, config["slot.name"])
        wait_for(lambda: db.scalar(slot_query), what="the slot confirmed past its start")


def test_restart_resumes_from_the_stored_lsn(broker: EmbeddedBroker, db: Db,
                                             tmp_path: Path) -> None:
    db.run(*ITEMS, "INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b')")
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.public.items"
    config = db.cdc_config(prefix)
    offsets = tmp_path / "offsets"
    with worker(broker, offsets) as w:
        create(w, "cdc", config)
        events(broker, topic, 2)
        db.run("INSERT INTO items (id, name) VALUES (3, 'c')")
        events(broker, topic, 3)
        time.sleep(1)  # offsets flushed (offset.flush.interval.ms=200)
    # Changes while the worker is down.
    db.run("INSERT INTO items (id, name) VALUES (4, 'd')",
           "UPDATE items SET name = 'A' WHERE id = 1",
           "DELETE FROM items WHERE id = 2",
           "BEGIN; INSERT INTO items (id, name) VALUES (5, 'e'); "
           "UPDATE items SET name = 'E' WHERE id = 5; COMMIT")
    with worker(broker, offsets) as w:
        create(w, "cdc", config)
        batch = events(broker, topic, 9)
        assert ops(batch) == [(1, "r"), (2, "r"), (3, "c"), (4, "c"), (1, "u"), (2, "d"),
                              (2, None), (5, "c"), (5, "u")]
        assert batch[4][1]["after"]["name"] == "A"
        assert batch[8][1]["after"]["name"] == "E"
        time.sleep(1)
        # Nothing more (no repeated snapshot, no duplicates).
        assert len(events(broker, topic, 9)) == 9


def test_concurrent_writers(broker: EmbeddedBroker, db: Db, tmp_path: Path) -> None:
    db.run("CREATE TABLE counters (id int PRIMARY KEY, v int NOT NULL)",
           "ALTER TABLE counters REPLICA IDENTITY FULL")
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.public.counters"
    writers, keys, updates = 4, 10, 4
    with worker(broker, tmp_path / "offsets") as w:
        create(w, "cdc", db.cdc_config(prefix, **{"snapshot.mode": "never"}))

        def write(n: int) -> None:
            conn = db.connect()
            try:
                with conn.cursor() as cur:
                    for k in range(n * keys, (n + 1) * keys):
                        cur.execute("INSERT INTO counters VALUES (%s, 0)", (k,))
                    for v in range(1, updates + 1):
                        for k in range(n * keys, (n + 1) * keys):
                            cur.execute("UPDATE counters SET v = %s WHERE id = %s", (v, k))
            finally:
                conn.close()

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = writers * keys * (1 + updates)
        batch = events(broker, topic, total)
        time.sleep(0.5)
        batch = events(broker, topic, total)
        assert len(batch) == total
        per_key: dict[int, list[int]] = defaultdict(list)
        lsns = []
        for key, value in batch:
            per_key[key["id"]].append(value["after"]["v"])
            lsns.append(value["source"]["lsn"])
        assert per_key == {k: list(range(updates + 1)) for k in range(writers * keys)}


def test_query_incrementing_resumes(broker: EmbeddedBroker, db: Db, tmp_path: Path) -> None:
    db.run("CREATE TABLE orders (id serial PRIMARY KEY, item text, amount numeric(8,2))",
           "INSERT INTO orders (item, amount) VALUES ('a', 1), ('b', 2), ('c', 3)")
    prefix = f"jdbc{uuid.uuid4().hex[:8]}-"
    topic = f"{prefix}orders"
    config = db.jdbc_config(prefix, **{"mode": "incrementing",
                                       "incrementing.column.name": "id",
                                       "table.whitelist": "orders", "batch.max.rows": "2"})
    offsets = tmp_path / "offsets"
    with worker(broker, offsets) as w:
        create(w, "jdbc", config)
        assert [v["id"] for _, v in events(broker, topic, 3)] == [1, 2, 3]
        db.run("INSERT INTO orders (item, amount) VALUES ('d', 4.5), ('e', 5)")
        rows = events(broker, topic, 5)
        assert [v["id"] for _, v in rows] == [1, 2, 3, 4, 5]
        assert rows[3][1] == {"id": 4, "item": "d", "amount": 4.5}
        time.sleep(1)
        _, body = w.request("GET", "/connectors/jdbc/offsets")
        assert body["offsets"] == [{"partition": {"protocol": "1",
                                                  "table": f"{db.name}.public.orders"},
                                    "offset": {"incrementing": 5}}]
    db.run("INSERT INTO orders (item, amount) VALUES ('f', 6), ('g', 7)")
    with worker(broker, offsets) as w:
        create(w, "jdbc", config)
        rows = events(broker, topic, 7)
        time.sleep(1)
        rows = events(broker, topic, 7)
        assert [v["id"] for _, v in rows] == [1, 2, 3, 4, 5, 6, 7]


def test_query_timestamp_incrementing(broker: EmbeddedBroker, db: Db, tmp_path: Path) -> None:
    db.run("CREATE TABLE t (id serial PRIMARY KEY, v text, "
           "updated timestamp NOT NULL DEFAULT now())",
           "INSERT INTO t (v, updated) VALUES ('a', '2024-01-01 00:00:00'), "
           "('b', '2024-01-01 00:00:00'), ('c', '2024-01-01 00:00:01.5')")
    prefix = f"jdbc{uuid.uuid4().hex[:8]}-"
    topic = f"{prefix}t"
    config = db.jdbc_config(prefix, **{"mode": "timestamp+incrementing",
                                       "incrementing.column.name": "id",
                                       "timestamp.column.name": "updated",
                                       "table.include.list": "t", "batch.max.rows": "1"})
    offsets = tmp_path / "offsets"
    with worker(broker, offsets) as w:
        create(w, "jdbc", config)
        assert [v["v"] for _, v in events(broker, topic, 3)] == ["a", "b", "c"]
        db.run("UPDATE t SET v = 'A', updated = '2024-01-02 00:00:00' WHERE id = 1")
        assert [v["v"] for _, v in events(broker, topic, 4)] == ["a", "b", "c", "A"]
        time.sleep(1)
        _, body = w.request("GET", "/connectors/jdbc/offsets")
        assert body["offsets"][0]["offset"] == {"incrementing": 1, "timestamp": 1704153600000,
                                                "timestamp_nanos": 0}
    db.run("UPDATE t SET v = 'B', updated = '2024-01-03 00:00:00' WHERE id = 2",
           "INSERT INTO t (v, updated) VALUES ('d', '2024-01-03 00:00:00')")
    with worker(broker, offsets) as w:
        create(w, "jdbc", config)
        events(broker, topic, 6)
        time.sleep(1)
        assert [v["v"] for _, v in events(broker, topic, 6)] == ["a", "b", "c", "A", "B", "d"]


def test_concurrent_writers_across_a_worker_restart(broker: EmbeddedBroker, db: Db,
                                                    tmp_path: Path) -> None:
    """Writers keep committing while the worker stops and starts again: every change arrives,
    in commit order per key, none twice (a graceful stop commits the offsets and the slot)."""
    db.run("CREATE TABLE counters (id int PRIMARY KEY, v int NOT NULL)",
           "ALTER TABLE counters REPLICA IDENTITY FULL")
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.public.counters"
    config = db.cdc_config(prefix)
    offsets = tmp_path / "offsets"
    writers, keys, updates = 3, 5, 30
    def write(n: int) -> None:
        conn = db.connect()
        try:
            with conn.cursor() as cur:
                for k in range(n * keys, (n + 1) * keys):
                    cur.execute("INSERT INTO counters VALUES (%s, 0)", (k,))
                for v in range(1, updates + 1):
                    # All the writer's keys in one transaction: several events each.
                    cur.execute("BEGIN")
                    for k in range(n * keys, (n + 1) * keys):
                        cur.execute("UPDATE counters SET v = %s WHERE id = %s", (v, k))
                    cur.execute("COMMIT")
                    time.sleep(0.01)
        finally:
            conn.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    with worker(broker, offsets) as w:
        create(w, "cdc", config)
        for thread in threads:
            thread.start()
        time.sleep(0.3)
    time.sleep(0.3)  # writes while the worker is down
    with worker(broker, offsets) as w:
        create(w, "cdc", config)
        for thread in threads:
            thread.join()
        total = writers * keys * (1 + updates)
        batch = events(broker, topic, total)
        time.sleep(1)
        batch = events(broker, topic, total)
    per_key: dict[int, list[int]] = defaultdict(list)
    for key, value in batch:
        assert value["op"] in ("c", "u"), value
        per_key[key["id"]].append(value["after"]["v"])
    assert per_key == {k: list(range(updates + 1)) for k in range(writers * keys)}
    assert len(batch) == total


def test_query_mode_timestamp_with_a_query(broker: EmbeddedBroker, db: Db,
                                           tmp_path: Path) -> None:
    db.run("CREATE TABLE events (id int, kind text, n numeric, at timestamptz NOT NULL)",
           "INSERT INTO events VALUES (1, 'x', 1.25, '2024-01-01 00:00:00+00'), "
           "(2, 'y', 2, '2024-01-01 00:00:01+00'), (3, 'x', 3, '2024-01-01 00:00:02+00')")
    topic = f"jdbcq{uuid.uuid4().hex[:8]}"
    config = db.jdbc_config(topic, **{"mode": "timestamp", "timestamp.column.name": "at",
                                      "query": "SELECT id, n, at FROM events "
                                               "WHERE kind = 'x'"})
    offsets = tmp_path / "offsets"
    with worker(broker, offsets) as w:
        create(w, "jdbc", config)
        rows = events(broker, topic, 2)
        assert [v for _, v in rows] == [{"id": 1, "n": "1.25", "at": 1704067200000},
                                        {"id": 3, "n": "3", "at": 1704067202000}]
        time.sleep(1)
        _, body = w.request("GET", "/connectors/jdbc/offsets")
        assert body["offsets"] == [{"partition": {"query": "query"},
                                    "offset": {"timestamp": 1704067202000,
                                               "timestamp_nanos": 0}}]
    db.run("INSERT INTO events VALUES (4, 'x', 4, '2024-01-01 00:00:03.25+00'), "
           "(5, 'y', 5, '2024-01-01 00:00:04+00')")
    with worker(broker, offsets) as w:
        create(w, "jdbc", config)
        events(broker, topic, 3)
        time.sleep(1)
        assert [v["id"] for _, v in events(broker, topic, 3)] == [1, 3, 4]


def test_slot_dropped_on_stop_and_debezium_names(broker: EmbeddedBroker, db: Db,
                                                 tmp_path: Path) -> None:
    db.run(*ITEMS, "INSERT INTO items (id, name) VALUES (1, 'a')")
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    config = db.cdc_config("", **{"database.server.name": prefix,
                                  "snapshot.mode": "when_needed",
                                  "slot.drop.on.stop": "true",
                                  "publication.name": f"pub_{prefix}"})
    del config["topic.prefix"]
    slot = config["slot.name"]
    count = f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    with worker(broker, tmp_path / "offsets") as w:
        create(w, "cdc", config)
        assert ops(events(broker, f"{prefix}.public.items", 1)) == [(1, "r")]
        assert db.scalar(count) == 1
        code, _ = w.request("DELETE", "/connectors/cdc")
        assert code == 204
        wait_for(lambda: db.scalar(count) == 0, what="the slot dropped")


def test_a_broken_replication_connection_reconnects(broker: EmbeddedBroker, db: Db,
                                                    tmp_path: Path) -> None:
    """The walsender is terminated (as a server restart or wal_sender_timeout would): the task
    reconnects and streams on from the slot, nothing lost and nothing twice."""
    db.run(*ITEMS)
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.public.items"
    config = db.cdc_config(prefix, **{"snapshot.mode": "never"})
    terminate = ("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                 f"WHERE slot_name = '{config['slot.name']}' AND active_pid IS NOT NULL")
    with worker(broker, tmp_path / "offsets") as w:
        create(w, "cdc", config)
        db.run("INSERT INTO items (id, name) VALUES (1, 'a')")
        events(broker, topic, 1)
        db.run("INSERT INTO items (id, name) VALUES (2, 'b')")
        events(broker, topic, 2)
        wait_for(lambda: db.scalar(terminate), what="the walsender terminated")
        db.run("INSERT INTO items (id, name) VALUES (3, 'c')",
               "UPDATE items SET name = 'A' WHERE id = 1")
        events(broker, topic, 4)
        time.sleep(1)
        assert ops(events(broker, topic, 4)) == [(1, "c"), (2, "c"), (3, "c"), (1, "u")]
        _, status = w.request("GET", "/connectors/cdc/status")
        assert status["tasks"][0]["state"] == "RUNNING"


def test_an_idle_slot_follows_the_wal(broker: EmbeddedBroker, db: Db, tmp_path: Path) -> None:
    """Changes to tables the connector does not capture move the slot too once everything
    polled is committed, so the server does not keep WAL for an idle connector."""
    db.run(*ITEMS, "CREATE TABLE other (id int PRIMARY KEY)")
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    config = db.cdc_config(prefix, **{"table.include.list": "public\\.items",
                                      "snapshot.mode": "never"})
    confirmed = ("SELECT confirmed_flush_lsn >= '{}'::pg_lsn FROM pg_replication_slots "
                 "WHERE slot_name = '{}'")
    with worker(broker, tmp_path / "offsets") as w:
        create(w, "cdc", config)
        db.run("INSERT INTO items (id, name) VALUES (1, 'a')")
        events(broker, f"{prefix}.public.items", 1)
        db.run(*(f"INSERT INTO other VALUES ({n})" for n in range(20)))
        target = db.scalar("SELECT pg_current_wal_lsn()::text")
        wait_for(lambda: db.scalar(confirmed.format(target, config["slot.name"])),
                 what="the slot confirmed past the other table's changes")
        db.run("INSERT INTO items (id, name) VALUES (2, 'b')")
        assert ops(events(broker, f"{prefix}.public.items", 2)) == [(1, "c"), (2, "c")]


def test_filtered_publication_and_snapshot_always(broker: EmbeddedBroker, db: Db,
                                                  tmp_path: Path) -> None:
    db.run("CREATE TABLE a (id int PRIMARY KEY)", "CREATE TABLE b (id int PRIMARY KEY)",
           "INSERT INTO a VALUES (1)", "INSERT INTO b VALUES (1)")
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    config = db.cdc_config(prefix, **{"table.include.list": "public\\.(a|b)",
                                      "table.exclude.list": "public\\.b",
                                      "publication.autocreate.mode": "filtered",
                                      "snapshot.mode": "always"})
    offsets = tmp_path / "offsets"
    with worker(broker, offsets) as w:
        create(w, "cdc", config)
        assert ops(events(broker, f"{prefix}.public.a", 1)) == [(1, "r")]
        published = db.scalar("SELECT string_agg(schemaname || '.' || tablename, ',') "
                              f"FROM pg_publication_tables WHERE pubname = 'pub_{prefix}'")
        assert published == "public.a"
        db.run("INSERT INTO a VALUES (2)", "INSERT INTO b VALUES (2)")
        assert ops(events(broker, f"{prefix}.public.a", 2)) == [(1, "r"), (2, "c")]
    with worker(broker, offsets) as w:
        create(w, "cdc", config)  # snapshot.mode=always: the snapshot again
        batch = events(broker, f"{prefix}.public.a", 4)
        assert sorted(ops(batch)[2:]) == [(1, "r"), (2, "r")]
        db.run("INSERT INTO a VALUES (3)")
        assert ops(events(broker, f"{prefix}.public.a", 5))[4] == (3, "c")
        _, topics = w.request("GET", "/connectors/cdc/topics")
        assert topics == {"cdc": {"topics": [f"{prefix}.public.a"]}}  # b is excluded


ACCOUNTS = "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance bigint)"
ACCOUNT_KEYS = 40


def schema_worker(broker: EmbeddedBroker, offsets: Path) -> ConnectWorker:
    """A standalone worker whose converters keep schemas (the sink creates its table from
    them)."""
    return ConnectWorker({
        "bootstrap.servers": broker.bootstrap_servers,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "offset.storage.file.filename": str(offsets),
        "offset.flush.interval.ms": "200"})


def accounts_sink_config(target: Db, topic: str) -> dict[str, str]:
    return {"connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
            "tasks.max": "1", "topics": topic,
            "connection.url": f"jdbc:postgresql://127.0.0.1:{target.pg.port}/{target.name}",
            "connection.user": USER, "connection.password": PASSWORD,
            "table.name.format": "accounts", "auto.create": "true",
            "insert.mode": "upsert", "pk.mode": "record_key", "delete.enabled": "true",
            "transforms": "unwrap",
            "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.unwrap.drop.tombstones": "false"}


def account_rows(db: Db) -> list[tuple[Any, ...]]:
    with db.conn.cursor() as cur:
        cur.execute("SELECT id, owner, balance FROM accounts ORDER BY id")
        return [tuple(row) for row in cur.fetchall()]


def target_rows(target: Db) -> list[tuple[Any, ...]] | None:
    with target.conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.accounts')")
        row = cur.fetchone()
        if row is None or row[0] is None:
            return None
    return account_rows(target)


class Writers:
    """Threads changing random accounts (insert if absent, else update or delete) until
    stopped; each change its own transaction."""

    def __init__(self, db: Db, count: int) -> None:
        self.db = db
        self.stop = threading.Event()
        self.changes = 0
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True)
                        for n in range(count)]

    def run(self, n: int) -> None:
        rng = random.Random(n)
        conn = self.db.connect()
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    key = rng.randrange(ACCOUNT_KEYS)
                    roll = rng.random()
                    if roll < 0.15:
                        cur.execute("DELETE FROM accounts WHERE id = %s", (key,))
                    else:
                        cur.execute(
                            "INSERT INTO accounts VALUES (%s, %s, %s) ON CONFLICT (id) DO "
                            "UPDATE SET balance = accounts.balance + EXCLUDED.balance, "
                            "owner = EXCLUDED.owner",
                            (key, f"owner-{n}-{rng.randrange(1000)}", rng.randrange(100)))
                    self.changes += 1
                    time.sleep(0.002)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)
        finally:
            conn.close()

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def test_cdc_into_a_postgres_sink_across_a_worker_restart(
        broker: EmbeddedBroker, pg: PostgresServer, tmp_path: Path) -> None:
    """The issue's end-to-end case: CDC of a table under concurrent writers into a topic,
    then the PostgreSQL sink into another database (ExtractNewRecordState, upsert, delete on
    tombstones), with the worker stopped and started again in the middle: the target table
    ends equal to the source, deletes included."""
    source, target = Db(pg), Db(pg)
    try:
        source.run(ACCOUNTS, "ALTER TABLE accounts REPLICA IDENTITY FULL",
                   "INSERT INTO accounts SELECT g, 'seed', 0 FROM generate_series(0, 9) g")
        prefix = f"pg{uuid.uuid4().hex[:8]}"
        topic = f"{prefix}.public.accounts"
        offsets = tmp_path / "offsets"
        cdc = source.cdc_config(prefix)
        with Writers(source, 3) as writers:
            with schema_worker(broker, offsets) as w:
                create(w, "cdc", cdc)
                create(w, "sink", accounts_sink_config(target, topic))
                wait_for(lambda: target_rows(target), timeout=30,
                         what="the sink's first rows")
                time.sleep(1.5)
            # The worker is down; the writers go on.
            time.sleep(1.0)
            with schema_worker(broker, offsets) as w:
                create(w, "cdc", cdc)
                create(w, "sink", accounts_sink_config(target, topic))
                time.sleep(1.5)
                writers.stop.set()
                for thread in writers.threads:
                    thread.join(10)
                assert not writers.errors, writers.errors
                assert writers.changes > 100, writers.changes
                expected = account_rows(source)
                # Every key was deleted and written again at random: the end state must
                # match exactly, deletes included.
                wait_for(lambda: target_rows(target) == expected, timeout=60,
                         what="the target table equal to the source")
                assert account_rows(target) == expected
    finally:
        source.close()
        target.close()


def test_a_primary_key_change_is_a_delete_and_a_create(broker: EmbeddedBroker, db: Db,
                                                       tmp_path: Path) -> None:
    """An UPDATE of the key, as Debezium sends it: the old key's delete (header
    __debezium.newkey) and tombstone, then the new key's create (header __debezium.oldkey),
    under REPLICA IDENTITY DEFAULT (pgoutput sends the old key) and FULL (the old row)."""
    db.run("CREATE TABLE keyed (id int PRIMARY KEY, name text)",
           "CREATE TABLE full_keyed (id int PRIMARY KEY, name text)",
           "ALTER TABLE full_keyed REPLICA IDENTITY FULL")
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    with worker(broker, tmp_path / "offsets") as w:
        create(w, "cdc", db.cdc_config(prefix, **{"snapshot.mode": "never"}))
        for table in ("keyed", "full_keyed"):
            db.run(f"INSERT INTO {table} VALUES (7, 'seven')",
                   f"UPDATE {table} SET id = 42 WHERE id = 7",
                   f"UPDATE {table} SET name = 'x' WHERE id = 42")
            topic = f"{prefix}.public.{table}"
            messages = consume_partitions(broker.bootstrap_servers, topic, expected=5)
            time.sleep(0.5)
            messages = consume_partitions(broker.bootstrap_servers, topic, expected=5)
            batch = [(json.loads(m.key()), json.loads(m.value()) if m.value() else None)
                     for m in messages]
            assert ops(batch) == [(7, "c"), (7, "d"), (7, None), (42, "c"), (42, "u")]
            headers = [dict(m.headers() or []) for m in messages]
            assert headers[1] == headers[2] == {"__debezium.newkey": b'{"id":42}'}
            assert headers[3] == {"__debezium.oldkey": b'{"id":7}'}
            assert headers[0] == headers[4] == {}
            delete, create_event = batch[1][1], batch[3][1]
            assert delete["after"] is None and delete["before"]["id"] == 7
            # DEFAULT identity: the old key only; FULL: the whole old row
            assert delete["before"]["name"] == ("seven" if table == "full_keyed" else None)
            assert create_event["before"] is None
            assert create_event["after"] == {"id": 42, "name": "seven"}
            assert delete["source"]["txId"] == create_event["source"]["txId"]


def test_a_primary_key_change_leaves_no_phantom_row_in_a_sink(
        broker: EmbeddedBroker, pg: PostgresServer, tmp_path: Path) -> None:
    """CDC into the PostgreSQL sink (ExtractNewRecordState, upsert, delete on tombstones): an
    UPDATE of the key removes the old row from the target too."""
    source, target = Db(pg), Db(pg)
    try:
        source.run(ACCOUNTS, "INSERT INTO accounts VALUES (1, 'a', 10), (2, 'b', 20), "
                             "(3, 'c', 30)")
        prefix = f"pg{uuid.uuid4().hex[:8]}"
        topic = f"{prefix}.public.accounts"
        with schema_worker(broker, tmp_path / "offsets") as w:
            create(w, "cdc", source.cdc_config(prefix))
            create(w, "sink", accounts_sink_config(target, topic))
            wait_for(lambda: target_rows(target) == account_rows(source), timeout=30,
                     what="the snapshot in the target")
            source.run("UPDATE accounts SET id = 42, balance = 21 WHERE id = 2",
                       "BEGIN; UPDATE accounts SET id = id + 100 WHERE id IN (1, 3); COMMIT")
            expected = account_rows(source)
            assert [row[0] for row in expected] == [42, 101, 103]
            wait_for(lambda: target_rows(target) == expected, timeout=30,
                     what="the target equal to the source, the old keys deleted")
    finally:
        source.close()
        target.close()


def test_a_large_transaction_in_batches_across_a_restart(
        broker: EmbeddedBroker, db: Db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction of more changes than max.batch.size comes in several polls of at most
    max.batch.size records; the worker stopped in the middle of it (offsets stored for part of
    the transaction) resumes after what was delivered: every row once, in order."""
    from strom.connect.postgres.cdc import PostgresCdcSourceTask
    sizes: list[int] = []
    original = PostgresCdcSourceTask.poll

    def slow_poll(self: PostgresCdcSourceTask) -> Any:
        records = original(self)
        if records:
            sizes.append(len(records))
            time.sleep(0.15)
        return records

    monkeypatch.setattr(PostgresCdcSourceTask, "poll", slow_poll)
    db.run("CREATE TABLE bulk (id int PRIMARY KEY, v int)")
    prefix = f"pg{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.public.bulk"
    rows = 400
    config = db.cdc_config(prefix, **{"snapshot.mode": "never", "max.batch.size": "25"})
    offsets = tmp_path / "offsets"

    def stored() -> Any:
        body = w.request("GET", "/connectors/cdc/offsets")[1]
        return body["offsets"][0]["offset"] if body.get("offsets") else None

    with worker(broker, offsets) as w:
        create(w, "cdc", config)
        db.run(f"INSERT INTO bulk SELECT g, g * 2 FROM generate_series(1, {rows}) g")
        # Stopped once part of the transaction is stored (no events count: incomplete).
        wait_for(lambda: (o := stored()) is not None and "events" not in o
                 and o["event"] >= 50, timeout=30, what="part of the transaction stored")
    assert sum(sizes) < rows
    with worker(broker, offsets) as w:
        create(w, "cdc", config)
        batch = events(broker, topic, rows)
        time.sleep(1)
        batch = events(broker, topic, rows)
        assert stored()["events"] == rows
    assert [key["id"] for key, _ in batch] == list(range(1, rows + 1))
    assert all(value["op"] == "c" for _, value in batch)
    assert len(sizes) >= rows // 25 and max(sizes) <= 25, sizes
