"""Frames and request headers: sizes checked before anything is allocated."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.static.protocol import Entity

from strom.protocol.safe_decoder import DecodeError, decode

# A request header starts with api_key int16, api_version int16, correlation_id int32.
MIN_HEADER_SIZE: Final = 8
_HEADER_PREFIX: Final = struct.Struct(">hhi")


class FrameError(Exception):
    """The connection must be closed: the frame size or header cannot be trusted."""


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int  # where the body starts in the frame


def check_frame_size(size: int, limit: int) -> None:
    if size < MIN_HEADER_SIZE:
        raise FrameError(f"frame size {size} is below the minimum of {MIN_HEADER_SIZE}")
    if size > limit:
        raise FrameError(f"frame size {size} exceeds the limit of {limit} bytes")


def peek_header(frame: bytes | memoryview) -> tuple[int, int, int]:
    """api_key, api_version, correlation_id: enough to answer even an unknown request."""
    if len(frame) < MIN_HEADER_SIZE:
        raise FrameError("frame shorter than a request header")
    api_key, api_version, correlation_id = _HEADER_PREFIX.unpack_from(frame, 0)
    return int(api_key), int(api_version), int(correlation_id)


def parse_header(frame: bytes | memoryview, request_type: type[Entity]) -> RequestHeader:
    """The full header, v1 or v2 as the request's schema says (flexible versions use v2)."""
    header_type: type[Entity] = (
        RequestHeaderV2 if request_type.__flexible__ else RequestHeaderV1
    )
    try:
        header, end = decode(header_type, frame, 0)
    except DecodeError as exc:
        raise FrameError(str(exc)) from None
    return RequestHeader(
        api_key=int(header.request_api_key),  # type: ignore[attr-defined]
        api_version=int(header.request_api_version),  # type: ignore[attr-defined]
        correlation_id=int(header.correlation_id),  # type: ignore[attr-defined]
        client_id=header.client_id,  # type: ignore[attr-defined]
        body_offset=end,
    )
