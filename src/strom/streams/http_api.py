"""A small HTTP endpoint for interactive queries (the standard library's http.server, in a
thread of its own), so that any instance answers for any key:

    GET /stores/<store>/<key>   200 {"store", "key", "value"} when this instance runs the
                                key's task; 307 to the same path at the instance that runs
                                it (Location, and {"instance": "host:port"}); 404 when the
                                key has no value; 503 while no instance can answer (a
                                rebalance, a task restoring)
    GET /instances              [{"process_id", "endpoint", "active_tasks", ...}, ...]

Keys are text in the path (URL-quoted), read as the store's key serde reads: numbers for
Integer / Long / Double serdes, JSON (else the text) for JSON serdes, UTF-8 bytes for Bytes.
Only key-value stores are served. Redirects name `application.server` of the other instance,
so with this endpoint each instance's `application.server` is its HTTP address (StreamsApp
sets it to the bound address when it is not given).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from strom.streams.serdes import (
    BytesSerde,
    DoubleSerde,
    IntegerSerde,
    JsonSerde,
    LongSerde,
    Serde,
)
from strom.streams.stores.kv import KeyValueStoreBuilder

if TYPE_CHECKING:
    from strom.streams.app import StreamsApp

log = logging.getLogger(__name__)


def key_from_text(text: str, serde: Serde[Any]) -> Any:
    """A key given as text, as an object of the key serde's type."""
    if isinstance(serde, IntegerSerde | LongSerde):
        return int(text)
    if isinstance(serde, DoubleSerde):
        return float(text)
    if isinstance(serde, BytesSerde):
        return text.encode()
    if isinstance(serde, JsonSerde):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    return str(value)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("query endpoint: " + format, *args)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, default=_jsonable).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = [unquote(p) for p in self.path.split("?", 1)[0].strip("/").split("/")]
        try:
            if parts == ["instances"]:
                app = self.server.app
                self._send(200, [m.as_json() for m in app.all_metadata()])
            elif len(parts) == 3 and parts[0] == "stores":
                self._store(parts[1], parts[2])
            else:
                self._send(404, {"error": "use GET /stores/<store>/<key> or GET /instances"})
        except Exception as exc:  # an answer, not a dropped connection
            log.exception("query endpoint: %s failed", self.path)
            self._send(500, {"error": str(exc)})

    def _store(self, name: str, text: str) -> None:
        app = self.server.app
        builder = app.topology.stores.get(name)
        if builder is None:
            self._send(404, {"error": f"no store named {name!r}"})
            return
        if not isinstance(builder, KeyValueStoreBuilder):
            self._send(400, {"error": f"{name} is not a key-value store"})
            return
        serde = builder.key_serde or app.config.default_key_serde
        try:
            key = key_from_text(text, serde)
        except ValueError as exc:
            self._send(400, {"error": f"cannot read the key {text!r}: {exc}"})
            return
        where = app.metadata_for_key(name, key, serde)
        if where.process_id is not None and where.process_id != app.process_id:
            if where.active is None:
                self._send(503, {"error": f"the instance running task {where.task_id} "
                                          "published no endpoint"})
                return
            location = f"http://{where.active}/stores/{quote(name, safe='')}/" \
                       f"{quote(text, safe='')}"
            self._send(307, {"instance": where.active, "task": where.task_id},
                       {"Location": location})
            return
        if where.process_id is None or not app.serving(where.task_id):
            self._send(503, {"error": f"task {where.task_id} is not running here now "
                                      "(a rebalance or a restoration): try again"})
            return
        value = app.store(name).get(key)
        if value is None:
            self._send(404, {"store": name, "key": key, "error": "no value"})
        else:
            self._send(200, {"store": name, "key": key, "value": value})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: StreamsApp) -> None:
        super().__init__(address, _Handler)
        self.app = app


class QueryServer:
    """The endpoint of one application instance; `address` is where it listens."""

    def __init__(self, app: StreamsApp, host: str, port: int) -> None:
        self._server = _Server((host, port), app)
        bound_host, bound_port = self._server.server_address[:2]
        self.address = (str(bound_host), int(bound_port))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"{app.config.application_id}-http")

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
