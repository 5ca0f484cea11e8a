"""Brokers sharing one PostgreSQL database know each other: each registers a session that its
heartbeats renew, Metadata lists the live brokers, a clean stop leaves the list at once and a
crashed broker when its session expires; a node id held by a live broker elsewhere is refused
at start, while the same broker restarting after a crash takes its row back; and a database
with the schema of the first release is migrated in place."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from strom.cli.serve import serve
from strom.testing import EmbeddedBroker
from strom.testing.postgres import PostgresServer
from tests.integration.broker_process import serve_process
from tests.integration.conftest import DEADLINE_S

FAST = {"broker.heartbeat.interval.ms": "200", "broker.session.timeout.ms": "1500"}
FAST_ARGS = tuple(f"{name}={value}" for name, value in FAST.items())


def listed(bootstrap: str) -> list[int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return sorted(admin.list_topics(timeout=10).brokers)


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_brokers_on_one_database_list_each_other(postgres_url: str) -> None:
    with EmbeddedBroker(settings={**FAST, "node.id": "1"}, storage=postgres_url) as one:
        with EmbeddedBroker(settings={**FAST, "node.id": "2"}, storage=postgres_url) as two:
            eventually(lambda: listed(one.bootstrap_servers) == [1, 2],
                       "broker 1 never listed broker 2")
            assert listed(two.bootstrap_servers) == [1, 2]
        # a clean stop leaves the list at once (at broker 1's next heartbeat)
        eventually(lambda: listed(one.bootstrap_servers) == [1],
                   "broker 2 still listed after it stopped")


def test_a_crashed_broker_drops_out_when_its_session_expires(postgres_url: str,
                                                              tmp_path: Path) -> None:
    with EmbeddedBroker(settings={**FAST, "node.id": "1"}, storage=postgres_url) as one, \
            serve_process(None, tmp_path / "two.log", *FAST_ARGS, "node.id=2",
                          storage=postgres_url) as (two, _):
        eventually(lambda: listed(one.bootstrap_servers) == [1, 2],
                   "broker 1 never listed broker 2")
        two.send_signal(signal.SIGKILL)
        two.wait(10)
        killed = time.monotonic()
        assert listed(one.bootstrap_servers) == [1, 2]  # its session has not expired yet
        eventually(lambda: listed(one.bootstrap_servers) == [1],
                   "the crashed broker was never dropped")
        assert time.monotonic() - killed >= 1.0  # not before its session could expire


def test_a_node_id_held_by_a_live_broker_elsewhere_is_refused(postgres_url: str) -> None:
    with EmbeddedBroker(settings={"node.id": "7"}, storage=postgres_url):
        result = CliRunner().invoke(serve, ["--storage", postgres_url, "--node-id", "7",
                                            "--listen", "127.0.0.1:0"])
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert "node id 7 belongs to a live broker at 127.0.0.1:" in lines[0]
        assert "another --node-id" in lines[0]


def test_a_broker_restarting_after_a_crash_takes_its_node_id_back(
        postgres_url: str, tmp_path: Path) -> None:
    slow = ("broker.heartbeat.interval.ms=200", "broker.session.timeout.ms=60000")
    log_path = tmp_path / "broker.log"
    with serve_process(None, log_path, *slow, storage=postgres_url) as (proc, bootstrap):
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # its session has 60 s left, but the same address is the same broker
    with serve_process(None, log_path, *slow, listen=bootstrap,
                       storage=postgres_url) as (_, again):
        assert again == bootstrap
        assert listed(again) == [1]


V1_TABLES = """
CREATE TABLE strom_schema (version integer NOT NULL, written_by text NOT NULL,
                           migrated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE strom_cluster (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                            cluster_id text NOT NULL, next_producer_id bigint NOT NULL DEFAULT 0);
CREATE TABLE strom_broker (node_id integer PRIMARY KEY, host text NOT NULL,
                           port integer NOT NULL, rack text,
                           registered_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE strom_topic (topic_id uuid PRIMARY KEY, name text NOT NULL UNIQUE,
                          partitions integer NOT NULL, configs jsonb NOT NULL DEFAULT '{}'::jsonb);
CREATE TABLE strom_partition (
    partition_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id uuid NOT NULL REFERENCES strom_topic ON DELETE CASCADE, index integer NOT NULL,
    leader_epoch integer NOT NULL DEFAULT 0, log_start bigint NOT NULL DEFAULT 0,
    next_offset bigint NOT NULL DEFAULT 0, UNIQUE (topic_id, index));
CREATE TABLE strom_batch (partition_id bigint NOT NULL, base_offset bigint NOT NULL,
                          last_offset bigint NOT NULL, max_timestamp bigint NOT NULL,
                          size integer NOT NULL, data bytea NOT NULL,
                          PRIMARY KEY (partition_id, base_offset));
ALTER TABLE strom_batch ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE strom_producer_snapshot (partition_id bigint PRIMARY KEY,
                                      end_offset bigint NOT NULL, state bytea NOT NULL);
INSERT INTO strom_schema (version, written_by) VALUES (1, 'strom 0.1.0');
INSERT INTO strom_cluster (cluster_id) VALUES ('AAAAAAAAAAAAAAAAAAAAAQ');
INSERT INTO strom_broker (node_id, host, port) VALUES (1, 'old-host', 9092);
"""


def test_a_first_release_schema_is_migrated(postgres_server: PostgresServer) -> None:
    """The tables exactly as schema version 1 created them, with a broker row: opening the
    database migrates it to the current version, keeping the cluster id."""
    url = postgres_server.new_database()
    postgres_server.psql(url.rsplit("/", 1)[1], V1_TABLES)
    with EmbeddedBroker(storage=url) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        assert admin.describe_cluster().result(10).cluster_id == "AAAAAAAAAAAAAAAAAAAAAQ"
        assert listed(broker.bootstrap_servers) == [1]

    async def versions() -> list[int]:
        conn = await asyncpg.connect(url)
        try:
            return [r["version"] for r in await conn.fetch(
                "SELECT version FROM strom_schema ORDER BY version")]
        finally:
            await conn.close()

    import asyncio

    assert asyncio.run(versions()) == [1, 2, 3, 4]


@pytest.mark.parametrize("value", ["0", "-1"])
def test_heartbeat_settings_are_checked(value: str, postgres_url: str) -> None:
    result = CliRunner().invoke(serve, ["--storage", postgres_url, "--listen", "127.0.0.1:0",
                                        "--set", f"broker.heartbeat.interval.ms={value}"])
    assert result.exit_code == 2 and "broker.heartbeat.interval.ms" in result.output
