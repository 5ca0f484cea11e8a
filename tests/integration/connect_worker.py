"""An in-process standalone strom.connect worker on a free port, in its own event loop thread,
and a tiny JSON HTTP client for its REST API."""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from strom.connect.standalone import StandaloneRuntime


class ConnectWorker:
    def __init__(self, props: Mapping[str, str]) -> None:
        # offset.storage.file.filename is required (Kafka's StandaloneConfig): a private file
        # when the test does not name one.
        self._offsets_dir = tempfile.TemporaryDirectory(prefix="connect-offsets-")
        defaults = {"listeners": "http://127.0.0.1:0",
                    "offset.storage.file.filename": f"{self._offsets_dir.name}/offsets"}
        self.runtime = StandaloneRuntime({**defaults, **props})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ConnectWorker:
        self.thread.start()
        self.call(self.runtime.start())
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.runtime.ports[0]}"

    def close(self) -> None:
        try:
            self.call(self.runtime.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self._offsets_dir.cleanup()

    def __enter__(self) -> ConnectWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http(method, self.url + path, body)


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
