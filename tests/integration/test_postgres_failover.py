"""A broker on a PostgreSQL primary with a synchronous standby (a multi-host URL with
target_session_attrs=read-write) survives the primary's loss: the primary SIGKILLed mid-stream
and the standby promoted a moment later, an idempotent producer carries on and every
acknowledged record is stored once, in order, on the new primary; a transactional producer
across the failover keeps exactly its committed transactions; a primary that turns read-only
while keeping its sessions open, or that freezes, is left for the promoted standby; and a
host that never answers (a machine gone: nothing refuses the connection) costs each connection
attempt connect_timeout, not the whole attempt."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from strom.cli.serve import serve
from strom.testing import EmbeddedBroker
from strom.testing.postgres import PASSWORD, USER, PostgresServer, PostgresUnavailable
from strom.testing.postgres_pair import PostgresPair
from tests.integration.conftest import (
    DEADLINE_S,
    Delivered,
    consume_partitions,
    create_topic,
    producer,
    unique_name,
)
from tests.integration.test_idempotent_faults import (
    PARTITIONS,
    assert_exactly_once_in_order,
    idempotent_producer,
    produce_windowed,
)
from tests.integration.test_postgres_faults import run_transaction

STATEMENT_TIMEOUT_S = 5.0  # storage.statement.timeout.ms in the frozen-primary test
PAUSE_S = 1.0  # from the primary's death to the standby's promotion


@pytest.fixture
def pair() -> Iterator[PostgresPair]:
    """A primary with a synchronous standby of this test's own (the test kills the primary)."""
    try:
        servers = PostgresPair()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with servers:
        yield servers


def records_stored(server: PostgresServer, database: str, topic: str) -> int:
    rows = server.psql(database, "SELECT coalesce(sum(last_offset - base_offset + 1), 0) "
                                 "FROM strom_batch JOIN strom_partition USING (partition_id) "
                                 f"JOIN strom_topic t USING (topic_id) WHERE t.name = '{topic}'")
    return int(rows)


class Failover:
    """A step for produce_windowed: once a third of the messages are acknowledged, SIGKILLs
    the primary with appends in flight; PAUSE_S later promotes the standby; notes when the
    first acknowledgement after the promotion arrives."""

    def __init__(self, servers: PostgresPair, count: int) -> None:
        self.servers, self.count = servers, count
        self.killed_at: float | None = None
        self.promoted_at: float | None = None
        self.recovered_at: float | None = None
        self.in_flight_at_kill = -1
        self._acked_at_promotion = 0

    def __call__(self, sent: int, delivered: Delivered) -> None:
        now = time.monotonic()
        if self.killed_at is None and len(delivered.acked) >= self.count // 3:
            self.in_flight_at_kill = sent - len(delivered.acked) - len(delivered.failed)
            self.servers.primary.kill()
            self.killed_at = now
        elif self.killed_at is not None and self.promoted_at is None:
            if now - self.killed_at >= PAUSE_S:
                self.servers.promote()
                self.promoted_at = time.monotonic()
                self._acked_at_promotion = len(delivered.acked)
        elif (self.recovered_at is None and self.promoted_at is not None
              and len(delivered.acked) > self._acked_at_promotion):
            self.recovered_at = now

    def report(self) -> str:
        assert self.killed_at is not None and self.promoted_at is not None
        assert self.recovered_at is not None, "nothing was acknowledged after the promotion"
        return (f"{self.in_flight_at_kill} records in flight at the kill; kill -> promoted "
                f"{self.promoted_at - self.killed_at:.2f} s, promoted -> first "
                f"acknowledgement {self.recovered_at - self.promoted_at:.2f} s")


def test_primary_killed_and_standby_promoted_loses_and_duplicates_nothing(
        pair: PostgresPair) -> None:
    count = 9000
    with EmbeddedBroker(storage=pair.url) as broker:
        topic = create_topic(broker.bootstrap_servers, unique_name("pg-failover"),
                             len(PARTITIONS))
        failover = Failover(pair, count)
        delivered = produce_windowed(idempotent_producer(broker.bootstrap_servers), topic,
                                     count, failover)
        print(failover.report())
        assert failover.in_flight_at_kill > 0
        assert_exactly_once_in_order(broker.bootstrap_servers, topic, count, delivered)
        assert pair.standby is not None
        assert records_stored(pair.standby, "strom", topic) == count


def test_transactions_across_a_failover_keep_exactly_the_committed(pair: PostgresPair) -> None:
    """Transactions of 30 messages each; during the fifth, with its records on their way, the
    primary is SIGKILLed and PAUSE_S later the standby promoted. A read_committed consumer
    then sees every committed transaction's messages once, in order, and nothing else."""
    with EmbeddedBroker(storage=pair.url) as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("pg-txn-failover"), len(PARTITIONS))
        p = producer(bootstrap, transactional_id=unique_name("txn"), acks="all",
                     message_timeout_ms=30000, transaction_timeout_ms=60000)
        p.init_transactions(30)
        committed: list[bytes] = []
        deadline = time.monotonic() + 6 * DEADLINE_S
        promote = threading.Timer(PAUSE_S, pair.promote)

        def crash() -> None:
            if not promote.is_alive() and pair.primary.postmaster_pid() is not None:
                pair.primary.kill()
                promote.start()

        for txn in range(12):
            values = [f"t{txn:02d}-{i:02d}".encode() for i in range(30)]
            while not run_transaction(p, topic, values, deadline,
                                       crash if txn == 4 else lambda: None):
                pass
            committed += values
        promote.join()
        assert pair.primary.postmaster_pid() is None, "the primary was not killed"
        stored = consume_partitions(bootstrap, topic, PARTITIONS,
                                    isolation_level="read_committed")
        by_partition: dict[int, list[bytes]] = {part: [] for part in PARTITIONS}
        for m in stored:
            by_partition[m.partition()].append(m.value())
        assert by_partition == {part: [v for i, v in enumerate(committed) if i % 30 % 3 == part]
                                for part in PARTITIONS}


