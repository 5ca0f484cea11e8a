"""The PostgreSQL engine's own rules, against a real PostgreSQL server: a commit whose answer
is lost (the unknown outcome), fencing by the leader epoch, group commit, producer state
snapshots, and the start-up checks (schema version, credentials, a missing database)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.static.primitive import i16, i32

from strom.cli.serve import serve
from strom.config.broker import BrokerConfig
from strom.storage.api import (
    AppendBatch,
    AppendResult,
    BrokerRegistration,
    Duplicate,
    NotLeader,
    OutcomeUnknown,
    StorageUnavailable,
)
from strom.storage.postgres import PostgresEngine
from strom.storage.postgres.connect import StartupError
from strom.storage.postgres.partition import PostgresPartitionLog
from strom.testing import EmbeddedBroker
from strom.testing.postgres import PASSWORD, PostgresServer, free_port
from strom.testing.storage_conformance import appended, data_batch, read_records
from tests.integration.raw_client import RawClient
from tests.unit.batch_factory import make_batch


def engine_for(url: str) -> PostgresEngine:
    return PostgresEngine(url, BrokerConfig.build(Path("unused"), "localhost", 0, storage=url))


ME = BrokerRegistration(1, "localhost", 9092)


async def open_registered(engine: PostgresEngine) -> PostgresEngine:
    """Opened and registered as node 1, so that it holds its partitions' leases."""
    await engine.open()
    await engine.register_broker(ME)
    return engine


def idem(values: list[bytes], producer_id: int, epoch: int, sequence: int) -> AppendBatch:
    return data_batch(values, producer_id=producer_id, producer_epoch=epoch,
                      base_sequence=sequence)


async def retried(call: Callable[[], Awaitable[Any]]) -> Any:
    """`call()` again while it is refused as retriable (the engine backs off for a moment
    after a failure), as a client retries."""
    for _ in range(100):
        try:
            return await call()
        except StorageUnavailable:
            await asyncio.sleep(0.02)
    return await call()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


@pytest.mark.parametrize("committed", [True, False], ids=["answer-lost", "never-sent"])
def test_an_unknown_outcome_is_settled_by_reloading(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch, committed: bool) -> None:
    """The connection dies during a commit, after it committed (its answer is lost) or
    before: the append fails (retriable), the partition reloads from the database, and the
    producer's retry is answered with the offsets the batch really got (a duplicate) or
    appended now, never both."""
    async def body() -> None:
        engine = engine_for(postgres_url)
        await open_registered(engine)
        try:
            await engine.create_topic("t", 1, {})
            plog = engine.partition("t", 0)
            appended(await plog.produce([idem([b"a", b"b"], 7, 0, 0)]))
            real_execute = asyncpg.Connection.execute
            failed: list[str] = []

            async def execute_and_die(self: Any, query: str, *args: Any, **kw: Any) -> Any:
                if "INSERT INTO strom_batch" not in query or failed:
                    return await real_execute(self, query, *args, **kw)
                failed.append(await real_execute(self, query, *args, **kw) if committed
                              else "not sent")
                raise asyncpg.ConnectionDoesNotExistError("the connection died")

            monkeypatch.setattr(asyncpg.Connection, "execute", execute_and_die)
            with pytest.raises(OutcomeUnknown):  # sent, its answer lost: REQUEST_TIMED_OUT
                await plog.produce([idem([b"c"], 7, 0, 2)])
            assert failed == (["INSERT 0 1"] if committed else ["not sent"])
            retry = await retried(lambda: plog.produce([idem([b"c"], 7, 0, 2)]))
            assert isinstance(retry, Duplicate if committed else AppendResult)
            assert retry.base_offset == 2
            assert [v for _, _, v in await read_records(plog)] == [b"a", b"b", b"c"]
            assert appended(await plog.produce([idem([b"d"], 7, 0, 3)])).base_offset == 3
        finally:
            await engine.close()
    run(body)


