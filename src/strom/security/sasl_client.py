"""The client side of SASL, for strom's own Kafka connections (a broker reaching its peers, the
CLI commands that speak the protocol themselves): PLAIN and SCRAM-SHA-256/512 over Kafka's
SaslHandshake (v1) and SaslAuthenticate, as librdkafka and the Java client do it.

`ScramClient` is one SCRAM exchange without I/O (RFC 5802: client-first, then client-final
from the server-first, then the server-final's signature checked, so a server that does not
know the password is not believed). `authenticate(connection, credentials)` runs the whole
exchange on a negotiated `KafkaConnection` and records the session lifetime the server gives
(KIP-368), after which the connection counts as closed and its owner opens another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

from strom.protocol.client import KafkaConnection, PeerUnavailable
from strom.protocol.messages import ErrorCode, RequestBuilder
from strom.security.scram import MECHANISMS, hash_name, salted_password, saslname_encode

PLAIN: Final = "PLAIN"
CLIENT_MECHANISMS: Final = (PLAIN, *MECHANISMS)
SASL_HANDSHAKE: Final = 17
SASL_AUTHENTICATE: Final = 36
# A session the server limits (connections.max.reauth.ms) is given up this early: the Java
# client re-authenticates between 85% and 95% of it.
LIFETIME_USED: Final = 0.85


class SaslError(PeerUnavailable):
    """The server refused the authentication or did not prove it knows the password."""


@dataclass(frozen=True, slots=True)
class SaslCredentials:
    mechanism: str
    username: str
    password: str

    def __post_init__(self) -> None:
        if self.mechanism not in CLIENT_MECHANISMS:
            raise ValueError(f"SASL mechanism {self.mechanism!r} is not one strom's own "
                             f"connections speak ({', '.join(CLIENT_MECHANISMS)})")

    def __repr__(self) -> str:  # never the password
        return f"SaslCredentials({self.mechanism}, {self.username!r})"


def plain_token(username: str, password: str) -> bytes:
    """RFC 4616's message: authzid (empty), authcid, password, NUL separated."""
    return b"\0" + username.encode() + b"\0" + password.encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class ScramClient:
    """The client side of one SCRAM exchange: `first()`, `final(server_first)`,
    `verify(server_final)`; ValueError for a server message that is malformed, whose nonce
    is not ours, or whose signature is wrong."""

    GS2: Final = "n,,"

    def __init__(self, mechanism: str, username: str, password: str,
                 nonce: str | None = None) -> None:
        self.mechanism = mechanism
        self.digest = hash_name(mechanism)
        self.password = password.encode()
        self.nonce = nonce or secrets.token_urlsafe(24)
        self.bare = f"n={saslname_encode(username)},r={self.nonce}"
        self._auth_message: bytes | None = None
        self._salted: bytes | None = None

    def first(self) -> bytes:
        return (self.GS2 + self.bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8", "replace")
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        nonce, salt, iterations = fields.get("r", ""), fields.get("s"), fields.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise ValueError("the server's nonce does not extend ours")
        if salt is None or not iterations.isdigit() or int(iterations) < 1:
            raise ValueError(f"a server-first-message without salt or iterations: {text!r}")
        try:
            salt_bytes = base64.b64decode(salt, validate=True)
        except binascii.Error:
            raise ValueError("the server's salt is not base64") from None
        self._salted = salted_password(self.mechanism, self.password, salt_bytes,
                                       int(iterations))
        without_proof = f"c={_b64(self.GS2.encode())},r={nonce}"
        self._auth_message = ",".join((self.bare, text, without_proof)).encode()
        client_key = hmac.digest(self._salted, b"Client Key", self.digest)
        stored_key = hashlib.new(self.digest, client_key).digest()
        signature = hmac.digest(stored_key, self._auth_message, self.digest)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return f"{without_proof},p={_b64(proof)}".encode()

    def verify(self, server_final: bytes) -> None:
        if self._salted is None or self._auth_message is None:
            raise ValueError("no client-final-message was sent")
        text = server_final.decode("utf-8", "replace")
        if text.startswith("e="):
            raise ValueError(f"the server refused the login: {text[2:]}")
        server_key = hmac.digest(self._salted, b"Server Key", self.digest)
        expected = hmac.digest(server_key, self._auth_message, self.digest)
        if not text.startswith("v=") or not hmac.compare_digest(
                text[2:].encode(), _b64(expected).encode()):
            raise ValueError("the server's signature is wrong: it does not know the password")


async def authenticate(connection: KafkaConnection, credentials: SaslCredentials) -> None:
    """SaslHandshake then SaslAuthenticate rounds on a negotiated connection; SaslError
    (a PeerUnavailable) if the server refuses, PeerUnavailable if it stops answering."""
    peer = connection.peer
    version = connection.version_for(SASL_HANDSHAKE, max_version=1, min_version=1)
    answer = await connection.request(RequestBuilder(SASL_HANDSHAKE, version).make(
        "SaslHandshakeRequest", mechanism=credentials.mechanism))
    if answer.error_code != ErrorCode.none:
        offered = ", ".join(str(m) for m in answer.mechanisms) or "none"
        raise SaslError(f"{peer}: SASL mechanism {credentials.mechanism} refused "
                        f"({ErrorCode(answer.error_code).name}); the listener offers {offered}")
    auth_version = connection.version_for(SASL_AUTHENTICATE, max_version=2)

    async def token(data: bytes) -> Any:
        response = await connection.request(RequestBuilder(SASL_AUTHENTICATE, auth_version)
                                            .make("SaslAuthenticateRequest", auth_bytes=data))
        if response.error_code != ErrorCode.none:
            raise SaslError(f"{peer}: authentication as {credentials.username!r} "
                            f"({credentials.mechanism}) failed: "
                            f"{response.error_message or ErrorCode(response.error_code).name}")
        return response

    if credentials.mechanism == PLAIN:
        last = await token(plain_token(credentials.username, credentials.password))
    else:
        scram = ScramClient(credentials.mechanism, credentials.username, credentials.password)
        server_first = await token(scram.first())
        try:
            last = await token(scram.final(bytes(server_first.auth_bytes)))
            scram.verify(bytes(last.auth_bytes))
        except ValueError as exc:
            raise SaslError(f"{peer}: SCRAM with {credentials.mechanism}: {exc}") from None
    lifetime = getattr(last, "session_lifetime", None)  # v1+
    lifetime_s = 0.0 if lifetime is None else lifetime.total_seconds()
    if lifetime_s > 0:
        connection.expires_at = time.monotonic() + lifetime_s * LIFETIME_USED
