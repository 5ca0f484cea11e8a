"""Connections to the other brokers of the cluster, one per node id (Kafka's inter-broker
NetworkClient), for the requests one broker sends another: transaction markers to a
partition's leader (WriteTxnMarkers) and KIP-890 verifications with a transaction coordinator
(AddPartitionsToTxn v4+, verify_only).

A connection is opened on first use from the address the broker directory (the storage
engine's `brokers()`) lists for the node id; the directory is asked again when a node id is not
in the addresses known, or after a connection to it failed (the broker may have restarted
elsewhere). A failed connection is replaced on the next send; concurrent sends to a node
share one opening. Peers identify themselves with the client id `strom-broker-<node id>`, and
connect as the inter-broker listener asks (TLS, SASL: strom.security.client_security); a
connection whose SASL session the peer limits (connections.max.reauth.ms) is replaced before
it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from kio.static.protocol import Payload

from strom.protocol.client import KafkaConnection, PeerUnavailable
from strom.protocol.messages import RequestBuilder
from strom.security.client_security import ClientSecurity
from strom.storage.api import BrokerRegistration, StorageError

log = logging.getLogger(__name__)

PEER_CLIENT_ID: Final = "strom-broker-{node_id}"
_PEER_CLIENT_ID: Final = re.compile(r"strom-broker-(-?[0-9]{1,10})")

# Builds the request for the version negotiated with the peer.
BuildRequest = Callable[[RequestBuilder], Payload]


class BrokerDirectory(Protocol):
    """Where the live brokers are listed (a StorageEngine is one)."""

    async def brokers(self) -> Sequence[BrokerRegistration]: ...


def peer_client_id(node_id: int) -> str:
    return PEER_CLIENT_ID.format(node_id=node_id)


def peer_node_id(client_id: str | None) -> int | None:
    """The node id a request's client id claims to send from, if it is a peer broker's."""
    match = _PEER_CLIENT_ID.fullmatch(client_id or "")
    return None if match is None else int(match.group(1))


class Peers:
    """One connection per node id, opened lazily, replaced after a failure."""

    def __init__(self, directory: BrokerDirectory, node_id: int, *,
                 connect_timeout_s: float, request_timeout_s: float,
                 security: ClientSecurity | None = None) -> None:
        self.directory = directory
        self.security = security or ClientSecurity()
        self.node_id = node_id
        self.client_id = peer_client_id(node_id)
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self._addresses: dict[int, tuple[str, int]] = {}
        self._connections: dict[int, KafkaConnection] = {}
        self._opening: dict[int, asyncio.Task[KafkaConnection]] = {}
        self._closed = False

    async def send(self, node_id: int, api_key: int, build: BuildRequest, max_version: int,
                   min_version: int = 0) -> Any:
        """`build(RequestBuilder(api_key, v))` sent to `node_id` in the highest version v in
        [min_version, max_version] that the peer serves; returns its answer. Raises
        PeerUnavailable (not reachable, failed, no common version, or stopping)."""
        connection = await self.connection(node_id)
        version = connection.version_for(api_key, max_version, min_version)
        return await connection.request(build(RequestBuilder(api_key, version)))

    async def connection(self, node_id: int) -> KafkaConnection:
        """The open connection to `node_id`, opening one if there is none."""
        if self._closed:
            raise PeerUnavailable(f"node {node_id}: this broker is stopping")
        current = self._connections.get(node_id)
        if current is not None and not current.closed:
            return current
        if current is not None:  # failed: its address may be stale too
            del self._connections[node_id]
            self._addresses.pop(node_id, None)
            await current.close()
        opening = self._opening.get(node_id)
        if opening is None:
            opening = asyncio.get_running_loop().create_task(self._open(node_id))
            self._opening[node_id] = opening
            opening.add_done_callback(self._opened)
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if opening.cancelled() and task is not None and not task.cancelling():
                raise PeerUnavailable(f"node {node_id}: this broker is stopping") from None
            raise  # this sender was cancelled

    def _opened(self, task: asyncio.Task[KafkaConnection]) -> None:
        for node_id, opening in list(self._opening.items()):
            if opening is task:
                del self._opening[node_id]
        if not task.cancelled():
            task.exception()  # retrieved: every sender waiting for it has it, or gave up

    async def close(self) -> None:
        """Closes every connection; sends after this raise PeerUnavailable."""
        self._closed = True
        opening = list(self._opening.values())
        for task in opening:
            task.cancel()
        for task in opening:
            with contextlib.suppress(asyncio.CancelledError, PeerUnavailable):
                await task
        connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            await connection.close()

    async def _open(self, node_id: int) -> KafkaConnection:
        host, port = await self._address(node_id)
        try:
            connection = await self.security.open(
                host, port, self.client_id, connect_timeout_s=self.connect_timeout_s,
                request_timeout_s=self.request_timeout_s, peer=f"node {node_id} ({host}:{port})")
        except PeerUnavailable:
            self._addresses.pop(node_id, None)  # ask the directory again next time
            raise
        if self._closed:
            await connection.close()
            raise PeerUnavailable(f"node {node_id}: this broker is stopping")
        self._connections[node_id] = connection
        log.debug("connected to node %d at %s:%d", node_id, host, port)
        return connection

    async def _address(self, node_id: int) -> tuple[str, int]:
        if node_id not in self._addresses:
            try:
                live = await self.directory.brokers()
            except (StorageError, OSError) as exc:
                raise PeerUnavailable(f"node {node_id}: cannot list the live brokers: {exc}"
                                      ) from exc
            self._addresses = {b.node_id: (b.host, b.port) for b in live}
        address = self._addresses.get(node_id)
        if address is None:
            raise PeerUnavailable(f"node {node_id} is not a live broker")
        return address
