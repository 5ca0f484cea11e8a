"""A small HTTP/1.1 server on the broker's own event loop for /metrics, /healthz and /readyz.

One request per connection (answered with `Connection: close`), GET or HEAD only, bounded
request line and headers and a timeout on reading them: a monitoring endpoint needs no more,
and a bad client gets a 400 and a closed socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

READ_TIMEOUT_S: Final = 10.0
WRITE_TIMEOUT_S: Final = 30.0
MAX_LINE_BYTES: Final = 8 * 1024
MAX_HEADERS: Final = 100
_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found",
                   405: "Method Not Allowed", 500: "Internal Server Error",
                   503: "Service Unavailable"}
TEXT: Final = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = TEXT


Route = Callable[[], Awaitable[HttpResponse]]


class BadRequest(Exception):
    pass


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """(method, path without its query) of the request; its headers are read and dropped.
    Raises BadRequest, or asyncio.IncompleteReadError if the client left."""
    line = await reader.readuntil(b"\n")
    parts = line.decode("latin-1").strip().split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise BadRequest(f"not an HTTP/1.x request line: {line[:80]!r}")
    for _ in range(MAX_HEADERS):
        if (await reader.readuntil(b"\n")).strip() == b"":
            return parts[0], parts[1].partition("?")[0]
    raise BadRequest(f"more than {MAX_HEADERS} headers")


def encode(response: HttpResponse, head_only: bool = False) -> bytes:
    reason = _REASONS.get(response.status, "")
    header = (f"HTTP/1.1 {response.status} {reason}\r\n"
              f"Content-Type: {response.content_type}\r\n"
              f"Content-Length: {len(response.body)}\r\n"
              "Connection: close\r\n\r\n").encode("latin-1")
    return header if head_only else header + response.body


class HttpEndpoints:
    """Serves `routes` (path -> an async function giving the answer)."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)

    async def answer(self, method: str, path: str) -> HttpResponse:
        route = self.routes.get(path)
        if route is None:
            return HttpResponse(404, b"not found\n")
        if method not in ("GET", "HEAD"):
            return HttpResponse(405, b"GET or HEAD only\n")
        try:
            return await route()
        except Exception:
            log.exception("HTTP %s %s failed", method, path)
            return HttpResponse(500, b"internal error\n")

    async def on_connect(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        try:
            try:
                method, path = await asyncio.wait_for(read_request(reader), READ_TIMEOUT_S)
            except (BadRequest, asyncio.LimitOverrunError, ValueError) as exc:
                log.debug("bad HTTP request: %s", exc)
                writer.write(encode(HttpResponse(400, b"bad request\n")))
            else:
                response = await self.answer(method, path)
                writer.write(encode(response, head_only=method == "HEAD"))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass  # the client left, or was too slow: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 5)

    async def start(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self.on_connect, host, port, limit=MAX_LINE_BYTES,
                                          reuse_address=True)
