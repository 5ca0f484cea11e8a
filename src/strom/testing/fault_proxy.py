"""A TCP proxy in front of one Kafka broker that loses responses, cuts and stalls connections.

    with FaultProxy("127.0.0.1", broker.port) as proxy:
        producer = Producer({"bootstrap.servers": proxy.bootstrap_servers, ...})
        proxy.drop_responses(1, api_key=PRODUCE)  # the next Produce response is lost

The proxy runs its own event loop on its own thread, so synchronous clients can be used next to
it. It reads Kafka's framing (a 4-byte big-endian size before each frame) in both directions and
remembers each request's api key and version by correlation id, so faults can target responses
by API. A dropped response is swallowed and the connection closed, which is how a lost response
looks to a client: the request may or may not have taken effect, and the client must retry it.

A broker advertises its own address in Metadata, FindCoordinator and DescribeCluster responses;
a client bootstrapped through the proxy would then bypass it. The proxy rewrites every advertised
address equal to the upstream's (or `advertised`) to its own, so clients stay on the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from kio.schema.response_header.v1.header import ResponseHeader as ResponseHeaderV1
from kio.static.primitive import i32

from strom.protocol.framing import peek_header
from strom.protocol.messages import encode_response, response_header_version, response_type
from strom.protocol.safe_decoder import DecodeError, decode

log = logging.getLogger(__name__)

METADATA_KEY: Final = 3
FIND_COORDINATOR_KEY: Final = 10
DESCRIBE_CLUSTER_KEY: Final = 60
# Responses that carry a broker's advertised host and port.
ADDRESS_APIS: Final = frozenset({METADATA_KEY, FIND_COORDINATOR_KEY, DESCRIBE_CLUSTER_KEY})

FRAME_BYTES_MAX: Final = 128 * 1024 * 1024
PENDING_REQUESTS_MAX: Final = 10_000  # per connection; acks=0 produce requests get no answer
CONNECT_TIMEOUT_S: Final = 10.0
CONTROL_TIMEOUT_S: Final = 10.0

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ResponseFrame:
    """One response on its way to the client; api key and version are None if not known."""

    connection_id: int
    correlation_id: int
    api_key: int | None
    api_version: int | None
    size: int


ResponsePredicate = Callable[[ResponseFrame], bool]


@dataclass(slots=True)
class _DropRule:
    matches: ResponsePredicate
    remaining: int
    close_connection: bool


class DropRules:
    """Armed drops: the first rule that matches a response consumes one of its drops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_DropRule] = []
        self.dropped = 0

    def add(self, matches: ResponsePredicate, count: int, close_connection: bool) -> None:
        if count < 1:
            raise ValueError(f"count must be positive, not {count}")
        with self._lock:
            self._rules.append(_DropRule(matches, count, close_connection))

    def take(self, frame: ResponseFrame) -> _DropRule | None:
        """The rule that drops `frame` (its count already consumed), or None to forward it."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(frame):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    self.dropped += 1
                    return rule
        return None

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(rule.remaining for rule in self._rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()


class PendingRequests:
    """Correlation id -> (api key, api version) of the requests not answered yet, bounded."""

    def __init__(self, limit: int = PENDING_REQUESTS_MAX) -> None:
        self._limit = limit
        self._by_id: dict[int, tuple[int, int]] = {}

    def add(self, request: bytes) -> None:
        api_key, api_version, correlation_id = peek_header(request)
        if len(self._by_id) >= self._limit:
            del self._by_id[next(iter(self._by_id))]
        self._by_id[correlation_id] = (api_key, api_version)

    def answer(self, connection_id: int, response: bytes) -> ResponseFrame:
        correlation_id = int.from_bytes(response[:4], "big", signed=True)
        api_key, api_version = self._by_id.pop(correlation_id, (None, None))
        return ResponseFrame(connection_id, correlation_id, api_key, api_version, len(response))


def rewrite_addresses(value: Any, old: Address, new: Address) -> Any:
    """`value` (a kio entity, tuple or scalar) with every host/port pair equal to `old` made
    `new`; unchanged parts are returned as they were."""
    if isinstance(value, tuple):
        items = tuple(rewrite_addresses(item, old, new) for item in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        rewritten = rewrite_addresses(item, old, new)
        if rewritten is not item:
            changes[field.name] = rewritten
    if (getattr(value, "host", None), getattr(value, "port", None)) == old:
        changes.update(host=new[0], port=i32(new[1]))
    return dataclasses.replace(value, **changes) if changes else value


def rewrite_response(frame: ResponseFrame, response: bytes, old: Address,
                     new: Address) -> bytes:
    """The response (without its size prefix) with advertised addresses rewritten."""
    if frame.api_key not in ADDRESS_APIS or frame.api_version is None:
        return response
    try:
        if response_header_version(frame.api_key, frame.api_version) == 0:
            body_offset = 4
        else:
            _header, body_offset = decode(ResponseHeaderV1, response, 0)
        body, _end = decode(response_type(frame.api_key, frame.api_version), response,
                            body_offset)
    except DecodeError:
        log.warning("fault proxy: cannot decode response to api %d v%d; forwarded unchanged",
                    frame.api_key, frame.api_version)
        return response
    rewritten = rewrite_addresses(body, old, new)
    if rewritten is body:
        return response
    return encode_response(frame.api_key, frame.api_version, frame.correlation_id,
                           rewritten)[4:]


async def _read_frame(reader: asyncio.StreamReader, idle_timeout_s: float) -> bytes:
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives
    # as the read completes, and the pump would go on forwarding after its link was dropped.
    async with asyncio.timeout(idle_timeout_s):
        head = await reader.readexactly(4)
        size = int.from_bytes(head, "big", signed=True)
        if not 4 <= size <= FRAME_BYTES_MAX:
            raise ConnectionError(f"frame size {size} out of bounds")
        return await reader.readexactly(size)


async def _call(function: Callable[[], None]) -> None:
    function()


@dataclass(slots=True)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter

    def close(self, abort: bool = False) -> None:
        for writer in (self.client, self.upstream):
            if abort:
                writer.transport.abort()
            else:
                writer.close()


class FaultProxy:
    """Forwards 127.0.0.1:<free port> to `upstream_host:upstream_port`, with faults on demand."""

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_host: str = "127.0.0.1",
                 listen_port: int = 0, advertised: Address | None = None,
                 idle_timeout_s: float = 600.0) -> None:
        self.upstream: Address = (upstream_host, upstream_port)
        self.advertised: Address = advertised or self.upstream
        self.listen_host = listen_host
        self._listen_port = listen_port
        self._idle_timeout_s = idle_timeout_s
        self._drops = DropRules()
        self._links: dict[int, _Link] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._next_id = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections_accepted = 0
        self.responses_forwarded = 0

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.listen_host}:{self.port}"

    @property
    def dropped_responses(self) -> int:
        return self._drops.dropped

    @property
    def pending_drops(self) -> int:
        return self._drops.pending

    def drop_responses(self, count: int = 1, *, api_key: int | None = None,
                       where: ResponsePredicate | None = None,
                       close_connection: bool = True) -> None:
        """Swallows the next `count` responses of `api_key` (any API if None) for which `where`
        holds; after each, closes that connection unless `close_connection` is false."""

        def matches(frame: ResponseFrame) -> bool:
            return (api_key is None or frame.api_key == api_key) and (where is None
                                                                     or where(frame))

        self._drops.add(matches, count, close_connection)

    def clear_faults(self) -> None:
        """Disarms the drops not yet used and resumes forwarding."""
        self._drops.clear()
        self.resume()

    def sever(self) -> int:
        """Aborts every open connection (clients see a reset); returns how many there were."""
        return int(self._control(self._sever()))

    def pause(self) -> None:
        """Stops forwarding in both directions; bytes wait in the proxy and socket buffers."""
        self._set_flowing(False)

    def resume(self) -> None:
        self._set_flowing(True)

    def _set_flowing(self, flowing: bool) -> None:
        change = self._flowing.set if flowing else self._flowing.clear
        if self._loop is None:
            change()
        else:
            self._control(_call(change))

    def start(self) -> FaultProxy:
        if self._loop is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.new_event_loop()
        flowing, self._flowing = self._flowing.is_set(), asyncio.Event()  # bound to this loop
        if flowing:
            self._flowing.set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="strom-fault-proxy",
                                        daemon=True)
        self._thread.start()
        self._control(self._listen())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            self._control(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(CONTROL_TIMEOUT_S)
            self._loop.close()
            self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _control(self, coro: Any) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the proxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host,
                                                  self._listen_port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self._listen_port = self.port  # a restart keeps the port

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._sever()
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), CONTROL_TIMEOUT_S)
            self._server = None

    async def _sever(self) -> int:
        links = list(self._links.values())
        for link in links:
            link.close(abort=True)
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()  # the proxy is stopping
        finally:
            self._handlers.discard(handler)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            log.info("fault proxy: upstream %s:%d unreachable: %s", *self.upstream, exc)
            writer.close()
            return
        link_id = self._next_id
        self._next_id += 1
        link = self._links[link_id] = _Link(writer, up_writer)
        pending = PendingRequests()
        pumps = [asyncio.create_task(self._requests(reader, up_writer, pending)),
                 asyncio.create_task(self._responses(link_id, up_reader, link, pending))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.close()  # first: the client sees the drop now, whatever the other pump does
            del self._links[link_id]
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _requests(self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter,
                        pending: PendingRequests) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError, asyncio.IncompleteReadError):
            while True:
                request = await _read_frame(reader, self._idle_timeout_s)
                await self._flowing.wait()
                if len(request) >= 8:
                    pending.add(request)
                upstream.write(len(request).to_bytes(4, "big") + request)
                await upstream.drain()

    async def _responses(self, link_id: int, reader: asyncio.StreamReader, link: _Link,
                         pending: PendingRequests) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError, asyncio.IncompleteReadError):
            while True:
                response = await _read_frame(reader, self._idle_timeout_s)
                await self._flowing.wait()
                frame = pending.answer(link_id, response)
                rule = self._drops.take(frame)
                if rule is not None:
                    log.info("fault proxy: dropped %s", frame)
                    if rule.close_connection:
                        return
                    continue
                response = rewrite_response(frame, response, self.advertised,
                                            (self.listen_host, self.port))
                link.client.write(len(response).to_bytes(4, "big") + response)
                self.responses_forwarded += 1
                await link.client.drain()
