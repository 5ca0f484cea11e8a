"""From a request frame to a response frame: version checks, safe decoding, the handler."""

from __future__ import annotations

import dataclasses
import logging
import time
import typing
from collections.abc import Awaitable, Generator
from datetime import timedelta
from typing import Any, Final

from kio.serial.readers import read_int16
from kio.static.protocol import Entity

from strom.broker.errors import CloseConnection
from strom.broker.handlers.api_versions import api_versions_response
from strom.broker.quotas import QuotaRuntime
from strom.broker.registry import REGISTRY, ApiSpec
from strom.broker.state import Broker, RequestContext
from strom.observability.metrics import ApiMeters
from strom.protocol.framing import FrameError, parse_header, peek_header
from strom.protocol.messages import (
    API_VERSIONS_KEY,
    ErrorCode,
    ResponseBuilder,
    encode_response,
    request_type,
    response_type,
)
from strom.protocol.safe_decoder import DecodeError, decode
from strom.security.quotas import CONTROLLER_MUTATION_RATE, REQUEST_PERCENTAGE
from strom.security.session import Session

log = logging.getLogger(__name__)

PRODUCE_KEY: Final = 0
FETCH_KEY: Final = 1
MUTATION_KEYS: Final = frozenset({19, 20, 37})  # CreateTopics, DeleteTopics, CreatePartitions
SASL_HANDSHAKE_KEY: Final = 17
SASL_AUTHENTICATE_KEY: Final = 36
# What a SASL listener serves before the client authenticated (Kafka's SaslServerAuthenticator).
SASL_OPEN_APIS: Final = frozenset({API_VERSIONS_KEY, SASL_HANDSHAKE_KEY, SASL_AUTHENTICATE_KEY})


def check_session(session: Session, api_name: str) -> None:
    """Closes the connection of a request that its session may not make yet: anything but
    ApiVersions and the SASL exchange before SASL authentication, or after the session's
    re-authentication was due (KIP-368)."""
    if session.needs_sasl:
        raise CloseConnection(f"unexpected {api_name} request during SASL authentication "
                              "(only ApiVersions, SaslHandshake and SaslAuthenticate before it)")
    deadline = session.reauth_deadline
    if deadline is not None and time.monotonic() > deadline:
        raise CloseConnection(f"{api_name} after the session of {session.principal} expired "
                              "without re-authentication (connections.max.reauth.ms)")



def error_body(cls: type[Entity], error: ErrorCode) -> Entity:
    """A response of `cls` carrying `error` in its top-level error field and empty arrays."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            values[field.name] = field.default
            continue
        kind = field.metadata.get("kafka_type")
        hint = hints[field.name]
        if kind == "error_code":
            values[field.name] = error
        elif kind is None:
            values[field.name] = () if typing.get_origin(hint) is not None else None
        elif kind in ("string", "bytes", "records"):
            empty: str | bytes = "" if kind == "string" else b""
            values[field.name] = None if type(None) in typing.get_args(hint) else empty
        elif kind in ("timedelta_i32", "timedelta_i64"):
            from datetime import timedelta

            values[field.name] = timedelta(0)
        elif kind == "bool":
            values[field.name] = False
        else:
            values[field.name] = -1 if kind.startswith("int") else 0
    return cls(**values)


def unsupported_version(api_key: int, version: int, correlation_id: int,
                        spec: ApiSpec) -> bytes:
    if api_key == API_VERSIONS_KEY:
        # KIP-511: answer with v0 and the versions we serve, so the client can pick one.
        body = api_versions_response(ResponseBuilder(API_VERSIONS_KEY, 0),
                                     ErrorCode.unsupported_version)
        return encode_response(API_VERSIONS_KEY, 0, correlation_id, body)
    try:
        cls = response_type(api_key, version)
    except Exception:
        raise CloseConnection(f"{spec.name} v{version} is not supported") from None
    return encode_response(api_key, version, correlation_id,
                           error_body(cls, ErrorCode.unsupported_version))


async def dispatch(broker: Broker, frame: memoryview, session: Session,
                   meters: ApiMeters | None = None) -> bytes | None:
    """Returns the response frame, or None when no response is due (Produce acks=0);
    counts the answer's error codes in `meters` (metrics on)."""
    api_key, version, correlation_id = peek_header(frame)
    spec = REGISTRY.get(api_key)
    if spec is None:
        raise CloseConnection(f"unknown API key {api_key}")
    if api_key not in SASL_OPEN_APIS:
        check_session(session, spec.name)
    if not spec.serves(version):
        if api_key == PRODUCE_KEY and 0 <= version < spec.min_version and _acks_zero(frame):
            return None
        if meters is not None:
            meters.error(ErrorCode.unsupported_version)
        return unsupported_version(api_key, version, correlation_id, spec)
    req_type = request_type(api_key, version)
    if req_type is None:
        raise CloseConnection(f"no schema for {spec.name} v{version}")
    header = parse_header(frame, req_type)
    try:
        # Kafka ignores bytes after the body; librdkafka's all-topics Metadata (v9+) has 3.
        request, _ = decode(req_type, frame, header.body_offset)
    except DecodeError as exc:
        raise CloseConnection(f"malformed {spec.name} v{version} request: {exc}") from None
    ctx = RequestContext(header.client_id, session.client_host, version, correlation_id,
                         session, broker.acls.authorizer)
    return await handle(broker, spec, ctx, request, len(frame), meters)


