"""pytest plugin (entry point `strom`): the `strom_broker` fixture, one broker per test, and
`postgres_server` / `postgres_url`: a private PostgreSQL server for the test session (skipped
with the reason if PostgreSQL is not installed) and a new empty database on it per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from strom.testing.embedded import EmbeddedBroker
    from strom.testing.postgres import PostgresServer


@pytest.fixture
def strom_broker() -> Iterator[EmbeddedBroker]:
    """A fresh in-process broker on a free loopback port, removed after the test."""
    from strom.testing.embedded import EmbeddedBroker  # imported late: plugins load early

    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test session's own (initdb in a temporary directory, a free
    loopback port), stopped and removed at the end."""
    from strom.testing.postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database for this test (`--storage` / `storage=` takes it)."""
    return postgres_server.new_database()