def test_primary_turned_read_only_is_left_for_the_promoted_standby(pair: PostgresPair) -> None:
    """The primary stays up but refuses writes on its open sessions (default_transaction_
    read_only, as a fenced old primary or a managed server guarding a full disk does) and the
    standby is promoted: the broker drops its connections to the read-only server and
    reconnects, finding the new primary, and the producer carries on."""
    with EmbeddedBroker(storage=pair.url) as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("pg-read-only"), len(PARTITIONS))
        p = idempotent_producer(bootstrap)
        delivered = Delivered()
        for n in range(30):
            p.produce(topic, value=f"before-{n}".encode(), partition=n % 3,
                      on_delivery=delivered)
        assert p.flush(DEADLINE_S) == 0 and len(delivered.acked) == 30
        pair.primary.psql("postgres", "ALTER SYSTEM SET default_transaction_read_only = on")
        pair.primary.psql("postgres", "SELECT pg_reload_conf()")
        pair.promote()
        for n in range(30):
            p.produce(topic, value=f"after-{n}".encode(), partition=n % 3,
                      on_delivery=delivered)
        assert p.flush(DEADLINE_S) == 0
        assert not delivered.failed and len(delivered.acked) == 60
        assert pair.standby is not None
        assert records_stored(pair.standby, "strom", topic) == 60
        assert records_stored(pair.primary, "strom", topic) == 30


@pytest.fixture
def silent_host() -> Iterator[int]:
    """A loopback port that takes TCP connections and never answers (as a frozen server, or
    one behind a network partition, looks to a client)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port: int = listener.getsockname()[1]
        yield port


def test_a_host_that_never_answers_is_passed_over(pair: PostgresPair, silent_host: int) -> None:
    """The URL names the silent host first, then the primary and the standby, with
    connect_timeout=1: the broker starts, and after a failover it reconnects past the silent
    host and the dead one to the promoted standby."""
    hosts = (f"127.0.0.1:{silent_host},127.0.0.1:{pair.primary.port},"
             f"127.0.0.1:{pair.standby.port if pair.standby else 0}")
    url = (f"postgresql://{USER}:{PASSWORD}@{hosts}/strom"
           "?target_session_attrs=read-write&connect_timeout=1")
    with EmbeddedBroker(storage=url) as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("pg-silent"), 1)
        p = idempotent_producer(bootstrap)
        delivered = Delivered()
        p.produce(topic, value=b"before", on_delivery=delivered)
        assert p.flush(DEADLINE_S) == 0
        pair.primary.kill()
        pair.promote()
        started = time.monotonic()
        p.produce(topic, value=b"after", on_delivery=delivered)
        assert p.flush(DEADLINE_S) == 0
        print(f"acknowledged {time.monotonic() - started:.2f} s after the promotion")
        assert not delivered.failed
        assert [m.value() for m in delivered.acked] == [b"before", b"after"]
        assert [m.value() for m in consume_partitions(bootstrap, topic)] == [b"before", b"after"]


@pytest.mark.slow
def test_a_frozen_primary_is_left_for_the_promoted_standby(pair: PostgresPair) -> None:
    """The primary freezes (SIGSTOP: connections hang rather than fail, as with a hung machine
    or a network partition) and the standby is promoted: the statements waiting on the frozen
    server time out once (storage.statement.timeout.ms, then as long again for asyncpg's
    cancel request to the same server), and then the broker reconnects past it to the standby
    instead of trying its other pooled connections to the frozen one in turn (minutes). The
    bound below is far under the 30 s default, so it also shows the setting is applied."""
    settings = {"storage.statement.timeout.ms": str(round(STATEMENT_TIMEOUT_S * 1000))}
    with EmbeddedBroker(settings, storage=pair.url + "&connect_timeout=1") as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("pg-frozen"), len(PARTITIONS))
        p = producer(bootstrap, enable_idempotence=True, acks="all", linger_ms=2,
                     message_timeout_ms=180000, socket_timeout_ms=180000)
        delivered = Delivered()
        for n in range(30):
            p.produce(topic, value=f"before-{n}".encode(), partition=n % 3,
                      on_delivery=delivered)
        assert p.flush(DEADLINE_S) == 0
        pair.primary.pause()
        try:
            pair.promote()
            started = time.monotonic()
            for n in range(30):
                p.produce(topic, value=f"after-{n}".encode(), partition=n % 3,
                          on_delivery=delivered)
            assert p.flush(4 * STATEMENT_TIMEOUT_S + DEADLINE_S) == 0
            took = time.monotonic() - started
        finally:
            pair.primary.kill()
        print(f"acknowledged {took:.1f} s after the freeze")
        assert not delivered.failed and len(delivered.acked) == 60
        assert took < 2 * STATEMENT_TIMEOUT_S + DEADLINE_S / 2


def test_start_with_standbys_only_says_so(pair: PostgresPair) -> None:
    """A URL whose hosts are all standbys (target_session_attrs=read-write) stops the broker
    at start with a message that says so."""
    assert pair.standby is not None
    url = (f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{pair.standby.port}/strom"
           "?target_session_attrs=read-write")
    result = CliRunner().invoke(serve, ["--storage", url, "--listen", "127.0.0.1:0"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "no host accepts writes" in lines[0], result.output
