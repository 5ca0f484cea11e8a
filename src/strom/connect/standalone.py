"""`strom connect --standalone WORKER.properties [CONNECTOR.properties ...]`: Kafka's
connect-standalone, one process, source offsets in `offset.storage.file.filename`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from aiohttp import web

from strom.connect.herder import StandaloneHerder
from strom.connect.offsets import FileOffsetBackingStore, MemoryOffsetBackingStore
from strom.connect.properties import load_properties
from strom.connect.rest import make_app
from strom.connect.worker import Worker, WorkerConfig

log = logging.getLogger(__name__)

DEFAULT_LISTENER = "http://:8083"


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
        out.append(Listener(url.hostname or "0.0.0.0", url.port or 8083))
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


async def run_standalone(worker_properties: Path, connector_properties: Sequence[Path],
                         stop: asyncio.Event | None = None) -> None:
    props = load_properties(worker_properties)
    if props.get("plugin.path"):
        log.info("plugin.path is ignored: strom.connect finds connectors through the Python "
                 "entry point group strom.connect.connectors")
    listeners = parse_listeners(props.get("listeners"))
    config = WorkerConfig(props, worker_id(props, listeners[0]))
    offsets_file = props.get("offset.storage.file.filename")
    offsets = (FileOffsetBackingStore(offsets_file) if offsets_file
               else MemoryOffsetBackingStore())
    cluster_id = await asyncio.to_thread(_cluster_id, config.bootstrap_servers, config)
    herder = StandaloneHerder(Worker(config, offsets), cluster_id)
    runner = web.AppRunner(make_app(herder), access_log=None)
    await runner.setup()
    for listener in listeners:
        await web.TCPSite(runner, listener.host, listener.port).start()
        log.info("REST API listening on http://%s:%d", listener.host, listener.port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for path in connector_properties:
            connector = load_properties(path)
            name = connector.get("name")
            if not name:
                raise SystemExit(f"{path}: no 'name' in the connector configuration")
            created, _ = await herder.put_connector_config(name, connector, allow_replace=False)
            log.info("connector %s %s from %s", name, "created" if created else "updated", path)
        print(f"strom connect (standalone) worker {config.worker_id} is running", flush=True)
        await stop.wait()
    finally:
        log.info("stopping the connectors")
        await herder.stop()
        await runner.cleanup()
