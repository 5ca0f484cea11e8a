"""The metrics of a running broker: its BrokerMetrics and collectors, the HTTP endpoints that
serve them, and the loop-lag probe; started by the server when `http.listeners` is set."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Final

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from strom.broker.coordinator_runtime import ShardStatus
from strom.broker.state import Broker
from strom.observability.collectors import ServerCollector, StorageCollector
from strom.observability.groups import GroupCollector
from strom.observability.http import HttpEndpoints, HttpResponse
from strom.observability.loop_lag import probe_loop_lag
from strom.observability.metrics import BrokerMetrics
from strom.observability.operations import (
    StorageMeters,
    StorageMetersCollector,
    TransactionCollector,
)
from strom.observability.time_lag import TimeLag
from strom.storage.meter import MeterSlot

log = logging.getLogger(__name__)

# /readyz waits this long at most for the storage to answer.
READY_STORAGE_TIMEOUT_S: Final = 2.0
JSON: Final = "application/json"


def coordinators_loading(broker: Broker) -> list[str]:
    """The coordinator shards this broker owns that are not serving yet (loading, failed)."""
    waiting = []
    for runtime in (broker.groups.runtime, broker.transactions.runtime):
        for shard in runtime.shards():
            if shard.status in (ShardStatus.LOADING, ShardStatus.FAILED):
                waiting.append(f"{runtime.topic}-{shard.partition} {shard.status.value}")
    return waiting


async def readiness(broker: Broker, started: bool) -> tuple[bool, str]:
    """(ready, why not): the broker finished starting, its storage answers and every
    coordinator shard it owns is loaded."""
    if not started:
        return False, "starting"
    try:
        await asyncio.wait_for(broker.engine.read_metadata("quota"), READY_STORAGE_TIMEOUT_S)
    except Exception as exc:
        return False, f"storage not reachable: {exc or type(exc).__name__}"
    loading = coordinators_loading(broker)
    if loading:
        shown = ", ".join(loading[:5]) + (f" and {len(loading) - 5} more"
                                          if len(loading) > 5 else "")
        return False, f"coordinators not loaded: {shown}"
    return True, "ready"


class MetricsService:
    def __init__(self, broker: Broker, connections: Callable[[], Mapping[str, int]]) -> None:
        self.broker = broker
        self.metrics = BrokerMetrics()
        self.storage = StorageCollector(broker.engine)
        self.metrics.registry.register(self.storage)
        self.metrics.registry.register(ServerCollector(connections,
                                                       lambda: broker.quotas.throttled))
        self.time_lag = TimeLag(broker.groups, broker.engine, self.storage.high_watermarks,
                                broker.groups.runtime.clock)
        self.metrics.registry.register(GroupCollector(
            broker.groups, self.storage.log_ends, self.storage.high_watermarks,
            lambda: self.time_lag.lags))
        self.storage_meters = StorageMeters()
        self.metrics.registry.register(StorageMetersCollector(
            self.storage_meters, self.metrics.topics.storage_errors))
        self.metrics.registry.register(TransactionCollector(broker.transactions,
                                                            self.storage.producer_ids))
        self.started = False  # the broker finished starting (set by the server)
        self.endpoints = HttpEndpoints({"/metrics": self.render_metrics,
                                        "/healthz": self.healthz, "/readyz": self.readyz})
        self._servers: list[asyncio.Server] = []
        self._probe: asyncio.Task[None] | None = None
        self.ports: list[int] = []

    def meter_storage(self, on: bool) -> None:
        """Starts (or stops) the storage engine's own meters, if it keeps any."""
        slot = getattr(self.broker.engine, "meters", None)
        if isinstance(slot, MeterSlot):
            slot.meter = self.storage_meters if on else None

    async def render_metrics(self) -> HttpResponse:
        await self.storage.refresh()
        await self.time_lag.refresh()
        self.metrics.topics.forget_topics(self.broker.engine.topics().__contains__)
        return HttpResponse(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)

    async def healthz(self) -> HttpResponse:
        return HttpResponse(200, b"ok\n")

    async def readyz(self) -> HttpResponse:
        ready, reason = await readiness(self.broker, self.started)
        body = json.dumps({"ready": ready, "reason": reason}).encode() + b"\n"
        return HttpResponse(200 if ready else 503, body, JSON)

    async def start(self, addresses: list[tuple[str, int]]) -> None:
        """Listens on every (host, port) (raises OSError if one cannot be bound)."""
        try:
            for host, port in addresses:
                server = await self.endpoints.start(host or "0.0.0.0", port)
                self._servers.append(server)
                self.ports.append(server.sockets[0].getsockname()[1])
        except BaseException:
            await self.stop()
            raise
        self._probe = asyncio.create_task(probe_loop_lag(self.metrics.loop_lag.observe))
        self.meter_storage(True)
        log.info("metrics on %s", ", ".join(
            f"http://{host or '0.0.0.0'}:{port}/metrics"
            for (host, _), port in zip(addresses, self.ports, strict=True)))

    async def stop(self) -> None:
        self.meter_storage(False)
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()
