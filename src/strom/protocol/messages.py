"""Request and response schemas by (api key, version), and building messages for any version.

Handlers are written once against field names; `ResponseBuilder` finds the classes of the
request's version and drops fields that version does not have, as Kafka's generated code
ignores fields a version cannot carry. `RequestBuilder` does the same for the requests this
broker sends to its peers (strom.protocol.client), and `encode_request` / `decode_response`
frame them and read their answers.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import timedelta
from functools import cache
from types import ModuleType
from typing import Any, Final

from kio.index import KioIndexError, load_payload_module, load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.schema.response_header.v0.header import ResponseHeader as ResponseHeaderV0
from kio.schema.response_header.v1.header import ResponseHeader as ResponseHeaderV1
from kio.serial import entity_writer
from kio.static.constants import EntityType
from kio.static.primitive import i16, i32
from kio.static.protocol import Entity, Payload

from strom.protocol.safe_decoder import DecodeError, decode

NO_THROTTLE: Final = timedelta(0)
API_VERSIONS_KEY: Final = 18

__all__ = ("NO_THROTTLE", "ErrorCode", "RequestBuilder", "ResponseBuilder", "decode_response",
           "encode_request", "encode_response")


@cache
def request_type(api_key: int, version: int) -> type[Entity] | None:
    try:
        return load_request_schema(api_key, version)
    except KioIndexError:
        return None


@cache
def response_type(api_key: int, version: int) -> type[Entity]:
    return load_response_schema(api_key, version)


@cache
def _response_module(api_key: int, version: int) -> ModuleType:
    return load_payload_module(api_key, version, EntityType.response)


@cache
def _request_module(api_key: int, version: int) -> ModuleType:
    return load_payload_module(api_key, version, EntityType.request)


@cache
def _field_names(cls: type[Any]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


class _Builder:
    __slots__ = ("_module", "api_key", "version")

    def __init__(self, module: ModuleType, api_key: int, version: int) -> None:
        self._module = module
        self.api_key = api_key
        self.version = version

    def make(self, class_name: str, **values: Any) -> Any:
        """An instance of this version's `class_name` from the values its fields name; the
        others are dropped (a field this version does not carry)."""
        cls = getattr(self._module, class_name)
        names = _field_names(cls)
        return cls(**{k: v for k, v in values.items() if k in names})

    def has_class(self, class_name: str) -> bool:
        return hasattr(self._module, class_name)

    def has(self, class_name: str, field_name: str) -> bool:
        return field_name in _field_names(getattr(self._module, class_name))


class ResponseBuilder(_Builder):
    """`b.make("ProduceResponse", responses=..., throttle_time=...)` for one API version."""

    __slots__ = ()

    def __init__(self, api_key: int, version: int) -> None:
        super().__init__(_response_module(api_key, version), api_key, version)


class RequestBuilder(_Builder):
    """`b.make("WriteTxnMarkersRequest", markers=...)` for one API version: the requests a
    broker sends its peers, written once for every version they may negotiate."""

    __slots__ = ()

    def __init__(self, api_key: int, version: int) -> None:
        super().__init__(_request_module(api_key, version), api_key, version)


def response_header_version(api_key: int, version: int) -> int:
    """ApiVersions responses always use header v0 so any client can read them (KIP-511)."""
    if api_key == API_VERSIONS_KEY:
        return 0
    return 1 if response_type(api_key, version).__flexible__ else 0


def encode_response(api_key: int, version: int, correlation_id: int, body: Entity) -> bytes:
    """The whole frame: 4-byte size, response header, body."""
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    if response_header_version(api_key, version) == 0:
        entity_writer(ResponseHeaderV0)(buf, ResponseHeaderV0(correlation_id=i32(correlation_id)))
    else:
        entity_writer(ResponseHeaderV1)(buf, ResponseHeaderV1(correlation_id=i32(correlation_id)))
    entity_writer(type(body))(buf, body)
    frame = buf.getbuffer()
    frame[0:4] = (len(frame) - 4).to_bytes(4, "big")
    return bytes(frame)


def encode_request(correlation_id: int, client_id: str | None, body: Payload) -> bytes:
    """The whole frame of a request: 4-byte size, request header (v2 for flexible versions,
    else v1), body; api key and version are the body's."""
    key, version, cid = i16(body.__api_key__), i16(body.__version__), i32(correlation_id)
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    if body.__flexible__:
        entity_writer(RequestHeaderV2)(buf, RequestHeaderV2(
            request_api_key=key, request_api_version=version, correlation_id=cid,
            client_id=client_id))
    else:
        entity_writer(RequestHeaderV1)(buf, RequestHeaderV1(
            request_api_key=key, request_api_version=version, correlation_id=cid,
            client_id=client_id))
    entity_writer(type(body))(buf, body)
    frame = buf.getbuffer()
    frame[0:4] = (len(frame) - 4).to_bytes(4, "big")
    return bytes(frame)


def response_correlation_id(frame: bytes | memoryview) -> int:
    """Both response header versions start with the correlation id."""
    if len(frame) < 4:
        raise DecodeError("response shorter than its correlation id")
    return int.from_bytes(frame[0:4], "big", signed=True)


def decode_response(api_key: int, version: int, frame: bytes | memoryview) -> Entity:
    """The body of a response frame (without its size prefix), through the bounded decoder.
    An ApiVersions request the peer does not serve is answered in v0 (KIP-511), whatever the
    version asked: such an answer is read as v0. Raises DecodeError."""
    if response_header_version(api_key, version) == 0:
        response_correlation_id(frame)
        offset = 4
    else:
        _header, offset = decode(ResponseHeaderV1, frame, 0)
    if api_key == API_VERSIONS_KEY and version > 0 and _error_code(frame, offset) == (
            ErrorCode.unsupported_version):
        version = 0
    body, _end = decode(response_type(api_key, version), frame, offset)
    return body


def _error_code(frame: bytes | memoryview, offset: int) -> int | None:
    if len(frame) < offset + 2:
        return None
    return int.from_bytes(frame[offset:offset + 2], "big", signed=True)