async def handle(broker: Broker, spec: ApiSpec, ctx: RequestContext, request: Any,
                 request_size: int, meters: ApiMeters | None) -> bytes | None:
    """The handler's answer, encoded (with the client's quota throttle, if quotas are on)."""
    api_key, version, correlation_id = spec.key, ctx.api_version, ctx.correlation_id
    builder = ResponseBuilder(api_key, version)
    if not broker.quotas.active:
        body = await spec.handler(broker, ctx, request, builder)
        if body is None:
            return None
        if meters is not None:
            meters.count_errors(body)
        return encode_response(api_key, version, correlation_id, body)
    timed = BusyTime(spec.handler(broker, ctx, request, builder))
    body = await timed
    if meters is not None and body is not None:
        meters.count_errors(body)
    return throttled(broker.quotas, ctx, request_size, body, timed.busy_s)


class BusyTime:
    """Awaits a coroutine and adds up the time it ran on the event loop, leaving out the
    time it waited (a long poll, a write, a rebalance): the time Kafka's request quota counts
    on its request threads, without its purgatory."""

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.steps = awaitable.__await__()
        self.busy_s = 0.0

    def __await__(self) -> Generator[Any, Any, Any]:
        message: Any = None
        error: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                yielded = (self.steps.send(message) if error is None
                           else self.steps.throw(error))
            except StopIteration as stop:
                return stop.value
            finally:
                self.busy_s += time.perf_counter() - started
            try:
                message, error = (yield yielded), None
            except GeneratorExit:
                self.steps.close()
                raise
            except BaseException as exc:  # a cancellation: the coroutine handles it
                message, error = None, exc


def throttled(quotas: QuotaRuntime, ctx: RequestContext, request_size: int, body: Any,
              handler_s: float) -> bytes | None:
    """The answer with the throttle the client earned (its request time, a Produce's size, a
    Fetch answer's size against its quotas), and the session muted that long (KIP-219)."""
    session, client_id = ctx.session, ctx.client_id or ""
    api_key = body.__api_key__ if body is not None else PRODUCE_KEY
    throttle_s = quotas.record(session, client_id, REQUEST_PERCENTAGE, handler_s)
    if api_key == PRODUCE_KEY:
        throttle_s = max(throttle_s, quotas.produce_bytes(session, client_id, request_size))
    elif api_key in MUTATION_KEYS:  # the handler recorded the partitions (KIP-599)
        throttle_s = max(throttle_s, quotas.record(session, client_id,
                                                   CONTROLLER_MUTATION_RATE, 0))
    encoded = None
    if body is not None:
        encoded = encode_response(api_key, ctx.api_version, ctx.correlation_id, body)
        if api_key == FETCH_KEY:
            throttle_s = max(throttle_s, quotas.fetch_bytes(session, client_id, len(encoded)))
    if throttle_s <= 0:
        return encoded
    quotas.throttled += 1
    session.mute_until = max(session.mute_until, time.monotonic() + throttle_s)
    if body is None or not hasattr(body, "throttle_time"):
        return encoded
    ms = round(throttle_s * 1000)
    changes: dict[str, Any] = {"throttle_time": timedelta(milliseconds=max(
        ms, int(body.throttle_time.total_seconds() * 1000)))}
    if api_key == FETCH_KEY and body.responses and encoded is not None:
        # Kafka answers a throttled Fetch empty and takes its bytes back: the consumer asks
        # for the same offsets once the throttle is over.
        quotas.unrecord_fetch_bytes(session, client_id, len(encoded))
        changes["responses"] = ()
        if hasattr(body, "node_endpoints"):
            changes["node_endpoints"] = ()
    body = dataclasses.replace(body, **changes)
    return encode_response(api_key, ctx.api_version, ctx.correlation_id, body)


def _acks_zero(frame: memoryview) -> bool:
    """Old Produce versions start with acks right after a v1 header; acks=0 wants no answer."""
    try:
        client_id_len, _ = read_int16(frame, 8)
        acks, _ = read_int16(frame, 10 + max(int(client_id_len), 0))
    except Exception:
        return False
    return int(acks) == 0


__all__ = ("CloseConnection", "FrameError", "dispatch", "error_body")
