"""`strom connect --standalone WORKER.properties [CONNECTOR.properties ...]`: Kafka's
connect-standalone, one process, source offsets in `offset.storage.file.filename`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from aiohttp import web

from strom.connect.errors import ConfigException
from strom.connect.herder import StandaloneHerder
from strom.connect.offsets import FileOffsetBackingStore
from strom.connect.properties import load_properties
from strom.connect.rest import make_app
from strom.connect.worker import Worker, WorkerConfig

log = logging.getLogger(__name__)

DEFAULT_LISTENER = "http://:8083"
OFFSETS_FILE = "offset.storage.file.filename"


@dataclass(frozen=True)
class Listener:
    host: str
    port: int


def parse_listeners(value: str | None) -> list[Listener]:
    """Kafka's `listeners` (http://host:port, comma-separated; an empty host: all interfaces)."""
    out = []
    for item in (value or DEFAULT_LISTENER).split(","):
        item = item.strip()
        if not item:
            continue
        url = urlparse(item if "://" in item else "http://" + item)
        if url.scheme not in ("http", ""):
            raise ValueError(f"listener {item}: only http listeners are supported")
        # port 0 (a free port, as the tests ask) is not "no port"
        out.append(Listener(url.hostname or "0.0.0.0", 8083 if url.port is None else url.port))
    return out


def worker_id(props: dict[str, str], listener: Listener) -> str:
    host = props.get("rest.advertised.host.name") or (
        listener.host if listener.host not in ("0.0.0.0", "::", "") else "localhost")
    port = props.get("rest.advertised.port") or str(listener.port)
    return f"{host}:{port}"


def _cluster_id(bootstrap: str, config: WorkerConfig) -> str | None:
    try:
        from confluent_kafka.admin import AdminClient
        metadata = AdminClient(config.client_config("admin")).list_topics(timeout=10)
        return str(metadata.cluster_id) if metadata.cluster_id else None
    except Exception:
        log.warning("could not read the cluster id from %s", bootstrap)
        return None


class StandaloneRuntime:
    """A standalone worker: its herder, worker and REST server (started by `start`)."""

    def __init__(self, props: Mapping[str, str]) -> None:
        self.props = dict(props)
        if self.props.get("plugin.path"):
            log.info("plugin.path is ignored: strom.connect finds connectors through the "
                     "Python entry point group strom.connect.connectors")
        self.listeners = parse_listeners(self.props.get("listeners"))
        self.config = WorkerConfig(self.props, worker_id(self.props, self.listeners[0]))
        _ = self.config.override_policy  # a bad policy fails the worker's start
        offsets_file = self.props.get("offset.storage.file.filename", "").strip()
        if not offsets_file:
            # Kafka's StandaloneConfig: required, no default (an in-memory store would start
            # every source over after a restart).
            raise ConfigException(f'Missing required configuration "{OFFSETS_FILE}" which has '
                                  "no default value.")
        self.herder = StandaloneHerder(Worker(self.config, FileOffsetBackingStore(offsets_file)))
        self.runner: web.AppRunner | None = None
        self.ports: list[int] = []

    async def start(self) -> None:
        self.herder.cluster_id = await asyncio.to_thread(_cluster_id, self.config.bootstrap_servers,
                                                         self.config)
        self.runner = web.AppRunner(make_app(self.herder), access_log=None)
        await self.runner.setup()
        for listener in self.listeners:
            site = web.TCPSite(self.runner, listener.host, listener.port)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            port = sockets[0].getsockname()[1] if sockets else listener.port
            self.ports.append(port)
            log.info("REST API listening on http://%s:%d", listener.host, port)
        if self.listeners[0].port == 0 and self.ports:
            host = self.config.worker_id.rsplit(":", 1)[0]
            self.config.worker_id = f"{host}:{self.ports[0]}"

    async def add_connector(self, connector: Mapping[str, str], source: str = "") -> None:
        name = connector.get("name")
        if not name:
            raise ValueError(f"{source}: no 'name' in the connector configuration")
        await self.herder.put_connector_config(name, connector, allow_replace=False)
        log.info("connector %s created from %s", name, source)

    async def close(self) -> None:
        log.info("stopping the connectors")
        await self.herder.stop()
        if self.runner is not None:
            await self.runner.cleanup()


async def run_standalone(worker_properties: Path, connector_properties: Sequence[Path],
                         stop: asyncio.Event | None = None) -> None:
    runtime = StandaloneRuntime(load_properties(worker_properties))
    await runtime.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for path in connector_properties:
            await runtime.add_connector(load_properties(path), str(path))
        print(f"strom connect (standalone) worker {runtime.config.worker_id} is running",
              flush=True)
        await stop.wait()
    finally:
        await runtime.close()
