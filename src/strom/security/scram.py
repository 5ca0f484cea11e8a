"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as a Kafka broker does them.

Holds the credential a broker keeps per user and mechanism (salt, stored key, server key,
iterations) with Kafka's string form of it, its derivation from a password, and the server
side of one exchange as a state machine without I/O (`ScramExchange`).

Kafka's choices followed here: passwords are taken as their UTF-8 bytes (no SASLprep); only
the GS2 channel-binding flag "n" is accepted; the one extension Kafka knows is "tokenauth"
(delegation tokens, refused here); random salts and server nonces are, as Kafka makes them, the
base-36 digits of a 130-bit random number. Beyond Kafka: the channel-binding attribute of the
client-final message is checked against the GS2 header the client sent, and an unknown user is
answered with a fake credential so that the exchange fails only at its end, exactly as for a
wrong password.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

from strom.security.principal import AuthenticationFailed, invalid_credentials_message

log = logging.getLogger(__name__)

MECHANISMS: Final[dict[str, str]] = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
"""SASL mechanism name -> hashlib name of its hash."""

MECHANISM_TYPES: Final[dict[int, str]] = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
"""Kafka's ScramMechanism type ids (DescribeUserScramCredentials, AlterUserScramCredentials)."""

MECHANISM_TYPE_IDS: Final[dict[str, int]] = {name: i for i, name in MECHANISM_TYPES.items()}

MIN_ITERATIONS: Final = 4096
MAX_ITERATIONS: Final = 16384

_CLIENT_KEY: Final = b"Client Key"
_SERVER_KEY: Final = b"Server Key"
_TOKEN_AUTH: Final = "tokenauth"
# Attribute names RFC 5802 gives a meaning; an extension may not reuse one.
_RFC_ATTRIBUTES: Final = frozenset("acenmprsvi")

_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII but ","
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_SASLNAME = re.compile(r"(?:[^\x00=,]|=2C|=3D)+")
_SASLNAME_ESCAPE = re.compile(r"=(2C|3D)")
_EXT_NAME = re.compile(r"[A-Za-z]+")
_EXT_VALUE = re.compile(r"[^\x00,]+")
_DIGITS = re.compile(r"[0-9]+")
_BASE36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"


