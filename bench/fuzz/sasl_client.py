"""The client side of SASL, written from the RFCs so it can also say the wrong things:
SaslHandshake and SaslAuthenticate frames, raw tokens (after a v0 handshake, KIP-152), PLAIN
tokens (RFC 4616) and a SCRAM client (RFC 5802, SCRAM-SHA-256/512 of RFC 7677) whose every
part (gs2 header, nonce, channel binding, proof) can be replaced.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import random
import struct
from dataclasses import dataclass
from typing import Final

from kio.schema.sasl_authenticate.v0.request import SaslAuthenticateRequest as AuthenticateV0
from kio.schema.sasl_authenticate.v1.request import SaslAuthenticateRequest as AuthenticateV1
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest as AuthenticateV2
from kio.schema.sasl_handshake.v0.request import SaslHandshakeRequest as HandshakeV0
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest as HandshakeV1

from bench.fuzz import wire

HANDSHAKE_KEY: Final = 17
AUTHENTICATE_KEY: Final = 36
DIGESTS: Final = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
NONCE_CHARS: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
AUTHENTICATE: Final = {0: AuthenticateV0, 1: AuthenticateV1, 2: AuthenticateV2}
HANDSHAKE: Final = {0: HandshakeV0, 1: HandshakeV1}


def handshake_frame(mechanism: str, version: int, correlation_id: int) -> bytes:
    return wire.encode_frame(HANDSHAKE[version](mechanism=mechanism), correlation_id)


def authenticate_frame(token: bytes, version: int, correlation_id: int) -> bytes:
    return wire.encode_frame(AUTHENTICATE[version](auth_bytes=token), correlation_id)


def raw_frame(token: bytes) -> bytes:
    """A SASL token as KIP-152's v0 framing sends it: a size prefix and nothing else."""
    return struct.pack(">i", len(token)) + token


def plain_token(user: str, password: str, authzid: str = "") -> bytes:
    return f"{authzid}\x00{user}\x00{password}".encode()


def plain_is_valid(token: bytes, passwords: dict[str, str]) -> bool:
    """Whether a PLAIN token is a correct login: `[authzid] NUL user NUL password` with a known
    user's password, and an authorization id that is empty or the user."""
    parts = token.split(b"\x00")
    if len(parts) != 3:
        return False
    try:
        authzid, user, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return False
    return passwords.get(user) == password and authzid in ("", user)


def nonce(rng: random.Random, length: int = 24) -> str:
    return "".join(rng.choices(NONCE_CHARS, k=length))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@functools.lru_cache(maxsize=64)
