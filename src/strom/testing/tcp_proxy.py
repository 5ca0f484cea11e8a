"""A byte-level TCP proxy with network faults, for the link from a broker to PostgreSQL.

    with TcpFaultProxy("127.0.0.1", pg.port) as proxy:
        url = f"postgresql://strom:pw@127.0.0.1:{proxy.port}/strom"   # the broker's storage
        proxy.blackhole()   # a network partition: nothing gets through, connections stay open
        proxy.heal()

`FaultProxy` reads Kafka's framing and so cannot carry PostgreSQL's protocol; this proxy
forwards bytes and knows nothing of what they mean. Like FaultProxy it runs its own event loop
on its own thread, so synchronous tests drive it. The faults:

- `blackhole()`: nothing is forwarded either way and nothing is read (the kernel's buffers fill,
  as packets would queue and be retransmitted across a partition); open connections stay open,
  new ones are accepted but get no upstream until the network heals. `heal()` delivers what
  waited, as TCP's retransmissions would.
- `drop(direction)`: one-way loss; bytes going `to_upstream` (client to server) or `to_client`
  are read and discarded. A byte stream with a hole in it is no longer the stream either end
  sent, so every connection that lost bytes is closed at `heal()` (a real connection that
  loses its packets one way dies of its retransmission timeout): the outcome of whatever it
  carried stays unknown to the client, which is the point of the fault.
- `sever()`: every open connection aborted (both ends see a reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal

log = logging.getLogger(__name__)

Direction = Literal["to_upstream", "to_client"]
DIRECTIONS: Final[tuple[Direction, ...]] = ("to_upstream", "to_client")
Mode = Literal["forward", "hold", "drop"]

READ_BYTES_MAX: Final = 64 * 1024
CONNECT_TIMEOUT_S: Final = 10.0
CONTROL_TIMEOUT_S: Final = 10.0
LINKS_MAX: Final = 1000  # connections open at once; more are refused
ACCEPT_GRACE_S: Final = 0.1


@dataclass
class ProxyCounters:
    """What the proxy did, per direction where it matters (read from any thread)."""

    connections_accepted: int = 0
    connections_refused: int = 0
    connections_severed: int = 0
    bytes_forwarded: dict[Direction, int] = field(
        default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    bytes_dropped: dict[Direction, int] = field(
        default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection (None until it is opened)."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    lost_bytes: bool = False

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class _Gates:
    """Each direction's mode, with an event per direction that is set while bytes may move
    (forward or drop) and clear while they are held."""

    def __init__(self) -> None:
        self.modes: dict[Direction, Mode] = dict.fromkeys(DIRECTIONS, "forward")
        self.moving: dict[Direction, asyncio.Event] = {d: asyncio.Event() for d in DIRECTIONS}
        for event in self.moving.values():
            event.set()

    def set(self, direction: Direction, mode: Mode) -> None:
        self.modes[direction] = mode
        if mode == "hold":
            self.moving[direction].clear()
        else:
            self.moving[direction].set()

    async def wait_moving(self, direction: Direction) -> Mode:
        while self.modes[direction] == "hold":
            await self.moving[direction].wait()
        return self.modes[direction]


class TcpFaultProxy:
    """Forwards `listen_host`:<free port> to `upstream_host:upstream_port`, byte for byte,
    with the faults above on demand."""

    def __init__(self, upstream_host: str, upstream_port: int, *,
                 listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.counters = ProxyCounters()
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._gates: _Gates | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._closing = False

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def modes(self) -> dict[Direction, Mode]:
        """Each direction's current mode: forward, hold (black hole) or drop."""
        return dict(self._gates.modes) if self._gates is not None else {}

    # -- faults ----------------------------------------------------------------------------

    def blackhole(self) -> None:
        """A network partition: nothing moves either way until `heal()`."""
        self._control(self._set_modes({"to_upstream": "hold", "to_client": "hold"}))

    def drop(self, direction: Direction) -> None:
        """One-way loss: bytes going `direction` are discarded until `heal()`."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        self._control(self._set_modes({direction: "drop"}))

    def heal(self) -> int:
        """Forwards both ways again, delivering what a black hole held; closes the connections
        that lost bytes to a drop. Returns how many it closed."""
        return int(self._control(self._heal()))

    def sever(self) -> int:
        """Aborts every open connection; returns how many there were."""
        return int(self._control(self._sever()))

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> TcpFaultProxy:
        if self._loop is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="strom-tcp-proxy",
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

    def __enter__(self) -> TcpFaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _control(self, coro: Coroutine[Any, Any, Any]) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the proxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    # -- on the proxy's loop -----------------------------------------------------------------

    async def _listen(self) -> None:
        self._gates = _Gates()
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]  # a restart keeps the port

    async def _set_modes(self, modes: dict[Direction, Mode]) -> None:
        assert self._gates is not None
        for direction, mode in modes.items():
            self._gates.set(direction, mode)

    async def _heal(self) -> int:
        await self._set_modes(dict.fromkeys(DIRECTIONS, "forward"))
        broken = [link for link in self._links if link.lost_bytes]
        for link in broken:
            link.abort()
        self.counters.connections_severed += len(broken)
        return len(broken)

    async def _sever(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort()
        self.counters.connections_severed += len(links)
        return len(links)

    async def _close(self) -> None:
        # Connections accepted whose handler has not run yet must reach _accept (which closes
        # them now) before the server closes: on 3.11 a server closed between the accept and
        # the handler's start leaks that connection open (Server._attach fails).
        self._closing = True
        await asyncio.sleep(ACCEPT_GRACE_S)
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

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        if len(self._links) >= LINKS_MAX:
            self.counters.connections_refused += 1
            writer.transport.abort()
            return
        self.counters.connections_accepted += 1
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._forward(reader, link)
        except asyncio.CancelledError:
            pass  # the proxy is stopping
        finally:
            link.abort()
            self._links.discard(link)
            self._handlers.discard(handler)

    async def _forward(self, reader: asyncio.StreamReader, link: _Link) -> None:
        assert self._gates is not None
        # Across a partition the connection attempt itself would not get through.
        await self._gates.wait_moving("to_upstream")
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            log.info("tcp proxy: upstream %s:%d unreachable: %s", *self.upstream, exc)
            return
        link.upstream = up_writer
        pumps = [asyncio.create_task(self._pump(reader, up_writer, "to_upstream", link)),
                 asyncio.create_task(self._pump(up_reader, link.client, "to_client", link))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.abort()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: Direction, link: _Link) -> None:
        """Copies `reader` to `writer` in the gates' mode for `direction`, until either end
        closes. While held, nothing is read; bytes read just before a hold wait for it."""
        assert self._gates is not None
        with contextlib.suppress(OSError, EOFError):
            while True:
                await self._gates.wait_moving(direction)
                data = await reader.read(READ_BYTES_MAX)
                if not data:
                    return
                if await self._gates.wait_moving(direction) == "drop":
                    self.counters.bytes_dropped[direction] += len(data)
                    link.lost_bytes = True
                    continue
                self.counters.bytes_forwarded[direction] += len(data)  # before the peer has it
                writer.write(data)
                await writer.drain()