def hash_name(mechanism: str) -> str:
    """The hashlib name of a SCRAM mechanism's hash; ValueError for an unknown mechanism."""
    try:
        return MECHANISMS[mechanism]
    except KeyError:
        known = ", ".join(MECHANISMS)
        raise ValueError(f"unknown SCRAM mechanism {mechanism!r} (known: {known})") from None


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """What a broker keeps to check one user's SCRAM exchanges for one mechanism."""

    salt: bytes
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    iterations: int

    def to_kafka(self) -> str:
        """Kafka's string form (ScramCredentialUtils.credentialToString)."""
        return (
            f"salt={_b64(self.salt)},stored_key={_b64(self.stored_key)},"
            f"server_key={_b64(self.server_key)},iterations={self.iterations}"
        )

    @classmethod
    def from_kafka(cls, text: str) -> ScramCredential:
        """Parse Kafka's string form: salt, stored_key, server_key (base64) and iterations,
        each exactly once, in any order. ValueError saying what is wrong (without echoing the
        keys) on anything else."""
        fields: dict[str, str] = {}
        for token in text.split(","):
            key, sep, value = token.partition("=")
            if not sep or not key:
                raise ValueError(
                    "a SCRAM credential is written salt=<base64>,stored_key=<base64>,"
                    "server_key=<base64>,iterations=<n>; found a part that is not key=value"
                )
            if key not in ("salt", "stored_key", "server_key", "iterations"):
                raise ValueError(f"a SCRAM credential has no field {key[:40]!r}")
            if key in fields:
                raise ValueError(f"a SCRAM credential names {key} twice")
            fields[key] = value
        missing = [k for k in ("salt", "stored_key", "server_key", "iterations") if k not in fields]
        if missing:
            raise ValueError(f"a SCRAM credential lacks {', '.join(missing)}")
        iterations = fields["iterations"]
        if not _DIGITS.fullmatch(iterations) or not 0 < int(iterations) < 2**31:
            raise ValueError("a SCRAM credential's iterations must be a positive 32-bit integer")
        return cls(
            salt=_b64_field(fields, "salt"),
            stored_key=_b64_field(fields, "stored_key"),
            server_key=_b64_field(fields, "server_key"),
            iterations=int(iterations),
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64_field(fields: dict[str, str], key: str) -> bytes:
    value = fields[key]
    if not value or not _BASE64.fullmatch(value):
        raise ValueError(f"a SCRAM credential's {key} must be non-empty padded base64")
    return base64.b64decode(value, validate=True)


def salted_password(mechanism: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword := Hi(password, salt, i) of RFC 5802, which is PBKDF2-HMAC."""
    return hashlib.pbkdf2_hmac(hash_name(mechanism), password, salt, iterations)


def credential_from_salted_password(
    mechanism: str, salt: bytes, salted: bytes, iterations: int
) -> ScramCredential:
    """StoredKey := H(HMAC(salted, "Client Key")), ServerKey := HMAC(salted, "Server Key")."""
    digest = hash_name(mechanism)
    client_key = hmac.digest(salted, _CLIENT_KEY, digest)
    return ScramCredential(
        salt=salt,
        stored_key=hashlib.new(digest, client_key).digest(),
        server_key=hmac.digest(salted, _SERVER_KEY, digest),
        iterations=iterations,
    )


def credential_from_password(
    mechanism: str, password: str, iterations: int = MIN_ITERATIONS, salt: bytes | None = None
) -> ScramCredential:
    """The credential of `password` (its UTF-8 bytes, as Kafka takes it). Without a salt, a
    random one as Kafka makes it. ValueError for iterations outside Kafka's limits."""
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(
            f"SCRAM iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS},"
            f" not {iterations}"
        )
    if salt is None:
        salt = random_salt()
    salted = salted_password(mechanism, password.encode("utf-8"), salt, iterations)
    return credential_from_salted_password(mechanism, salt, salted, iterations)


def _base36(number: int) -> str:
    digits: list[str] = []
    while True:
        number, digit = divmod(number, 36)
        digits.append(_BASE36[digit])
        if not number:
            return "".join(reversed(digits))


def random_salt() -> bytes:
    """A random salt as Kafka makes one (ScramFormatter.secureRandomBytes): the base-36
    digits, as ASCII bytes, of a 130-bit random number (usually 25 or 26 bytes)."""
    return _base36(secrets.randbits(130)).encode("ascii")


def fake_credential(mechanism: str, secret: bytes, user: str) -> ScramCredential:
    """A credential for a user that does not exist, derived from the broker's `secret` so that
    it is the same on every attempt (a salt that changed on each try would give the unknown
    user away) and looks like a real one: a Kafka-style salt, MIN_ITERATIONS, keys of the
    mechanism's length. Nobody without `secret` can know its keys, so no proof matches."""
    digest = hash_name(mechanism)
    label = b"strom scram fake credential\x00" + mechanism.encode("ascii") + b"\x00"
    seed = hmac.digest(secret, label + user.encode("utf-8", "surrogatepass"), "sha256")
    salt = _base36(int.from_bytes(seed[:17], "big") >> 6).encode("ascii")  # 130 bits
    return ScramCredential(
        salt=salt,
        stored_key=hmac.digest(seed, b"stored key", digest),
        server_key=hmac.digest(seed, b"server key", digest),
        iterations=MIN_ITERATIONS,
    )


def saslname_encode(name: str) -> str:
    """RFC 5802 saslname: "=" is written "=3D" and "," "=2C"."""
    return name.replace("=", "=3D").replace(",", "=2C")


def saslname_decode(saslname: str) -> str:
    """The name a saslname writes; AuthenticationFailed if it is not one (an "=" that does not
    start "=2C" or "=3D", a NUL or a bare ",", or nothing at all)."""
    if not _SASLNAME.fullmatch(saslname):
        raise AuthenticationFailed("Invalid SCRAM user name encoding")
    return _SASLNAME_ESCAPE.sub(lambda m: "," if m[1] == "2C" else "=", saslname)


# --- the exchange -----------------------------------------------------------------------------


class _State(enum.Enum):
    CLIENT_FIRST = "awaiting client-first-message"
    SERVER_FIRST = "awaiting the user's credential"
    CLIENT_FINAL = "awaiting client-final-message"
    DONE = "complete"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class _ClientFirst:
    gs2_header: str
    bare: str
    user: str
    nonce: str


@dataclass(frozen=True, slots=True)
class _ClientFinal:
    channel_binding: str
    nonce: str
    proof: bytes
    without_proof: str


_BAD_FIRST: Final = "Invalid SCRAM client first message"
_BAD_FINAL: Final = "Invalid SCRAM client final message"


def _decode(message: bytes, what: str) -> str:
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationFailed(f"{what}: not UTF-8") from None


def _attribute(part: str, name: str, what: str) -> str:
    if not part.startswith(name + "="):
        raise AuthenticationFailed(f"{what}: expected the attribute {name}=")
    return part[len(name) + 1 :]


def _extensions(parts: list[str], what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if (
            not sep
            or not _EXT_NAME.fullmatch(key)
            or not _EXT_VALUE.fullmatch(value)
            or key in _RFC_ATTRIBUTES
            or key in found
        ):
            raise AuthenticationFailed(f"{what}: malformed extension")
        found[key] = value
    return found


def _gs2_header(text: str) -> tuple[str, str, str]:
    """(gs2 header, authzid, rest) of a client-first-message."""
    flag, sep, rest = text.partition(",")
    if sep and (flag == "y" or flag.startswith("p=")):
        raise AuthenticationFailed(
            "SCRAM channel binding is not supported: the client must send the GS2 flag 'n'"
        )
    if not sep or flag != "n":
        raise AuthenticationFailed(f"{_BAD_FIRST}: it must start with the GS2 header n,")
    authz, sep, bare = rest.partition(",")
    if not sep:
        raise AuthenticationFailed(f"{_BAD_FIRST}: incomplete GS2 header")
    authzid = saslname_decode(_attribute(authz, "a", _BAD_FIRST)) if authz else ""
    return f"n,{authz},", authzid, bare


def _parse_client_first(message: bytes) -> _ClientFirst:
    gs2_header, authzid, bare = _gs2_header(_decode(message, _BAD_FIRST))
    if bare.startswith("m="):
        raise AuthenticationFailed("SCRAM mandatory extensions (m=) are not supported")
    parts = bare.split(",")
    if len(parts) < 2:
        raise AuthenticationFailed(f"{_BAD_FIRST}: expected n=<user>,r=<nonce>")
    user = saslname_decode(_attribute(parts[0], "n", _BAD_FIRST))
    nonce = _attribute(parts[1], "r", _BAD_FIRST)
    if not _PRINTABLE.fullmatch(nonce):
        raise AuthenticationFailed(f"{_BAD_FIRST}: the nonce must be printable ASCII")
    extensions = _extensions(parts[2:], _BAD_FIRST)
    if extensions.get(_TOKEN_AUTH, "").lower() == "true":
        raise AuthenticationFailed(
            "Delegation token authentication (SCRAM extension tokenauth=true) is not supported"
        )
    if authzid and authzid != user:
        raise AuthenticationFailed(
            "Authentication failed: Client requested an authorization id that is different"
            " from username"
        )
    return _ClientFirst(gs2_header=gs2_header, bare=bare, user=user, nonce=nonce)


def _parse_client_final(message: bytes) -> _ClientFinal:
    parts = _decode(message, _BAD_FINAL).split(",")
    if len(parts) < 3:
        raise AuthenticationFailed(f"{_BAD_FINAL}: expected c=<binding>,r=<nonce>,p=<proof>")
    binding = _attribute(parts[0], "c", _BAD_FINAL)
    nonce = _attribute(parts[1], "r", _BAD_FINAL)
    _extensions(parts[2:-1], _BAD_FINAL)
    proof = _attribute(parts[-1], "p", _BAD_FINAL)
    if not binding or not _BASE64.fullmatch(binding):
        raise AuthenticationFailed(f"{_BAD_FINAL}: the channel binding must be base64")
    if not _PRINTABLE.fullmatch(nonce):
        raise AuthenticationFailed(f"{_BAD_FINAL}: the nonce must be printable ASCII")
    if not proof or not _BASE64.fullmatch(proof):
        raise AuthenticationFailed(f"{_BAD_FINAL}: the proof must be base64")
    return _ClientFinal(
        channel_binding=binding,
        nonce=nonce,
        proof=base64.b64decode(proof, validate=True),
        without_proof=",".join(parts[:-1]),
    )


class ScramExchange:
    """The server side of one SCRAM exchange: client_first (-> the user to look up),
    server_first (the credential looked up, or None), client_final (-> server-final-message).

    Any failure, including a call out of order, raises AuthenticationFailed and leaves the
    exchange failed for good. `secret` is a per-broker random key (it should stay the same
    across restarts) from which an unknown user's fake credential is derived; `server_nonce`
    fixes the server's part of the nonce (for tests), which is otherwise random.
    """

    __slots__ = (
        "_credential",
        "_digest",
        "_fake",
        "_first",
        "_mechanism",
        "_secret",
        "_server_first",
        "_server_nonce",
        "_state",
    )

    def __init__(self, mechanism: str, secret: bytes, *, server_nonce: str | None = None) -> None:
        self._digest = hash_name(mechanism)
        self._mechanism = mechanism
        self._secret = secret
        if server_nonce is None:
            server_nonce = _base36(secrets.randbits(130))
        elif not _PRINTABLE.fullmatch(server_nonce):
            raise ValueError("a SCRAM server nonce must be printable ASCII without commas")
        self._server_nonce = server_nonce
        self._state = _State.CLIENT_FIRST
        self._first: _ClientFirst | None = None
        self._credential: ScramCredential | None = None
        self._fake = False
        self._server_first = ""

    @property
    def mechanism(self) -> str:
        return self._mechanism

    @property
    def user(self) -> str:
        """The user the client named; RuntimeError before client_first succeeded."""
        if self._first is None:
            raise RuntimeError("the SCRAM client-first-message has not been accepted")
        return self._first.user

    @property
    def done(self) -> bool:
        """Whether the client proved it knows the user's password."""
        return self._state is _State.DONE

    def _expect(self, state: _State) -> None:
        if self._state is not state:
            current = self._state
            self._state = _State.FAILED
            raise AuthenticationFailed(f"Unexpected SCRAM message: the exchange is {current.value}")

    def _fail(self) -> AuthenticationFailed:
        self._state = _State.FAILED
        self._credential = None
        return AuthenticationFailed(invalid_credentials_message(self._mechanism))

    def client_first(self, message: bytes) -> str:
        """Take the client-first-message; returns the user name to look up."""
        self._expect(_State.CLIENT_FIRST)
        try:
            self._first = _parse_client_first(message)
        except AuthenticationFailed:
            self._state = _State.FAILED
            raise
        self._state = _State.SERVER_FIRST
        return self._first.user

    def server_first(self, credential: ScramCredential | None) -> bytes:
        """The server-first-message for the user's credential of this mechanism (None: no such
        user, and the exchange goes on with a fake credential, to fail at client_final)."""
        self._expect(_State.SERVER_FIRST)
        assert self._first is not None
        if credential is not None and credential.iterations < MIN_ITERATIONS:
            log.warning(
                "SCRAM credential (%s) of user %r has %d iterations, fewer than the minimum %d;"
                " refusing it",
                self._mechanism,
                self._first.user,
                credential.iterations,
                MIN_ITERATIONS,
            )
            credential = None
        if credential is None:
            self._fake = True
            credential = fake_credential(self._mechanism, self._secret, self._first.user)
        self._credential = credential
        self._server_first = (
            f"r={self._first.nonce}{self._server_nonce},s={_b64(credential.salt)},"
            f"i={credential.iterations}"
        )
        self._state = _State.CLIENT_FINAL
        return self._server_first.encode("ascii")

    def client_final(self, message: bytes) -> bytes:
        """Check the client-final-message; returns the server-final-message "v=<signature>"."""
        self._expect(_State.CLIENT_FINAL)
        assert self._first is not None and self._credential is not None
        try:
            final = _parse_client_final(message)
        except AuthenticationFailed:
            self._state = _State.FAILED
            self._credential = None
            raise
        credential = self._credential
        expected_binding = _b64(self._first.gs2_header.encode("utf-8"))
        auth_message = ",".join((self._first.bare, self._server_first, final.without_proof))
        client_signature = hmac.digest(
            credential.stored_key, auth_message.encode("utf-8"), self._digest
        )
        if len(final.proof) != len(client_signature):
            raise self._fail()
        client_key = bytes(a ^ b for a, b in zip(final.proof, client_signature, strict=True))
        proof_ok = hmac.compare_digest(
            hashlib.new(self._digest, client_key).digest(), credential.stored_key
        )
        binding_ok = final.channel_binding == expected_binding
        # Kafka's ScramSaslServer accepts a final nonce that ends with the full nonce: older
        # librdkafka clients (kcat's) send the client nonce, then the server's r= value.
        nonce_ok = final.nonce.endswith(self._first.nonce + self._server_nonce)
        if not (proof_ok and binding_ok and nonce_ok) or self._fake:
            raise self._fail()
        signature = hmac.digest(credential.server_key, auth_message.encode("utf-8"), self._digest)
        self._credential = None
        self._state = _State.DONE
        return b"v=" + base64.b64encode(signature)
