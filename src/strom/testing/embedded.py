"""An in-process broker on its own thread and event loop, in a temporary directory.

    with EmbeddedBroker() as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap_servers})
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from strom.config.broker import BrokerConfig
from strom.server.app import BrokerServer


class EmbeddedBroker:
    """A real broker on 127.0.0.1 and a free port; data in `data_dir` (a temp dir by default),
    or in the engine `storage` names (a storage URL such as "memory:")."""

    def __init__(self, settings: Mapping[str, str] | None = None,
                 data_dir: Path | None = None, port: int = 0, storage: str = "") -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="strom-")) if data_dir is None else data_dir
        self.settings = dict(settings or {})
        self.storage = storage
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: BrokerServer | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the broker is not running")
        return self._server.port

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        """HOST:PORT of the metrics and health endpoints (started with the setting
        `http.listeners`, e.g. 127.0.0.1:0)."""
        ports = self.server.http_ports
        if not ports:
            raise RuntimeError("no HTTP listener: start the broker with http.listeners set")
        return f"127.0.0.1:{ports[0]}"

    def address(self, listener: str) -> str:
        """HOST:PORT of one of the broker's listeners (`listeners=NAME://127.0.0.1:0,...`)."""
        for served in self.server.listeners:
            if served.name == listener.upper():
                return f"127.0.0.1:{served.port}"
        raise KeyError(f"no listener {listener}")

    def start(self) -> EmbeddedBroker:
        if self._server is not None:
            raise RuntimeError("already started")
        config = BrokerConfig.build(self.data_dir, "127.0.0.1", self._port, self.settings,
                                    self.storage)
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="strom-broker",
                                        daemon=True)
        self._thread.start()
        server = BrokerServer(config)
        try:
            self._call(server.start())
        except BaseException:  # e.g. StartupError: no loop thread is left behind
            self._stop_loop()
            raise
        self._server = server
        self._port = server.port  # a restart keeps the same port
        return self

    def stop(self) -> None:
        if self._server is None or self._loop is None:
            return
        try:
            self._call(self._server.stop())
        finally:
            self._server = None
            self._stop_loop()

    def _stop_loop(self) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    def restart(self) -> None:
        """Stops cleanly and starts again on the same port and data directory."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def run(self, coro: Any) -> Any:
        """Runs a coroutine on the broker's loop (for tests that inspect broker state)."""
        return self._call(coro)

    @property
    def server(self) -> BrokerServer:
        if self._server is None:
            raise RuntimeError("the broker is not running")
        return self._server

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(60)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()