def salted_password(digest: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(digest, password, salt, iterations)


@dataclass(frozen=True)
class ServerFirst:
    raw: str
    nonce: str
    salt: bytes
    iterations: int


def parse_server_first(data: bytes) -> ServerFirst | None:
    """`r=<nonce>,s=<salt>,i=<iterations>`; None if it is not one."""
    try:
        text = data.decode("ascii")
        fields = dict(part.split("=", 1) for part in text.split(","))
        return ServerFirst(text, fields["r"], base64.b64decode(fields["s"], validate=True),
                           int(fields["i"]))
    except (UnicodeDecodeError, ValueError, KeyError, binascii.Error):
        return None


def final_parts(message: bytes) -> tuple[str, bytes] | None:
    """(client-final-message-without-proof, proof) of a client-final message read strictly
    (the proof in canonical base64); None if it cannot be read so."""
    try:
        text = message.decode("ascii")
    except UnicodeDecodeError:
        return None
    without, sep, proof = text.rpartition(",p=")
    if not sep:
        return None
    try:
        return without, base64.b64decode(proof, validate=True)
    except (binascii.Error, ValueError):
        return None


def same_final(sent: bytes, original: bytes) -> str | None:
    """Whether a changed client-final still says what `original` says, so a server may accept
    it without being wrong: "same" (the same attributes and proof), "lenient" (the proof's
    bytes the same only when its base64 is read leniently: padding added, other characters
    dropped), None (it says something else)."""
    if sent == original:
        return "same"
    a, b = final_parts(sent), final_parts(original)
    if b is None:
        return None
    if a is not None:
        return "same" if a == b else None
    try:
        text = sent.decode("ascii")
    except UnicodeDecodeError:
        return None
    without, sep, proof = text.rpartition(",p=")
    if not sep or without != b[0]:
        return None
    try:
        lenient = base64.b64decode(proof + "=" * (-len(proof) % 4))
    except (binascii.Error, ValueError):
        return None
    return "lenient" if lenient == b[1] else None


class ScramClient:
    """One SCRAM exchange's client: `first()`, then `final(server_first)`. `gs2` is the GS2
    header ("n,," without channel binding or authorization id)."""

    def __init__(self, mechanism: str, user: str, password: str, client_nonce: str,
                 gs2: str = "n,,") -> None:
        self.mechanism = mechanism
        self.digest = DIGESTS[mechanism]
        self.user = user
        self.password = password
        self.nonce = client_nonce
        self.gs2 = gs2
        self.expected_server_signature: bytes | None = None

    @property
    def bare(self) -> str:
        name = self.user.replace("=", "=3D").replace(",", "=2C")
        return f"n={name},r={self.nonce}"

    def first(self) -> bytes:
        return (self.gs2 + self.bare).encode()

    def final(self, server: ServerFirst, *, combined_nonce: str | None = None,
              binding_gs2: str | None = None, bare: str | None = None,
              password: str | None = None) -> bytes:
        """The client-final message for `server`'s first message, its proof computed over
        what is sent; each keyword replaces one part (and the proof follows it, so only the
        server's own checks can refuse the message)."""
        gs2 = self.gs2 if binding_gs2 is None else binding_gs2
        combined = server.nonce if combined_nonce is None else combined_nonce
        without_proof = f"c={b64(gs2.encode())},r={combined}"
        auth_message = f"{self.bare if bare is None else bare},{server.raw},{without_proof}"
        salted = salted_password(self.digest, (password or self.password).encode(), server.salt,
                                 server.iterations)
        client_key = hmac.digest(salted, b"Client Key", self.digest)
        stored_key = hashlib.new(self.digest, client_key).digest()
        signature = hmac.digest(stored_key, auth_message.encode(), self.digest)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", self.digest)
        self.expected_server_signature = hmac.digest(server_key, auth_message.encode(),
                                                     self.digest)
        return f"{without_proof},p={b64(proof)}".encode()

    def server_final_ok(self, data: bytes) -> bool:
        """Whether the server-final message proves the server knows the credential."""
        return (self.expected_server_signature is not None
                and data == b"v=" + b64(self.expected_server_signature).encode())


class LoginFailed(Exception):
    """A login that should have worked did not; the message says at which step."""


def login(conn: wire.Conn, mechanism: str, user: str, password: str, client_nonce: str,
          timeout_s: float = 10.0, authenticate_version: int = 2) -> None:
    """A correct SaslHandshake v1 + SaslAuthenticate login on `conn`; raises LoginFailed."""
    def step(frame: bytes, what: str) -> object:
        exchange = conn.exchange(frame, timeout_s)
        if exchange.response is None:
            raise LoginFailed(f"{what}: {exchange.outcome}")
        return wire.decode_response(*_key_version(frame), exchange.response)

    answer: object = step(handshake_frame(mechanism, 1, 1), "SaslHandshake")
    if getattr(answer, "error_code", None) != 0:
        raise LoginFailed(f"SaslHandshake({mechanism}) answered {answer}")
    if mechanism == "PLAIN":
        tokens = [plain_token(user, password)]
    else:
        client = ScramClient(mechanism, user, password, client_nonce)
        tokens = [client.first()]
    for i in range(2 if mechanism != "PLAIN" else 1):
        answer = step(authenticate_frame(tokens[i], authenticate_version, 2 + i),
                      f"SaslAuthenticate {i + 1}")
        if getattr(answer, "error_code", None) != 0:
            raise LoginFailed(f"SaslAuthenticate {i + 1} answered "
                              f"{getattr(answer, 'error_code', None)!r} "
                              f"{getattr(answer, 'error_message', '')}")
        if mechanism != "PLAIN" and i == 0:
            server = parse_server_first(bytes(getattr(answer, "auth_bytes", b"")))
            if server is None:
                raise LoginFailed("the server-first message does not parse")
            tokens.append(client.final(server))


def _key_version(frame: bytes) -> tuple[int, int]:
    head = wire.frame_header(frame)
    assert head is not None
    return head[0], head[1]
