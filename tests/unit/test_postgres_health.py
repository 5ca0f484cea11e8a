"""While PostgreSQL does not answer, the engine's calls fail at once (retriable) instead of
each waiting for a connection attempt, except one attempt now and then, with a backoff that
grows to a cap and starts over once the database answers; a server that refuses writes as
read-only, or does not answer in time, makes the pool replace its connections."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from strom.storage.api import StorageUnavailable
from strom.storage.postgres.connect import FIRST_RETRY_S, MAX_RETRY_S, Health


def test_calls_fail_fast_while_down_and_retry_with_backoff() -> None:
    async def main() -> None:
        health = Health("postgresql://u:secret@db/x")
        tried: list[str] = []

        def attempt(what: str, fails: bool) -> None:
            with health.statement(what):
                tried.append(what)
                if fails:
                    raise OSError("connection refused")

        with pytest.raises(StorageUnavailable, match="did not answer"):
            attempt("first", fails=True)
        with pytest.raises(StorageUnavailable, match="next attempt"):
            attempt("too soon", fails=False)
        assert tried == ["first"]  # not tried: no connection attempt while backing off
        await asyncio.sleep(FIRST_RETRY_S * 1.2)
        with pytest.raises(StorageUnavailable, match="did not answer"):
            attempt("second", fails=True)
        assert health.backoff_s == pytest.approx(FIRST_RETRY_S * 4)
        await asyncio.sleep(FIRST_RETRY_S * 2.4)
        attempt("third", fails=False)  # it answers: back to normal
        assert tried == ["first", "second", "third"]
        assert health.down_since is None and health.backoff_s == FIRST_RETRY_S
        attempt("fourth", fails=False)

        for _ in range(20):  # the wait never grows past the cap
            health.failed(OSError("down"))
        assert health.backoff_s == MAX_RETRY_S

    asyncio.run(main())


def test_a_read_only_or_silent_server_makes_the_pool_reconnect() -> None:
    """A standby or a demoted primary answers writes with ReadOnlySQLTransactionError, a
    frozen server not at all (TimeoutError): the call is retriable and the pool's connections
    are expired (reconnecting finds the primary); other failures leave the connections to the
    pool, which replaces the ones that were closed itself."""

    async def main() -> None:
        health = Health("postgresql://u:secret@db1,db2/x?target_session_attrs=read-write")
        expired: list[int] = []

        async def expire() -> None:
            expired.append(len(expired))

        health.reconnect_with(expire)

        def attempt(failure: Exception) -> None:
            with pytest.raises(StorageUnavailable, match="did not answer"), \
                    health.statement("append"):
                raise failure

        attempt(asyncpg.ReadOnlySQLTransactionError(
            "cannot execute INSERT in a read-only transaction"))
        await asyncio.sleep(0)
        assert expired == [0]
        await asyncio.sleep(FIRST_RETRY_S * 1.2)
        attempt(OSError("connection refused"))
        await asyncio.sleep(0)
        assert expired == [0]
        await asyncio.sleep(FIRST_RETRY_S * 2.4)
        attempt(asyncpg.ReadOnlySQLTransactionError("cannot execute UPDATE in a read-only "
                                                    "transaction"))
        await asyncio.sleep(0)
        assert expired == [0, 1]
        await asyncio.sleep(FIRST_RETRY_S * 4.8)
        attempt(TimeoutError())
        await asyncio.sleep(0)
        assert expired == [0, 1, 2]

    asyncio.run(main())
