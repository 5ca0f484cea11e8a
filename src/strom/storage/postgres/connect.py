"""Reaching PostgreSQL: the connection pool, the session settings every connection gets, and
how database errors become storage errors.

The URL is libpq's (`postgresql://USER[:PASSWORD]@HOST[:PORT][,HOST2[:PORT2]...]/DB?...`,
`target_session_attrs=read-write` to find the primary among several hosts), handed to asyncpg;
with several hosts the pool tries them one at a time, `connect_timeout` (default 10 s) each
(host_list.py). Errors at start say what to fix in one line (StartupError); errors while
running are StorageUnavailable (retriable: produce answers KAFKA_STORAGE_ERROR), logged once
per outage, with a line when the database answers again. A server that refuses writes as
read-only (a standby, or an old primary fenced after a failover) makes the pool replace its
connections, so that reconnecting finds the host that accepts writes instead of that one; so
does a statement that got no answer in time (a frozen or cut-off server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

import asyncpg

from strom.storage.api import StorageError, StorageUnavailable
from strom.storage.postgres.host_list import connect_each, parse_hosts

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S: Final = 30.0  # the default of the broker's storage.statement.timeout.ms
POOL_SIZE: Final = 8
CONTROL_POOL_SIZE: Final = 3  # heartbeats and leases, topic reads, one LISTENing
FIRST_RETRY_S: Final = 0.05  # while the database is down: the first wait before trying again
MAX_RETRY_S: Final = 1.0
# Server-side limits so that nothing a broker starts can hold a lock for long if the broker
# stalls or loses the database (appends are single statements; these catch everything else).
SESSION_SETTINGS: Final = {
    # statement_timeout: the broker's storage.statement.timeout.ms (create_pool)
    "lock_timeout": "10s",
    "idle_in_transaction_session_timeout": "10s",
    "application_name": "strom",
}
# Failures of the database or the way to it (as opposed to a bug in a statement).
DATABASE_DOWN: Final = (OSError, TimeoutError, asyncpg.InterfaceError,
                        asyncpg.InternalClientError,
                        asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                        asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
                        asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError,
                        asyncpg.TooManyConnectionsError, asyncpg.DiskFullError,
                        asyncpg.InsufficientResourcesError, asyncpg.ReadOnlySQLTransactionError,
                        asyncpg.IdleInTransactionSessionTimeoutError,
                        # the database dropped or the role changed while running:
                        asyncpg.InvalidCatalogNameError,
                        asyncpg.InvalidAuthorizationSpecificationError)
# Failures in which the answer to a statement was lost (the connection died, or no answer came
# in time), as opposed to an error the server answered: a write that met one of these may or
# may not have been committed.
ANSWER_LOST: Final = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                      asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError,
                      asyncpg.CrashShutdownError)
# Failures after which the pool's connections are replaced (reconnecting goes through the
# host list again): the server cannot take writes (a standby in recovery, a primary made
# read-only), or it did not answer in time (frozen, or cut off: its other connections would
# each wait as long, and no connection reset tells the pool they are dead).
RECONNECT: Final = (asyncpg.ReadOnlySQLTransactionError, TimeoutError)


class StartupError(StorageError):
    """The database cannot be used at all (wrong URL, credentials, a missing database, a
    schema from a newer strom): the message says what to do."""


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


async def create_pool(url: str, node_name: str, size: int = POOL_SIZE,
                      statement_timeout_s: float = COMMAND_TIMEOUT_S) -> Any:
    """A pool whose statements fail after `statement_timeout_s` without an answer (client
    side, and the server's statement_timeout for anything it runs that long)."""
    settings = {**SESSION_SETTINGS, "application_name": node_name,
                "statement_timeout": f"{round(statement_timeout_s * 1000)}ms"}
    try:
        hosts = parse_hosts(url)
        return await asyncpg.create_pool(
            hosts.url, min_size=size, max_size=size, timeout=hosts.timeout_s,
            command_timeout=statement_timeout_s, server_settings=settings,
            max_inactive_connection_lifetime=60.0, statement_cache_size=64,
            connect=connect_each(hosts) if len(hosts.hosts) > 1 else None)
    except asyncpg.InvalidPasswordError:
        raise StartupError(f"PostgreSQL at {redact(url)} refused the user name or password: "
                           "check the credentials in --storage") from None
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise StartupError(f"PostgreSQL at {redact(url)} refused the connection: {exc} "
                           "(check the user name in --storage and pg_hba.conf)") from None
    except asyncpg.InvalidCatalogNameError:
        raise StartupError(f"PostgreSQL at {redact(url)}: the database does not exist; create "
                           "it first (createdb NAME, or CREATE DATABASE NAME)") from None
    except (OSError, TimeoutError, asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError) as exc:
        raise StartupError(f"cannot reach PostgreSQL at {redact(url)}: {_reason(exc)} (is "
                           "the server running, and the host and port right?)") from None
    except asyncpg.TargetServerAttributeNotMatched:
        raise StartupError(f"PostgreSQL at {redact(url)}: no host accepts writes (standbys "
                           "only: promote one, or add the primary to the URL)") from None
    except (ValueError, asyncpg.ClientConfigurationError) as exc:
        raise StartupError(f"the storage URL {redact(url)} is not a valid PostgreSQL URL: "
                           f"{exc}") from None
    except asyncpg.PostgresError as exc:
        raise StartupError(f"PostgreSQL at {redact(url)} refused to start a session: "
                           f"{exc}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


class Health:
    """Whether the database answered the last statement: one log line when it stops
    answering, one when it answers again. While it does not, calls fail at once without
    trying, except one now and then (backoff from FIRST_RETRY_S doubling to MAX_RETRY_S), so
    a down database costs clients no waiting and the broker no connection storms."""

    def __init__(self, url: str) -> None:
        self.url = redact(url)
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.backoff_s = FIRST_RETRY_S
        self._reconnect: Callable[[], Awaitable[None]] | None = None
        self._reconnecting: set[asyncio.Future[None]] = set()

    def reconnect_with(self, expire: Callable[[], Awaitable[None]]) -> None:
        """How to drop the pool's connections (`Pool.expire_connections`) after a RECONNECT
        failure: each is replaced at its next use by a new connection, which the host list
        and target_session_attrs=read-write send to the server that accepts writes."""
        self._reconnect = expire

    def _replace_connections(self, exc: BaseException) -> None:
        if self._reconnect is None:
            return
        if self.down_since is None:
            log.warning("PostgreSQL at %s: %s; replacing the pool's connections", self.url,
                        _reason(exc))
        done = asyncio.ensure_future(self._reconnect())
        self._reconnecting.add(done)
        done.add_done_callback(self._reconnecting.discard)

    def failed(self, exc: BaseException) -> None:
        now = asyncio.get_running_loop().time()
        if self.down_since is None:
            self.down_since = now
            log.error("PostgreSQL at %s does not answer (%s): appends are refused with "
                      "KAFKA_STORAGE_ERROR (retriable) until it does; retrying", self.url,
                      _reason(exc))
        self.retry_at = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, MAX_RETRY_S)

    def answered(self) -> None:
        if self.down_since is not None:
            down_for = asyncio.get_running_loop().time() - self.down_since
            self.down_since = None
            self.backoff_s = FIRST_RETRY_S
            log.warning("PostgreSQL at %s answers again after %.1f s", self.url, down_for)

    @contextlib.contextmanager
    def statement(self, what: str) -> Iterator[None]:
        """Runs a database call: a failure of the database becomes StorageUnavailable."""
        if self.down_since is not None:
            wait = self.retry_at - asyncio.get_running_loop().time()
            if wait > 0:
                raise StorageUnavailable(f"{what}: PostgreSQL does not answer (next attempt "
                                         f"in {wait:.1f} s)")
        try:
            yield
        except DATABASE_DOWN as exc:
            if isinstance(exc, RECONNECT):
                self._replace_connections(exc)
            self.failed(exc)
            raise StorageUnavailable(f"{what}: PostgreSQL did not answer "
                                     f"({_reason(exc)})") from exc
        except asyncpg.PostgresError as exc:
            raise StorageError(f"{what}: PostgreSQL refused the statement: {exc}") from exc
        else:
            self.answered()
