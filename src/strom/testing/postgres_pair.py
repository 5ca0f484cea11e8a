"""A private PostgreSQL primary with a synchronous standby, for failover tests:

    from strom.testing.postgres_pair import PostgresPair
    with PostgresPair() as pair:
        broker = EmbeddedBroker(storage=pair.url)   # both hosts, target_session_attrs
        pair.primary.kill(); pair.promote()          # the broker carries on on the standby

The primary runs with `wal_level = replica`; the standby is made with `pg_basebackup -R`
through a replication slot and started; then the primary's `synchronous_standby_names` names
it and `start()` returns once `pg_stat_replication` shows it streaming with `sync_state =
'sync'`, so every commit the primary acknowledges from then on is on the standby's disk too.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Final

from strom.testing.postgres import DATABASE, PASSWORD, USER, PostgresServer

STANDBY_NAME: Final = "strom_standby"
SYNC_WAIT_S: Final = 60.0


class PostgresPair:
    """`primary` and `standby` are PostgresServers; `url` names both hosts, primary first,
    with `target_session_attrs=read-write`, so a client finds whichever accepts writes."""

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.primary = PostgresServer(settings={"wal_level": "replica", "max_wal_senders": "4",
                                                "max_replication_slots": "4",
                                                **(settings or {})})
        self.standby: PostgresServer | None = None
        self._databases = 0

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self._standby().port}"
        return (f"postgresql://{USER}:{PASSWORD}@{hosts}/{database}"
                "?target_session_attrs=read-write")

    def new_database(self) -> str:
        """A new, empty database (made on the primary, replicated); returns its URL."""
        self._databases += 1
        name = f"strom_pair_{self._databases}"
        self.primary.psql("postgres", f"CREATE DATABASE {name}")
        return self.url_for(name)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.primary.start()
        self.standby = self.primary.standby(STANDBY_NAME)
        self.standby.start()
        self.primary.psql("postgres",
                          f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
        self.primary.psql("postgres", "SELECT pg_reload_conf()")
        self.wait_synchronous()

    def wait_synchronous(self) -> None:
        """Returns once the primary reports the standby streaming as its synchronous one."""
        deadline = time.monotonic() + SYNC_WAIT_S
        query = (f"SELECT state, sync_state FROM pg_stat_replication "
                 f"WHERE application_name = '{STANDBY_NAME}'")
        while (seen := self.primary.psql("postgres", query).strip()) != "streaming|sync":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby is not a synchronous one: {seen!r}")
            time.sleep(0.05)

    def promote(self) -> None:
        """Promotes the standby; returns once it accepts writes."""
        self._standby().promote()

    def close(self) -> None:
        if self.standby is not None:
            self.standby.close()
        self.primary.close()

    def __enter__(self) -> PostgresPair:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _standby(self) -> PostgresServer:
        if self.standby is None:
            raise RuntimeError("the pair is not started")
        return self.standby
