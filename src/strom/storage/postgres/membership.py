"""Brokers sharing one PostgreSQL database: registration, sessions renewed by heartbeats, and
the list of live brokers, all judged by the database's clock (brokers compare nothing but
their own monotonic time).

A broker registers with a new session epoch and an expiry `broker.session.timeout.ms` ahead;
every `broker.heartbeat.interval.ms` it pushes the expiry on (only while its session epoch is
still the row's: a broker whose row was taken over stops renewing it) and reads the live
brokers, which Metadata and DescribeCluster answer from memory. A clean stop expires the
session at once; a broker that dies drops out of the list when its session expires. A node id
held by a live broker at another address is refused at start (Kafka refuses a duplicate
broker registration); the same address is this broker's own earlier life (a restart after a
crash) and takes the row over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Final

from strom.storage.api import BrokerRegistration, StorageError
from strom.storage.postgres.connect import Health, StartupError

log = logging.getLogger(__name__)

REGISTER: Final = """
INSERT INTO strom_broker (node_id, host, port, rack, session_epoch, expires_at)
VALUES ($1, $2, $3, $4, 1, clock_timestamp() + $5 * interval '1 millisecond')
ON CONFLICT (node_id) DO UPDATE SET
    host = excluded.host, port = excluded.port, rack = excluded.rack,
    registered_at = now(), session_epoch = strom_broker.session_epoch + 1,
    expires_at = excluded.expires_at
WHERE strom_broker.expires_at <= clock_timestamp()
   OR (strom_broker.host = excluded.host AND strom_broker.port = excluded.port)
RETURNING session_epoch
"""
HOLDER: Final = """
SELECT host, port, extract(epoch FROM expires_at - clock_timestamp()) AS left_s
FROM strom_broker WHERE node_id = $1
"""
RENEW: Final = """
UPDATE strom_broker SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
WHERE node_id = $1 AND session_epoch = $2
"""
LIVE: Final = """
SELECT node_id, host, port, rack FROM strom_broker
WHERE expires_at > clock_timestamp() ORDER BY node_id
"""
LEAVE: Final = """
UPDATE strom_broker SET expires_at = clock_timestamp() WHERE node_id = $1 AND session_epoch = $2
"""


class Membership:
    def __init__(self, pool: Any, health: Health, heartbeat_ms: int, session_ms: int) -> None:
        self.pool = pool
        self.health = health
        self.heartbeat_ms = heartbeat_ms
        self.session_ms = session_ms
        self.me: BrokerRegistration | None = None
        self.session_epoch = 0
        self.live: list[BrokerRegistration] = []
        self._task: asyncio.Task[None] | None = None

    async def register(self, me: BrokerRegistration) -> None:
        """Raises StartupError if a live broker at another address holds the node id."""
        with self.health.statement("register the broker"):
            epoch = await self.pool.fetchval(REGISTER, me.node_id, me.host, me.port, me.rack,
                                             self.session_ms)
            if epoch is None:
                holder = await self.pool.fetchrow(HOLDER, me.node_id)
        if epoch is None:
            raise StartupError(
                f"node id {me.node_id} belongs to a live broker at {holder['host']}:"
                f"{holder['port']} (its session expires in {float(holder['left_s']):.1f} s "
                "unless it renews it): give this broker another --node-id (node.id)")
        self.me, self.session_epoch = me, int(epoch)
        await self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._beat())
        log.info("registered as node %d (session %d); %d live broker(s)", me.node_id,
                 self.session_epoch, len(self.live))

    async def refresh(self) -> Sequence[BrokerRegistration]:
        with self.health.statement("list the brokers"):
            rows = await self.pool.fetch(LIVE)
        self.live = [BrokerRegistration(r["node_id"], r["host"], r["port"], r["rack"])
                     for r in rows]
        return self.live

    async def _beat(self) -> None:
        """Renews the session and reads the live brokers, every heartbeat interval."""
        while True:
            await asyncio.sleep(self.heartbeat_ms / 1000)
            try:
                await self.renew()
            except StorageError as exc:  # the database does not answer: Health logged it
                log.debug("heartbeat failed: %s", exc)

    async def renew(self) -> None:
        assert self.me is not None
        with self.health.statement("renew the broker's session"):
            status = await self.pool.execute(RENEW, self.me.node_id, self.session_epoch,
                                             self.session_ms)
        if status != "UPDATE 1":
            log.error("node %d's registration was taken over by another broker (session "
                      "%d is no longer current)", self.me.node_id, self.session_epoch)
        await self.refresh()

    async def leave(self) -> None:
        """Stops renewing and expires the session at once (a clean stop)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.me is None:
            return
        try:
            with self.health.statement("deregister the broker"):
                await self.pool.execute(LEAVE, self.me.node_id, self.session_epoch)
        except StorageError as exc:
            log.warning("could not deregister node %d (%s): it drops out of the list when "
                        "its session expires", self.me.node_id, exc)
        self.me = None