def test_a_newer_epoch_fences_the_older_broker(postgres_url: str) -> None:
    """A second process of node 1 at its address (a restart while the first is paused, not
    dead) takes the session and every lease over (the leader epochs move up): the first can
    no longer append, even though nothing told it, and it does not take the node back."""
    async def body() -> None:
        first = engine_for(postgres_url)
        await open_registered(first)
        second = engine_for(postgres_url)
        try:
            await first.create_topic("t", 1, {})
            appended(await first.partition("t", 0).produce([data_batch([b"one"])]))
            await open_registered(second)
            with pytest.raises(NotLeader):
                await first.partition("t", 0).produce([data_batch([b"zombie"])])
            with pytest.raises(NotLeader):  # and it stays fenced
                await first.partition("t", 0).produce([data_batch([b"zombie"])])
            result = appended(await second.partition("t", 0).produce([data_batch([b"two"])]))
            assert result.base_offset == 1
            assert [v for _, _, v in await read_records(second.partition("t", 0))] == [
                b"one", b"two"]
        finally:
            await first.close()
            await second.close()
    run(body)


def test_concurrent_appends_share_commits(postgres_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends that arrive while a commit is in flight go in the next one (group commit),
    each with its own gap-free offsets in arrival order."""
    commits: list[int] = []
    real_commit = PostgresPartitionLog._commit

    async def counting(self: PostgresPartitionLog, group: list[Any]) -> None:
        commits.append(len(group))
        await real_commit(self, group)

    monkeypatch.setattr(PostgresPartitionLog, "_commit", counting)

    async def body() -> None:
        engine = engine_for(postgres_url)
        await open_registered(engine)
        try:
            await engine.create_topic("t", 1, {})
            plog = engine.partition("t", 0)
            results = await asyncio.gather(*(plog.append([data_batch([f"{i}".encode()])])
                                             for i in range(200)))
            assert [r.base_offset for r in results] == list(range(200))
            assert sum(commits) == 200 and len(commits) < 100, commits
            values = [v for _, _, v in await read_records(plog)]
            assert values == [f"{i}".encode() for i in range(200)]
        finally:
            await engine.close()
    run(body)


def test_producer_state_comes_back_from_its_snapshot_and_the_tail(postgres_url: str) -> None:
    """A broker that stops without writing its snapshot (a crash) reloads the stored one
    and replays the batches after it; one that stops cleanly writes one at close."""
    async def body() -> None:
        engine = engine_for(postgres_url)
        await open_registered(engine)
        await engine.create_topic("t", 1, {})
        plog = engine.partition("t", 0)
        for seq in range(0, 40, 2):
            appended(await plog.produce([idem([b"x", b"y"], 1, 0, seq)]))
        from strom.storage.postgres.partition_load import write_snapshot

        assert await write_snapshot(plog)
        snapshot_end = plog.snapshot_end
        pool = plog.db.pool
        old = await pool.fetchrow("SELECT end_offset, state FROM strom_producer_snapshot")
        for seq in range(0, 10):
            appended(await plog.produce([idem([b"z"], 2, 3, seq)]))
        before = plog.producer_state.entries()
        await engine.close()
        async with asyncpg.create_pool(postgres_url, min_size=1, max_size=1) as restore:
            assert await restore.fetchval("SELECT end_offset FROM strom_producer_snapshot"
                                          ) == 50  # written at close
            await restore.execute("UPDATE strom_producer_snapshot SET end_offset = $1, "
                                  "state = $2", old["end_offset"], old["state"])
        engine = engine_for(postgres_url)
        await open_registered(engine)
        try:
            again = engine.partition("t", 0)
            assert again.snapshot_end == snapshot_end == 40
            assert again.since_snapshot == 10  # only the tail was replayed
            assert again.producer_state.entries() == before
            dup = await again.produce([idem([b"z"], 2, 3, 9)])
            assert isinstance(dup, Duplicate) and dup.base_offset == 49
        finally:
            await engine.close()
    run(body)


def test_a_schema_from_a_newer_strom_is_refused(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database()

    async def body() -> None:
        engine = engine_for(url)
        await open_registered(engine)
        await engine.close()
        postgres_server.psql(url.rsplit("/", 1)[1],
                             "INSERT INTO strom_schema (version, written_by) VALUES (99, 'x')")
        with pytest.raises(StartupError, match="schema version 99, newer than this strom"):
            await engine_for(url).open()
    run(body)


@pytest.mark.parametrize("mistake", ["password", "database", "port"])
def test_serve_says_what_is_wrong_with_the_database_in_one_line(
        postgres_server: PostgresServer, mistake: str) -> None:
    url = {"password": postgres_server.url_for("strom", password="wrong"),
           "database": postgres_server.url_for("no_such_db"),
           "port": "postgresql://strom:x@127.0.0.1:1/strom"}[mistake]
    result = CliRunner().invoke(serve, ["--storage", url, "--listen", "127.0.0.1:0"])
    assert result.exit_code == 1
    expected = {"password": "refused the user name or password",
                "database": "the database does not exist",
                "port": "cannot reach PostgreSQL"}[mistake]
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert "wrong" not in lines[0]  # no password in messages


def test_an_append_result_names_the_log_start(postgres_url: str) -> None:
    async def body() -> None:
        engine = engine_for(postgres_url)
        await open_registered(engine)
        try:
            await engine.create_topic("t", 1, {})
            plog = engine.partition("t", 0)
            for i in range(3):
                appended(await plog.produce([data_batch([f"{i}".encode()])]))
            assert await plog.delete_records_before(2) == 2
            result = await plog.produce([data_batch([b"3"])])
            assert isinstance(result, AppendResult) and result.log_start_offset == 2
        finally:
            await engine.close()
    run(body)


def test_produce_requests_of_one_connection_share_commits(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client's back-to-back Produce requests overlap on the broker, so their appends to
    one partition go into shared commits instead of one commit per request."""
    commits: list[int] = []
    real_commit = PostgresPartitionLog._commit

    async def counting(self: PostgresPartitionLog, group: list[Any]) -> None:
        if self.topic == "shared":
            commits.append(len(group))
        await real_commit(self, group)

    monkeypatch.setattr(PostgresPartitionLog, "_commit", counting)
    with EmbeddedBroker(storage=postgres_url) as broker, RawClient(broker.port) as client:
        broker.run(broker.server.engine.create_topic("shared", 1, {}))
        frames = [client.frame(ProduceRequest(
            transactional_id=None, acks=i16(-1), timeout=timedelta(seconds=5),
            topic_data=(TopicProduceData(name="shared", partition_data=(
                PartitionProduceData(index=i32(0), records=bytes(make_batch(2))),)),)))
            for _ in range(60)]
        client.send_raw(b"".join(frames))
        offsets = [client.read_response(0, 9).responses[0].partition_responses[0].base_offset
                   for _ in frames]
    assert offsets == [2 * i for i in range(60)]
    assert sum(commits) == 60 and len(commits) < 60, commits


def test_a_url_with_several_hosts_finds_the_one_that_answers(
        postgres_server: PostgresServer) -> None:
    """libpq's multi-host form: the first host refuses, the second is the primary
    (target_session_attrs=read-write), as after a failover."""
    url = postgres_server.new_database()
    database = url.rsplit("/", 1)[1]
    dead = free_port()
    multi = (f"postgresql://strom:{PASSWORD}@127.0.0.1:{dead},127.0.0.1:{postgres_server.port}"
             f"/{database}?target_session_attrs=read-write")

    async def body() -> None:
        engine = engine_for(multi)
        await open_registered(engine)
        try:
            await engine.create_topic("t", 1, {})
            appended(await engine.partition("t", 0).produce([data_batch([b"x"])]))
            assert "strom-test-password" not in str(engine)
        finally:
            await engine.close()
    run(body)
