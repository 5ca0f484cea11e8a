"""Brokers sharing one PostgreSQL database: registration, sessions renewed by heartbeats, and
the list of live brokers, all judged by the database's clock (brokers compare nothing but
their own monotonic time).

A broker registers with a new session epoch and an expiry `broker.session.timeout.ms` ahead;
every `broker.heartbeat.interval.ms` it pushes the expiry on (only while the session has not
expired and is still the row's: a broker whose session lapsed, or whose row was taken over,
starts a new session and with it loses every lease it held) and reads the live brokers, which
Metadata and DescribeCluster answer from memory. A clean stop expires the
session at once; a broker that dies drops out of the list when its session expires. A node id
held by a live broker at another address is refused at start (Kafka refuses a duplicate
broker registration); the same address is this broker's own earlier life (a restart after a
crash) and takes the row over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from strom.storage.api import (
    BrokerRegistration,
    StorageError,
    format_endpoints,
    parse_endpoints,
)
from strom.storage.postgres.connect import Health, StartupError

log = logging.getLogger(__name__)

REGISTER: Final = """
INSERT INTO strom_broker (node_id, host, port, rack, session_epoch, expires_at, listeners)
VALUES ($1, $2, $3, $4, 1, clock_timestamp() + $5 * interval '1 millisecond', $7)
ON CONFLICT (node_id) DO UPDATE SET
    host = excluded.host, port = excluded.port, rack = excluded.rack,
    listeners = excluded.listeners,
    registered_at = now(), session_epoch = strom_broker.session_epoch + 1,
    expires_at = excluded.expires_at
WHERE strom_broker.expires_at <= clock_timestamp()
   OR ($6::bigint IS NULL
       AND strom_broker.host = excluded.host AND strom_broker.port = excluded.port)
   OR strom_broker.session_epoch = $6::bigint
RETURNING session_epoch
"""
HOLDER: Final = """
SELECT host, port, extract(epoch FROM expires_at - clock_timestamp()) AS left_s
FROM strom_broker WHERE node_id = $1
"""
RENEW: Final = """
UPDATE strom_broker SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
WHERE node_id = $1 AND session_epoch = $2 AND expires_at > clock_timestamp()
"""
LIVE: Final = """
SELECT node_id, host, port, rack, session_epoch, listeners FROM strom_broker
WHERE expires_at > clock_timestamp() ORDER BY node_id
"""
LEAVE: Final = """
UPDATE strom_broker SET expires_at = clock_timestamp() WHERE node_id = $1 AND session_epoch = $2
"""


class SessionLost(StorageError):
    """This broker's session expired (or another process of its node id took it over) before
    it could renew it: every lease it held may have moved."""


class Membership:
    """This broker's session and the live brokers; `renew` and `refresh` are called by the
    engine's cluster loop (cluster_sync.py) every heartbeat interval.

    The session, and with it every lease this broker holds, is valid in the database until
    `session_ms` after the database ran the last renewal. The broker counts from when it *sent*
    that renewal (its own monotonic clock, which cannot run ahead of that point), and stops
    acknowledging anything one heartbeat interval before the earliest moment the session
    could expire (`valid`): a broker that is paused, or cut off from the database, is no
    longer acting as an owner by the time another broker may take its leases over."""

    def __init__(self, pool: Any, health: Health, heartbeat_ms: int, session_ms: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.health = health
        self.heartbeat_ms = heartbeat_ms
        self.session_ms = session_ms
        self.clock = clock
        self.me: BrokerRegistration | None = None
        self.session_epoch = 0
        self.live: list[BrokerRegistration] = []
        self.sessions: dict[int, int] = {}  # live node id -> its session epoch
        self.valid_until = 0.0  # monotonic: the last renewal sent + session - heartbeat

    def valid(self) -> bool:
        return self.me is not None and self.clock() < self.valid_until

    def _renewed(self, sent_at: float) -> None:
        self.valid_until = sent_at + (self.session_ms - self.heartbeat_ms) / 1000

    def statement_timeout_s(self) -> float:
        """How long a membership statement may take before it counts as failed (and the
        pool's connections are replaced): half the time a session outlasts a heartbeat, so a
        slow database still renews in time and a silent one is left while a retry can."""
        return max((self.session_ms - self.heartbeat_ms) / 2000, self.heartbeat_ms / 1000)

    async def register(self, me: BrokerRegistration, previous: int | None = None) -> None:
        """Starts a new session. At start (`previous` None) a live registration of the node id
        at this address is this broker's own earlier life (a restart after a crash) and is
        taken over; a live one at another address raises StartupError. After this broker's
        session lapsed (`previous` its epoch), only its own expired row is taken back: if
        another process registered the node id meanwhile, StartupError too."""
        sent_at = self.clock()
        with self.health.statement("register the broker"):
            epoch = await self.pool.fetchval(REGISTER, me.node_id, me.host, me.port, me.rack,
                                             self.session_ms, previous,
                                             format_endpoints(me.listeners))
            if epoch is None:
                holder = await self.pool.fetchrow(HOLDER, me.node_id)
        if epoch is None:
            raise StartupError(
                f"node id {me.node_id} belongs to a live broker at {holder['host']}:"
                f"{holder['port']} (its session expires in {float(holder['left_s']):.1f} s "
                "unless it renews it): give this broker another --node-id (node.id)")
        self.me, self.session_epoch = me, int(epoch)
        self._renewed(sent_at)
        await self.refresh()
        log.info("registered as node %d (session %d); %d live broker(s)", me.node_id,
                 self.session_epoch, len(self.live))

    async def refresh(self) -> Sequence[BrokerRegistration]:
        with self.health.statement("list the brokers"):
            rows = await self.pool.fetch(LIVE, timeout=self.statement_timeout_s())
        self.live = [BrokerRegistration(r["node_id"], r["host"], r["port"], r["rack"],
                                        parse_endpoints(r["listeners"]))
                     for r in rows]
        self.sessions = {r["node_id"]: int(r["session_epoch"]) for r in rows}
        return self.live

    async def renew(self) -> None:
        """Pushes the session's expiry on; raises SessionLost if it had expired (or was
        taken over), StorageError if the database did not answer."""
        assert self.me is not None
        sent_at = self.clock()
        with self.health.statement("renew the broker's session"):
            status = await self.pool.execute(RENEW, self.me.node_id, self.session_epoch,
                                             self.session_ms,
                                             timeout=self.statement_timeout_s())
        if status != "UPDATE 1":
            self.valid_until = 0.0
            raise SessionLost(f"node {self.me.node_id}'s session {self.session_epoch} expired "
                              "before this broker could renew it (paused, or cut off from "
                              "the database): its leases may have moved")
        self._renewed(sent_at)

    async def leave(self) -> None:
        """Expires the session at once (a clean stop)."""
        if self.me is None:
            return
        self.valid_until = 0.0
        try:
            with self.health.statement("deregister the broker"):
                await self.pool.execute(LEAVE, self.me.node_id, self.session_epoch,
                                        timeout=self.statement_timeout_s())
        except StorageError as exc:
            log.warning("could not deregister node %d (%s): it drops out of the list when "
                        "its session expires", self.me.node_id, exc)
        self.me = None
