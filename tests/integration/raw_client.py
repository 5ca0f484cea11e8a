"""A minimal blocking Kafka protocol client for tests that need to send exact bytes."""

from __future__ import annotations

import io
import socket
import struct
from typing import Any

from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.serial import entity_writer
from kio.static.primitive import i16, i32

from strom.protocol.messages import response_header_version, response_type
from strom.protocol.safe_decoder import decode


class RawClient:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self, request: Any, correlation_id: int | None = None) -> bytes:
        if correlation_id is None:
            self.correlation_id += 1
            correlation_id = self.correlation_id
        buf = io.BytesIO()
        header_cls = RequestHeaderV2 if type(request).__flexible__ else RequestHeaderV1
        header = header_cls(request_api_key=i16(request.__api_key__),
                            request_api_version=i16(request.__version__),
                            correlation_id=i32(correlation_id), client_id="raw-test")
        entity_writer(header_cls)(buf, header)
        entity_writer(type(request))(buf, request)
        body = buf.getvalue()
        return struct.pack(">i", len(body)) + body

    def recv_frame(self) -> bytes:
        size = struct.unpack(">i", self.recv_exact(4))[0]
        return self.recv_exact(size)

    def recv_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                raise ConnectionError("closed by broker")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def request(self, request: Any) -> Any:
        self.send_raw(self.frame(request))
        return self.read_response(request.__api_key__, request.__version__)

    def read_response(self, api_key: int, version: int) -> Any:
        frame = self.recv_frame()
        header_size = 4 if response_header_version(api_key, version) == 0 else 5
        body, _ = decode(response_type(api_key, version), frame, header_size)
        return body

    def is_closed_by_peer(self, wait: float = 5.0) -> bool:
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
