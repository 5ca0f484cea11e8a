"""Kafka framing for the fuzzer: encoding requests, one blocking connection, outcomes of a frame.

A frame here is always the whole request *with* its 4-byte size prefix, as sent on the wire;
`body` means the bytes after the prefix (header + request).
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import Any, Final

from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.schema.response_header.v1.header import ResponseHeader as ResponseHeaderV1
from kio.serial import entity_writer
from kio.static.primitive import i16, i32

from strom.protocol.messages import request_type, response_header_version, response_type
from strom.protocol.safe_decoder import DecodeError, decode

RESPONSE = "response"
CLOSE = "close"
TIMEOUT = "timeout"
RESET = "reset"
CUT = "cut"  # the fuzzer closed the connection on purpose (a SASL or TLS exchange cut short)
OUTCOMES: Final = (RESPONSE, CLOSE, TIMEOUT, RESET, CUT)
RESPONSE_BYTES_MAX: Final = 256 * 1024 * 1024
CLIENT_ID: Final = "strom-fuzz"


def encode_body(request: Any, correlation_id: int, client_id: str | None = CLIENT_ID) -> bytes:
    """Header (v2 for flexible versions, else v1) and request, without the size prefix."""
    buf = io.BytesIO()
    header_cls: Any = RequestHeaderV2 if type(request).__flexible__ else RequestHeaderV1
    header = header_cls(request_api_key=i16(request.__api_key__),
                        request_api_version=i16(request.__version__),
                        correlation_id=i32(correlation_id), client_id=client_id)
    entity_writer(header_cls)(buf, header)
    entity_writer(type(request))(buf, request)
    return buf.getvalue()


def framed(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def encode_frame(request: Any, correlation_id: int, client_id: str | None = CLIENT_ID) -> bytes:
    return framed(encode_body(request, correlation_id, client_id))


def frame_header(frame: bytes) -> tuple[int, int, int] | None:
    """(api key, version, correlation id) of a frame, None if it is too short to have them."""
    if len(frame) < 12:
        return None
    key, version, correlation_id = struct.unpack_from(">hhi", frame, 4)
    return int(key), int(version), int(correlation_id)


def decode_request(frame: bytes) -> Any | None:
    """The request entity of an (unmutated) frame, None if it does not decode."""
    head = frame_header(frame)
    if head is None:
        return None
    cls = request_type(head[0], head[1])
    if cls is None:
        return None
    header_cls: Any = RequestHeaderV2 if cls.__flexible__ else RequestHeaderV1
    try:
        _header, offset = decode(header_cls, frame, 4)
        body, _end = decode(cls, frame, offset)
    except (DecodeError, ValueError):
        return None
    return body


def decode_response(api_key: int, version: int, response: bytes) -> Any:
    """The response entity of a response frame (without size prefix); raises DecodeError."""
    if response_header_version(api_key, version) == 0:
        offset = 4
    else:
        _header, offset = decode(ResponseHeaderV1, response, 0)
    body, _end = decode(response_type(api_key, version), response, offset)
    return body


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one frame got: an outcome, the response (if any) and how long it took."""

    outcome: str
    response: bytes | None
    elapsed_s: float


class Closed(Exception):
    """The peer closed the connection cleanly (EOF)."""


class Conn:
    """One blocking TCP connection to the broker; with `tls`, TLS over it (the handshake is
    done here, within the connect timeout; it raises ssl.SSLError, an OSError)."""

    def __init__(self, address: tuple[str, int], connect_timeout_s: float = 5.0,
                 tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
                 source: str | None = None) -> None:
        sock = socket.create_connection(address, timeout=connect_timeout_s,
                                        source_address=None if source is None else (source, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port: int = sock.getsockname()[1]
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_hostname or address[0])
            except BaseException:
                sock.close()
                raise
        self.sock: socket.socket = sock

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise Closed
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv_frame(self, timeout_s: float, min_size: int = 4) -> bytes:
        """One response frame without its size prefix; raises Closed, TimeoutError, OSError.
        `min_size` 0 for raw SASL tokens (an empty one is an answer)."""
        deadline = time.monotonic() + timeout_s
        size = struct.unpack(">i", self.recv_exact(4, deadline))[0]
        if size == 0 and min_size == 0:
            return b""
        if not max(min_size, 1) <= size <= RESPONSE_BYTES_MAX:
            raise OSError(f"response size {size} out of bounds")
        return self.recv_exact(size, deadline)

    def exchange(self, frame: bytes, timeout_s: float, expect_answer: bool = True,
                 min_size: int = 4) -> Exchange:
        """Sends `frame`, waits for one response (or, without `expect_answer`, only checks that
        the connection is still open); classifies what happened."""
        start = time.monotonic()
        try:
            self.send(frame)
            response = self.recv_frame(timeout_s, min_size)
        except Closed:
            return Exchange(CLOSE, None, time.monotonic() - start)
        except TimeoutError:
            return Exchange(TIMEOUT, None, time.monotonic() - start)
        except OSError:
            return Exchange(RESET, None, time.monotonic() - start)
        return Exchange(RESPONSE, response, time.monotonic() - start)

    def call(self, request: Any, correlation_id: int, timeout_s: float = 10.0) -> Any:
        """Sends a well-formed request and returns its decoded response (raises on failure)."""
        self.send(encode_frame(request, correlation_id))
        response = self.recv_frame(timeout_s)
        got = struct.unpack_from(">i", response, 0)[0]
        if got != correlation_id:
            raise OSError(f"correlation id {got} in answer to {correlation_id}")
        return decode_response(request.__api_key__, request.__version__, response)


class Client:
    """A request/response client on one connection, reconnecting after a failure."""

    def __init__(self, address: tuple[str, int], timeout_s: float = 15.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._conn: Conn | None = None
        self._next_id = 1

    def call(self, request: Any, timeout_s: float | None = None) -> Any:
        if self._conn is None:
            self._conn = Conn(self.address)
        self._next_id += 1
        try:
            return self._conn.call(request, self._next_id, timeout_s or self.timeout_s)
        except (OSError, Closed, DecodeError):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def schema(api_key: int, version: int) -> Any:
    """The kio request class of (api key, version); raises KeyError if kio has none."""
    cls = request_type(api_key, version)
    if cls is None:
        raise KeyError((api_key, version))
    return cls


def module_of(api_key: int, version: int) -> Any:
    """The kio module of a request version, to build its nested entities by class name."""
    import sys

    return sys.modules[schema(api_key, version).__module__]
