"""Request and response schemas by (api key, version), and building responses for any version.

Handlers are written once against field names; `ResponseBuilder` finds the classes of the
request's version and drops fields that version does not have, as Kafka's generated code
ignores fields a version cannot carry.
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
from kio.schema.response_header.v0.header import ResponseHeader as ResponseHeaderV0
from kio.schema.response_header.v1.header import ResponseHeader as ResponseHeaderV1
from kio.serial import entity_writer
from kio.static.constants import EntityType
from kio.static.primitive import i32
from kio.static.protocol import Entity

NO_THROTTLE: Final = timedelta(0)
API_VERSIONS_KEY: Final = 18

__all__ = ("NO_THROTTLE", "ErrorCode", "ResponseBuilder", "encode_response")


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
def _field_names(cls: type[Any]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


class ResponseBuilder:
    """`b.make("ProduceResponse", responses=..., throttle_time=...)` for one API version."""

    __slots__ = ("_module", "version")

    def __init__(self, api_key: int, version: int) -> None:
        self._module = _response_module(api_key, version)
        self.version = version

    def make(self, class_name: str, **values: Any) -> Any:
        cls = getattr(self._module, class_name)
        names = _field_names(cls)
        return cls(**{k: v for k, v in values.items() if k in names})

    def has_class(self, class_name: str) -> bool:
        return hasattr(self._module, class_name)

    def has(self, class_name: str, field_name: str) -> bool:
        return field_name in _field_names(getattr(self._module, class_name))


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
