"""A Kafka client connection on kio's schemas: how one broker sends requests to another.

    connection = await KafkaConnection.open("10.0.0.2", 9092, client_id="strom-broker-1",
                                            connect_timeout_s=10, request_timeout_s=30)
    version = connection.version_for(WRITE_TXN_MARKERS, max_version=2)
    response = await connection.request(RequestBuilder(27, version).make(...))

Opening connects and negotiates with ApiVersions (the highest version both the peer and kio
know, retried in the peer's highest if it does not serve ours, per KIP-511). Requests are
pipelined: each gets a correlation id and a future, one reader task resolves the futures as
answers arrive, so several requests can be in flight at once (the peer answers a connection's
requests in order, as Kafka's brokers do). Every failure (refused, reset, EOF, a timeout, an
answer that does not decode or answers no request) raises `PeerUnavailable`, saying which
peer and why; a failure fails every request in flight and closes the connection, as Kafka's
NetworkClient disconnects a node whose request timed out. A closed connection is not reused:
its owner (strom.broker.peers) opens another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from kio.index import KioIndexError
from kio.schema.index import api_key_map, schema_name_map
from kio.static.constants import EntityType
from kio.static.protocol import Entity, Payload

from strom import __version__
from strom.protocol.messages import (
    API_VERSIONS_KEY,
    ErrorCode,
    RequestBuilder,
    decode_response,
    encode_request,
    response_correlation_id,
)
from strom.protocol.safe_decoder import DecodeError

log = logging.getLogger(__name__)

# A peer's answer larger than this closes the connection (the requests peers exchange are
# small: markers and verifications).
RESPONSE_BYTES_MAX: Final = 100 * 1024 * 1024
# Requests waiting for an answer on one connection; a sender past it waits for room.
IN_FLIGHT_MAX: Final = 100
CLOSE_TIMEOUT_S: Final = 5.0
SOFTWARE_NAME: Final = "strom"


class PeerUnavailable(Exception):
    """The peer could not be reached or did not answer; the message says which and why."""


# Authenticates a connection once versions are negotiated (strom.security.sasl_client).
Authenticate = Callable[["KafkaConnection"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class VersionRange:
    min_version: int
    max_version: int


@cache
def kio_versions(api_key: int) -> VersionRange | None:
    """The versions of `api_key` kio has both request and response schemas for."""
    name = api_key_map.get(api_key)
    if name is None:
        return None
    versions = [v for v, kinds in schema_name_map[name].items()
                if EntityType.request in kinds and EntityType.response in kinds]
    return VersionRange(min(versions), max(versions)) if versions else None


def pick_version(peer: str, peer_versions: Mapping[int, VersionRange], api_key: int,
                 max_version: int, min_version: int = 0) -> int:
    """The highest version of `api_key` in [min_version, max_version] that kio knows and
    `peer` serves (`peer_versions`, from its ApiVersions answer). Raises PeerUnavailable if
    there is none, ValueError for an API kio does not know."""
    ours, theirs = kio_versions(api_key), peer_versions.get(api_key)
    if ours is None:
        raise ValueError(f"kio does not know API key {api_key}")
    if theirs is None:
        raise PeerUnavailable(f"{peer} does not serve {api_name(api_key)}")
    low = max(min_version, ours.min_version, theirs.min_version)
    high = min(max_version, ours.max_version, theirs.max_version)
    if high < low:
        raise PeerUnavailable(
            f"{peer} serves {api_name(api_key)} v{theirs.min_version}-{theirs.max_version}, "
            f"this broker sends v{min_version}-{max_version}")
    return high


def api_name(api_key: int) -> str:
    return api_key_map.get(api_key, f"api {api_key}")


@dataclass(slots=True)
class _Pending:
    api_key: int
    version: int
    answer: asyncio.Future[Entity]


class KafkaConnection:
    """One TCP connection to one broker; `open` it, `request` on it, `close` it."""

    def __init__(self, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 client_id: str, request_timeout_s: float) -> None:
        """Use `open`."""
        self.peer = peer
        self.client_id = client_id
        self.request_timeout_s = request_timeout_s
        self.api_versions: Mapping[int, VersionRange] = {}
        self._reader = reader
        self._writer = writer
        self._pending: dict[int, _Pending] = {}
        self._next_correlation_id = 0
        self._room = asyncio.Semaphore(IN_FLIGHT_MAX)
        self._failure: str | None = None  # why the connection closed, once it has
        # When a session the server limits (connections.max.reauth.ms) is to be given up.
        self.expires_at: float | None = None
        self._reading = asyncio.get_running_loop().create_task(self._read_answers())

    @classmethod
    async def open(cls, host: str, port: int, client_id: str, *, connect_timeout_s: float,
                   request_timeout_s: float, peer: str | None = None,
                   tls: ssl.SSLContext | None = None,
                   authenticate: Authenticate | None = None) -> KafkaConnection:
        """Connects (over TLS with `tls`, the host checked against the certificate if the
        context checks host names) and negotiates versions within `connect_timeout_s` and
        `request_timeout_s` (a broker's socket.connection.setup.timeout.ms and
        request.timeout.ms), then runs `authenticate` (a SASL exchange); `peer` names the
        other side in errors (default host:port). Raises PeerUnavailable."""
        name = peer or f"{host}:{port}"
        try:
            async with asyncio.timeout(connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls is not None else None)
        except TimeoutError:
            raise PeerUnavailable(f"{name}: no connection within {connect_timeout_s:g} s"
                                  ) from None
        except ssl.SSLError as exc:
            raise PeerUnavailable(f"{name}: TLS handshake failed: {_reason(exc)}") from None
        except ConnectionError as exc:
            if tls is None or isinstance(exc, ConnectionRefusedError):
                raise PeerUnavailable(f"{name}: cannot connect: {_reason(exc)}") from None
            raise PeerUnavailable(f"{name}: TLS handshake failed: {_reason(exc)} (is it an "
                                  "SSL or SASL_SSL listener?)") from None
        except OSError as exc:
            raise PeerUnavailable(f"{name}: cannot connect: {_reason(exc)}") from None
        connection = cls(name, reader, writer, client_id, request_timeout_s)
        try:
            await connection._negotiate()
            if authenticate is not None:
                await authenticate(connection)
        except BaseException:
            await connection.close()
            raise
        return connection

    @property
    def closed(self) -> bool:
        """Failed or closed, or its authenticated session is (nearly) over (KIP-368)."""
        if self.expires_at is not None and time.monotonic() >= self.expires_at:
            return True
        return self._failure is not None

    def version_for(self, api_key: int, max_version: int, min_version: int = 0) -> int:
        """The highest version of `api_key` in [min_version, max_version] that the peer
        serves and kio knows. Raises PeerUnavailable if there is none."""
        return pick_version(self.peer, self.api_versions, api_key, max_version, min_version)

    async def request(self, body: Payload, timeout_s: float | None = None) -> Any:
        """Sends `body` (its api key and version are its class's) and returns the answer.
        Raises PeerUnavailable; an answer not in time fails the whole connection."""
        if self._failure is not None:
            raise self._unavailable()
        timeout = self.request_timeout_s if timeout_s is None else timeout_s
        api_key, version = int(body.__api_key__), int(body.__version__)
        answer: asyncio.Future[Entity] | None = None
        try:
            async with asyncio.timeout(timeout):
                async with self._room:
                    answer = self._send(api_key, version, body)
                    await self._writer.drain()
                    return await answer
        except TimeoutError:
            if answer is not None:
                answer.cancel()
            self._fail(f"no answer to {api_name(api_key)} v{version} within {timeout:g} s")
        except (ConnectionError, OSError) as exc:
            self._fail(f"sending {api_name(api_key)} failed: {_reason(exc)}")
        raise self._unavailable()

    async def close(self) -> None:
        """Fails the requests in flight and closes the socket."""
        self._fail("connection closed by this broker", log_level=logging.DEBUG)
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()

    # -- internals ------------------------------------------------------------------------

    def _send(self, api_key: int, version: int, body: Payload) -> asyncio.Future[Entity]:
        """Writes the frame now (no await: frames never interleave) and registers its
        future under a new correlation id."""
        if self._failure is not None:
            raise self._unavailable()
        correlation_id = self._next_correlation_id
        self._next_correlation_id = (correlation_id + 1) & 0x7FFF_FFFF
        frame = encode_request(correlation_id, self.client_id, body)
        answer: asyncio.Future[Entity] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = _Pending(api_key, version, answer)
        self._writer.write(frame)
        return answer

    async def _negotiate(self) -> None:
        """ApiVersions in our highest version, or in the peer's highest if it refuses ours."""
        versions = kio_versions(API_VERSIONS_KEY)
        assert versions is not None
        version = versions.max_version
        for _attempt in range(2):
            response = await self.request(_api_versions_request(version))
            if response.error_code == ErrorCode.unsupported_version:
                theirs = {int(k.api_key): int(k.max_version) for k in response.api_keys}
                if API_VERSIONS_KEY not in theirs or theirs[API_VERSIONS_KEY] >= version:
                    break
                version = theirs[API_VERSIONS_KEY]
                continue
            if response.error_code != ErrorCode.none:
                break
            self.api_versions = {int(k.api_key): VersionRange(int(k.min_version),
                                                              int(k.max_version))
                                 for k in response.api_keys}
            return
        self._fail(f"ApiVersions v{version} answered {ErrorCode(response.error_code).name}")
        raise self._unavailable()

    async def _read_answers(self) -> None:
        """Resolves the futures of the requests in flight as their answers arrive."""
        try:
            while True:
                head = await self._reader.readexactly(4)
                size = int.from_bytes(head, "big", signed=True)
                if not 4 <= size <= RESPONSE_BYTES_MAX:
                    raise DecodeError(f"an answer of {size} bytes")
                self._resolve(await self._reader.readexactly(size))
        except asyncio.IncompleteReadError as exc:
            self._fail("the peer closed the connection" + (" inside an answer"
                                                            if exc.partial else ""))
        except (ConnectionError, OSError) as exc:
            self._fail(f"connection lost: {_reason(exc)}")
        except (DecodeError, KioIndexError) as exc:
            self._fail(f"unreadable answer: {exc}")

    def _resolve(self, frame: bytes) -> None:
        correlation_id = response_correlation_id(frame)
        pending = self._pending.get(correlation_id)
        if pending is None:
            raise DecodeError(f"an answer to correlation id {correlation_id}, which is not "
                              f"in flight")
        # Decoded while still in flight: an answer that does not decode fails its request
        # with the others (in _fail), not after the request's timeout.
        body = decode_response(pending.api_key, pending.version, frame)
        del self._pending[correlation_id]
        if not pending.answer.done():  # its sender gave up (cancelled)
            pending.answer.set_result(body)

    def _unavailable(self) -> PeerUnavailable:
        return PeerUnavailable(f"{self.peer}: {self._failure}")

    def _fail(self, reason: str, log_level: int = logging.INFO) -> None:
        """Fails every request in flight with PeerUnavailable and closes the socket; the
        first failure is the one every later request reports."""
        if self._failure is not None:
            return
        self._failure = reason
        log.log(log_level, "connection to %s closed: %s", self.peer, reason)
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.answer.done():
                entry.answer.set_exception(self._unavailable())
                entry.answer.exception()  # retrieved here: a sender may have given up
        self._writer.close()
        if asyncio.current_task() is not self._reading:
            self._reading.cancel()


def _api_versions_request(version: int) -> Payload:
    request: Payload = RequestBuilder(API_VERSIONS_KEY, version).make(
        "ApiVersionsRequest", client_software_name=SOFTWARE_NAME,
        client_software_version=__version__)
    return request


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
