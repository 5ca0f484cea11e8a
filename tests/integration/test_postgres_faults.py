"""The PostgreSQL engine when its database fails: PostgreSQL SIGKILLed and restarted while an
idempotent producer and a transactional producer are writing (nothing acknowledged lost,
nothing duplicated, order kept per partition, only committed transactions visible), and the
database dropped from under a running broker (retriable errors; the broker serves on)."""

from __future__ import annotations

import os
import pwd
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from strom.testing import EmbeddedBroker
from strom.testing.postgres import PostgresServer, PostgresUnavailable
from tests.integration.conftest import (
    DEADLINE_S,
    Delivered,
    consume_partitions,
    create_topic,
    producer,
    unique_name,
)
from tests.integration.test_disk_full import FILLER_BYTES, fill_until_full, mount_tmpfs, value
from tests.integration.test_idempotent_faults import (
    PARTITIONS,
    assert_exactly_once_in_order,
    idempotent_producer,
    produce_windowed,
)

DOWN_S = 1.5  # how long PostgreSQL stays down


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own (the test kills it)."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server


class DatabaseCrash:
    """A step for produce_windowed: once a third of the messages are acknowledged, SIGKILLs
    PostgreSQL with appends in flight; DOWN_S later starts it again (crash recovery)."""

    def __init__(self, server: PostgresServer, count: int) -> None:
        self.server, self.count = server, count
        self.killed_at: float | None = None
        self.in_flight_at_kill = -1
        self.restarted = False

    def __call__(self, sent: int, delivered: Delivered) -> None:
        if self.in_flight_at_kill < 0 and len(delivered.acked) >= self.count // 3:
            self.in_flight_at_kill = sent - len(delivered.acked) - len(delivered.failed)
            self.server.kill()
            self.killed_at = time.monotonic()
        elif self.killed_at is not None and time.monotonic() - self.killed_at >= DOWN_S:
            self.server.start()
            self.killed_at = None
            self.restarted = True


def test_postgresql_killed_mid_stream_loses_and_duplicates_nothing(
        own_postgres: PostgresServer) -> None:
    count = 9000
    with EmbeddedBroker(storage=own_postgres.url) as broker:
        topic = create_topic(broker.bootstrap_servers, unique_name("pg-crash"), len(PARTITIONS))
        crash = DatabaseCrash(own_postgres, count)
        delivered = produce_windowed(idempotent_producer(broker.bootstrap_servers), topic,
                                     count, crash)
        assert crash.restarted and crash.in_flight_at_kill > 0
        assert_exactly_once_in_order(broker.bootstrap_servers, topic, count, delivered)
        # What the database holds after its recovery is what the broker serves.
        rows = own_postgres.psql(
            own_postgres.url.rsplit("/", 1)[1],
            "SELECT sum(last_offset - base_offset + 1) FROM strom_batch b "
            "JOIN strom_partition p USING (partition_id) JOIN strom_topic t USING (topic_id) "
            f"WHERE t.name = '{topic}'")
        assert int(rows) == count


def run_transaction(p: Producer, topic: str, values: list[bytes], deadline: float,
                     before_commit: Callable[[], None] = lambda: None) -> bool:
    """One transaction of `values` (value i to partition i % 3); True if it committed, False
    if it had to be aborted (the caller tries again). A retriable error of the commit (a
    timeout while the database is down) is retried, as the client's docs say."""
    p.begin_transaction()
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % len(PARTITIONS))
    before_commit()
    while True:
        try:
            p.commit_transaction(DEADLINE_S)
            return True
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            assert time.monotonic() < deadline, f"no transaction went through in time: {err}"
            if err.txn_requires_abort():
                p.abort_transaction(DEADLINE_S)
                return False
            if not err.retriable():
                raise


def test_postgresql_killed_during_transactions_keeps_exactly_the_committed(
        own_postgres: PostgresServer) -> None:
    """Transactions of 30 messages each while PostgreSQL is SIGKILLed and, DOWN_S later,
    restarted. A read_committed consumer then sees every committed transaction's messages
    once, in order, and nothing of the aborted ones."""
    with EmbeddedBroker(storage=own_postgres.url) as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("pg-txn-crash"), len(PARTITIONS))
        p = producer(bootstrap, transactional_id=unique_name("txn"), acks="all",
                     message_timeout_ms=30000, transaction_timeout_ms=60000)
        p.init_transactions(30)
        committed: list[bytes] = []
        attempts = 0
        deadline = time.monotonic() + 6 * DEADLINE_S
        restart = threading.Timer(DOWN_S, own_postgres.start)

        def crash() -> None:  # with the transaction's records on their way
            if not restart.is_alive() and own_postgres.postmaster_pid() is not None:
                own_postgres.kill()
                restart.start()

        for txn in range(12):
            values = [f"t{txn:02d}-{i:02d}".encode() for i in range(30)]
            attempts += 1
            while not run_transaction(p, topic, values, deadline,
                                       crash if txn == 4 else lambda: None):
                attempts += 1
            committed += values
        restart.join()
        assert own_postgres.postmaster_pid() is not None, "PostgreSQL was not restarted"
        stored = consume_partitions(bootstrap, topic, PARTITIONS,
                                    isolation_level="read_committed")
        by_partition: dict[int, list[bytes]] = {part: [] for part in PARTITIONS}
        for m in stored:
            by_partition[m.partition()].append(m.value())
        expected = {part: [v for i, v in enumerate(committed) if i % 30 % 3 == part]
                    for part in PARTITIONS}
        assert by_partition == expected
        print(f"{attempts - 12} transactions aborted and tried again")


