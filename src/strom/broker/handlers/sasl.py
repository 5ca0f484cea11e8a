"""SaslHandshake (17) and SaslAuthenticate (36): a SASL listener's authentication, as Kafka's
SaslServerAuthenticator runs it.

The handshake picks the mechanism (one the listener enables, else UNSUPPORTED_SASL_MECHANISM
and the connection closes); each SaslAuthenticate carries the mechanism's next message. Success
sets the session's principal (User:NAME) and, with connections.max.reauth.ms, the session's
lifetime (KIP-368): the client re-authenticates on the same connection (a new handshake, the
same principal) before it ends, or the connection closes at its next request. A failure
answers SASL_AUTHENTICATION_FAILED with Kafka's message and closes the connection; it is
logged (user name and address, never a secret) and counted. On other listeners both APIs
answer ILLEGAL_SASL_STATE.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from strom.broker.registry import api
from strom.broker.sasl import SUPPORTED, Authenticated
from strom.broker.state import Broker, RequestContext
from strom.protocol.messages import ErrorCode, ResponseBuilder
from strom.security.principal import AuthenticationFailed, KafkaPrincipal
from strom.security.session import Session

log = logging.getLogger(__name__)


@api(17, "SaslHandshake", (0, 1), "the listener's sasl.enabled.mechanisms: PLAIN, "
     "SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER; after v0 the SASL tokens come as raw frames")
async def handle_sasl_handshake(broker: Broker, ctx: RequestContext, request: Any,
                                b: ResponseBuilder) -> Any:
    session = ctx.session
    if not session.protocol.uses_sasl:
        return b.make("SaslHandshakeResponse", error_code=ErrorCode.illegal_sasl_state,
                      mechanisms=())
    enabled = [m for m in broker.sasl.enabled(session.listener) if m in SUPPORTED]
    mechanism = str(request.mechanism)
    if mechanism not in enabled:
        session.close_after_response = (f"SASL mechanism {mechanism!r} is not enabled on "
                                        f"listener {session.listener}")
        return b.make("SaslHandshakeResponse", error_code=ErrorCode.unsupported_sasl_mechanism,
                      mechanisms=tuple(enabled))
    if session.authenticated and mechanism != session.mechanism:
        session.close_after_response = "re-authentication must use the same mechanism"
        return b.make("SaslHandshakeResponse", error_code=ErrorCode.illegal_sasl_state,
                      mechanisms=tuple(enabled))
    try:
        session.exchange = await broker.sasl.new_exchange(session.listener, mechanism)
    except Exception as exc:
        log.warning("cannot start %s authentication on listener %s: %s", mechanism,
                    session.listener, exc)
        session.close_after_response = f"{mechanism} is not available"
        return b.make("SaslHandshakeResponse", error_code=ErrorCode.unsupported_sasl_mechanism,
                      mechanisms=tuple(enabled))
    session.mechanism = mechanism
    session.raw_tokens = ctx.api_version == 0  # KIP-152: v1 wraps them in SaslAuthenticate
    return b.make("SaslHandshakeResponse", error_code=ErrorCode.none, mechanisms=tuple(enabled))


def _answer(b: ResponseBuilder, error: ErrorCode, message: str | None, data: bytes = b"",
            lifetime_ms: int = 0) -> Any:
    return b.make("SaslAuthenticateResponse", error_code=error, error_message=message,
                  auth_bytes=data, session_lifetime=timedelta(milliseconds=lifetime_ms))


async def raw_token(broker: Broker, session: Session, token: bytes) -> bytes | None:
    """One SASL token after a SaslHandshake v0 (no Kafka header around it): the answer's
    token, sent as a raw frame too; None when the authentication failed (the caller closes
    the connection, as Kafka does: raw tokens carry no error)."""
    exchange = session.exchange
    assert exchange is not None
    try:
        data: bytes = await exchange.step(token)
        result = exchange.result
        if result is not None:
            principal = KafkaPrincipal("User", result.user)
            if session.authenticated and principal != session.principal:
                raise AuthenticationFailed("re-authentication must keep the principal")
    except AuthenticationFailed as exc:
        _failed(broker, session, exc)
        return None
    if result is not None:
        _succeeded(broker, session, principal, result)
    return data


def _failed(broker: Broker, session: Session, exc: AuthenticationFailed) -> None:
    broker.sasl.failures += 1
    session.exchange = None
    session.close_after_response = "SASL authentication failed"
    log.info("authentication failed (%s) from %s on listener %s: %s", session.mechanism,
             session.address, session.listener, exc)


def _succeeded(broker: Broker, session: Session, principal: KafkaPrincipal,
               result: Authenticated) -> int:
    """Marks the session authenticated; returns its lifetime in ms (0: no limit)."""
    session.exchange = None
    session.raw_tokens = False
    reauthenticated = session.authenticated
    broker.sasl.successes += 1
    broker.sasl.reauthentications += reauthenticated
    session.principal, session.authenticated = principal, True
    lifetime_ms = broker.sasl.session_lifetime_ms(session.listener, result)
    session.reauth_deadline = (time.monotonic() + lifetime_ms / 1000) if lifetime_ms else None
    log.debug("%s %s as %s (%s) from %s", "re-authenticated" if reauthenticated
              else "authenticated", session.listener, principal, session.mechanism,
              session.address)
    return lifetime_ms


@api(36, "SaslAuthenticate", (0, 2), "each step of the SASL exchange; session lifetime "
     "(KIP-368) from connections.max.reauth.ms and a token's expiry")
async def handle_sasl_authenticate(broker: Broker, ctx: RequestContext, request: Any,
                                   b: ResponseBuilder) -> Any:
    session = ctx.session
    if not session.protocol.uses_sasl or session.exchange is None:
        session.close_after_response = "SaslAuthenticate without a SaslHandshake"
        return _answer(b, ErrorCode.illegal_sasl_state,
                       "Unexpected SaslAuthenticate request: no SASL handshake")
    exchange = session.exchange
    try:
        data = await exchange.step(bytes(request.auth_bytes))
        result = exchange.result
        if result is None:
            return _answer(b, ErrorCode.none, None, data)
        principal = KafkaPrincipal("User", result.user)
        if session.authenticated and principal != session.principal:
            raise AuthenticationFailed(f"re-authentication as {principal} on a connection of "
                                       f"{session.principal}: the principal must not change")
    except AuthenticationFailed as exc:
        _failed(broker, session, exc)
        return _answer(b, ErrorCode.sasl_authentication_failed, str(exc))
    lifetime_ms = _succeeded(broker, session, principal, result)
    return _answer(b, ErrorCode.none, None, data, lifetime_ms if ctx.api_version >= 1 else 0)
