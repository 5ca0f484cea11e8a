"""The broker process: open storage, listen, run background work (retention, flush), stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from strom.broker.internal_topic_check import StartupError, check_internal_topics
from strom.broker.registry import load_handlers
from strom.broker.state import Broker
from strom.config.broker import BrokerConfig, parse_ip_overrides
from strom.observability.service import MetricsService
from strom.server.connection import Connection, ConnectionLimits
from strom.server.listeners import TLS_HANDSHAKE_TIMEOUT_S, Listener
from strom.storage.select import StorageUrl, engine_for, parse_storage_url

log = logging.getLogger(__name__)

RETIRE_PATIENCE_S = 30.0  # a clean stop's hand-over of partitions, at most


async def cancel_all(tasks: list[asyncio.Task[None]], patience_s: float = 10.0) -> None:
    """Cancels the tasks and waits for them, cancelling again while any is still running:
    Python 3.11's asyncio.wait_for can swallow a cancellation that races its inner future
    (a connection reading its next request), and one cancel is then not enough."""
    pending = {t for t in tasks if not t.done()}
    deadline = time.monotonic() + patience_s
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.2)
    if pending:
        log.warning("%d task(s) did not stop within %.0f s", len(pending), patience_s)
    for task in tasks:
        if task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                log.debug("task ended with %r while stopping", exc)


class BrokerServer:
    """A running broker: `await start()`, then `port` is known; `await stop()` ends it."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.storage_url = (parse_storage_url(config.storage) if config.storage
                            else StorageUrl("file", config.data_dir))
        if self.storage_url.path is not None:
            config.data_dir = self.storage_url.path
        self.engine = engine_for(self.storage_url, config)
        self.broker: Broker | None = None
        self._servers: list[asyncio.Server] = []
        self.listeners: list[Listener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._per_ip: Counter[str] = Counter()
        self._per_listener: Counter[str] = Counter()  # open connections
        self.metrics: MetricsService | None = None  # http.listeners set: metrics and health
        self.port = config.port

    def limits(self) -> ConnectionLimits:
        c = self.config
        return ConnectionLimits(
            max_frame_bytes=c.get_int("socket.request.max.bytes"),
            max_frame_bytes_before_api_versions=c.get_int("socket.request.max.bytes.pre.auth"),
            queued_requests=c.get_int("queued.max.requests.per.connection"),
            idle_timeout_s=c.get_int("connections.max.idle.ms") / 1000,
        )

    async def start(self) -> None:
        """Raises StartupError (the engine closed again) if the data directory holds an
        internal topic its coordinator cannot use, ValueError if a listener's TLS settings
        cannot be used."""
        load_handlers()
        self.listeners = [Listener.from_config(self.config, address)
                          for address in self.config.listeners()]
        await self.engine.open()
        try:
            await check_internal_topics(self.engine, self.config)
        except StartupError:
            await self.engine.close()
            raise
        self.broker = Broker(self.config, self.engine)
        try:
            await self.broker.sasl.start([lst.name for lst in self.listeners])
            await self.broker.acls.start()
            await self.broker.quotas.start()
        except BaseException:
            await self.engine.close()
            raise
        await self.broker.groups.start()
        await self.broker.transactions.start()
        try:
            await self._start_metrics(self.broker)  # /readyz: 503 until started
            for listener in self.listeners:
                server = await asyncio.start_server(
                    self._on_connect(listener), listener.address.host or "0.0.0.0",
                    listener.address.port,
                    reuse_address=True, backlog=1024, ssl=listener.ssl_context,
                    ssl_handshake_timeout=(TLS_HANDSHAKE_TIMEOUT_S if listener.tls else None))
                self._servers.append(server)
                listener.port = server.sockets[0].getsockname()[1]
                self.broker.bound_ports[listener.name] = listener.port
                if listener.tls is not None:
                    interval_s = self.config.get_int("ssl.reload.check.interval.ms") / 1000
                    self._tasks.append(asyncio.create_task(listener.tls.watch(interval_s)))
            self.port = self.listeners[0].port
            self.broker.listen_port = self.port
            self.broker.advertised_port = self.config.advertised_port or self.port
            await self.broker.register()  # a node id held by a live broker is refused
        except BaseException:
            await self.stop()
            raise
        self._tasks.append(asyncio.create_task(self._every(
            "log.retention.check.interval.ms", self.engine.run_retention)))
        self._tasks.append(asyncio.create_task(self._every(
            "log.flush.scheduler.interval.ms", self.engine.flush_due)))
        self._tasks.append(asyncio.create_task(self._every(
            "log.cleaner.backoff.ms", self.engine.run_cleaner)))
        log.info("strom listening on %s, storage %s",
                 ", ".join(f"{lst.name} {lst.address.host or '0.0.0.0'}:{lst.port}"
                           f"{'' if lst.name == lst.protocol else f' ({lst.protocol})'}"
                           for lst in self.listeners), self.storage_url)
        if self.metrics is not None:
            self.metrics.started = True

    async def _start_metrics(self, broker: Broker) -> None:
        """Serves /metrics, /healthz and /readyz if http.listeners names where; counts the
        per-request metrics only then."""
        addresses = self.config.http_listeners()
        if not addresses:
            return
        for listener in self.listeners:
            self._per_listener[listener.name] = 0
        self.metrics = MetricsService(broker, lambda: self._per_listener)
        broker.meter = self.metrics.metrics.topics
        await self.metrics.start(addresses)

    @property
    def http_ports(self) -> list[int]:
        """The bound port of each http.listeners entry (empty: metrics off)."""
        return [] if self.metrics is None else list(self.metrics.ports)

    def _on_connect(self, listener: Listener
                    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        """The connection handler of one listener's server."""
        limits = self.limits()
        max_connections = self.config.get_int("max.connections")
        per_ip = self.config.get_int("max.connections.per.ip")
        overrides = parse_ip_overrides(self.config.get("max.connections.per.ip.overrides"))
        broker = self.broker
        assert broker is not None
        metrics = None if self.metrics is None else self.metrics.metrics

        async def on_connect(reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
            if len(self._connections) >= max_connections:
                log.warning("refusing connection: max.connections=%d reached", max_connections)
                writer.close()
                return
            peer = writer.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            if self._per_ip[ip] >= overrides.get(ip, per_ip):
                log.warning("refusing connection from %s: max.connections.per.ip=%d reached",
                            ip, overrides.get(ip, per_ip))
                writer.close()
                return
            if not broker.quotas.connection_allowed(ip):
                log.info("refusing connection from %s: over its connection_creation_rate", ip)
                writer.close()
                return
            try:
                session = listener.session(writer)
            except ValueError as exc:
                log.warning("refusing a TLS client from %s on listener %s: %s",
                            writer.get_extra_info("peername"), listener.name, exc)
                writer.close()
                return
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)
            self._per_ip[ip] += 1
            self._per_listener[listener.name] += 1
            try:
                await Connection(broker, reader, writer, limits, session, metrics).run()
            except asyncio.CancelledError:
                pass  # the broker is stopping; Connection.run closed the socket
            finally:
                self._connections.discard(task)
                self._per_ip[ip] -= 1
                self._per_listener[listener.name] -= 1
                if not self._per_ip[ip]:
                    del self._per_ip[ip]

        return on_connect

    async def _every(self, setting: str, work: Callable[[int], Awaitable[object]]) -> None:
        interval = self.config.get_int(setting) / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await work(int(time.time() * 1000))
            except Exception:
                log.exception("background %s failed", setting)

    async def stop(self) -> None:
        if self.broker is not None:
            try:  # while still answering: clients see NOT_LEADER_OR_FOLLOWER and move on
                await asyncio.wait_for(self.engine.retire(), RETIRE_PATIENCE_S)
            except Exception as exc:
                log.warning("partitions not handed over before stopping: %s", exc)
        if self.metrics is not None:
            await self.metrics.stop()
        for server in self._servers:
            server.close()
        await cancel_all([*self._tasks, *self._connections])
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        if self.broker is not None:
            await self.broker.transactions.stop()  # its marker writers use the peers
            await self.broker.peers.close()
            await self.broker.groups.stop()
            await self.broker.sasl.close()
            await self.broker.acls.stop()
            await self.broker.quotas.stop()
            if self.broker.schema_validator is not None:
                await self.broker.schema_validator.catalog.close()
        await self.engine.close()
        log.info("strom stopped")

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