def test_database_dropped_while_running(postgres_server: PostgresServer) -> None:
    """The broker's database vanishes: appends fail with a retriable error, the broker keeps
    serving (Metadata answers), and the log says what happened."""
    url = postgres_server.new_database()
    database = url.rsplit("/", 1)[1]
    with EmbeddedBroker(storage=url) as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("pg-drop"), 1)
        p = producer(bootstrap, acks="all", message_timeout_ms=3000, retries=0)
        p.produce(topic, value=b"before")
        assert p.flush(DEADLINE_S) == 0
        postgres_server.psql("postgres", f"DROP DATABASE {database} WITH (FORCE)")
        failed = Delivered()
        p.produce(topic, value=b"after", on_delivery=failed)
        p.flush(DEADLINE_S)
        assert [err.code() for err, _ in failed.failed] == [KafkaError.KAFKA_STORAGE_ERROR]
        assert not failed.acked
        metadata = producer(bootstrap).list_topics(timeout=10)
        assert topic in metadata.topics



@pytest.fixture
def database_disk() -> Iterator[Path]:
    """A 4 MiB tmpfs the PostgreSQL server's user can reach (outside pytest's private
    temporary directories)."""
    mount_point = Path(tempfile.mkdtemp(prefix="strom-pg-disk-"))
    mount_point.chmod(0o755)
    try:
        with mount_tmpfs(mount_point):
            yield mount_point
    finally:
        mount_point.rmdir()


def test_full_database_disk_refuses_writes_and_recovers(database_disk: Path,
                                                        own_postgres: PostgresServer) -> None:
    """PostgreSQL's disk fills up (strom's tables in a tablespace on a 4 MiB tmpfs): produce
    answers KAFKA_STORAGE_ERROR (retriable) and acknowledged records stay readable; once
    space is freed the same idempotent producer carries on, every acknowledged record stored
    exactly once and in order. The server is the test's own, stopped before the tmpfs goes
    (fixtures end in reverse order): a tablespace whose files vanish breaks every later
    checkpoint of its server, and so CREATE DATABASE for the tests after."""
    postgres_server = own_postgres
    url = postgres_server.new_database()
    database = url.rsplit("/", 1)[1]
    space = database_disk / "tablespace"
    space.mkdir()
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    if user is not None:
        os.chown(space, user.pw_uid, user.pw_gid)
    postgres_server.psql("postgres", f"CREATE TABLESPACE {database}_small LOCATION '{space}'")
    postgres_server.psql("postgres", f"ALTER DATABASE {database} "
                                     f"SET default_tablespace = {database}_small")
    filler = database_disk / "filler"
    filler.write_bytes(os.urandom(FILLER_BYTES))
    settings = {"offsets.topic.num.partitions": "1",
                "transaction.state.log.num.partitions": "1"}
    with EmbeddedBroker(settings=settings, storage=url) as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("pg-full"), 1)
        delivered = Delivered()
        p = producer(bootstrap, enable_idempotence=True, message_timeout_ms=120000,
                     linger_ms=0, batch_num_messages=4)
        sent = fill_until_full(p, bootstrap, topic, delivered)
        acked_while_full = [m.value() for m in delivered.acked]
        assert acked_while_full and len(acked_while_full) < sent
        stored = [m.value() for m in consume_partitions(bootstrap, topic)]
        assert [v for v in stored if not v.startswith(b"probe")] == acked_while_full

        filler.unlink()  # space is back: the producer's retries go through by themselves
        assert p.flush(DEADLINE_S) == 0
        assert not delivered.failed, delivered.failed[:3]
        assert [m.value() for m in delivered.acked] == [value(i) for i in range(sent)]
        stored = [m.value() for m in consume_partitions(bootstrap, topic)]
        assert [v for v in stored if not v.startswith(b"probe")] == [
            value(i) for i in range(sent)]
