"""SASL/OAUTHBEARER, the broker's side: RFC 7628's client initial response, and the token in it
checked as Kafka's KIP-768 validator (OAuthBearerValidatorCallbackHandler) checks it: a JWT signed
with a key of the identity provider's JWKS, not expired, for this audience and issuer.

The pieces, from the bottom:

- ``OAuthSettings``: Kafka's ``sasl.oauthbearer.*`` broker settings, typed.
- ``parse_client_initial_response``: the client's first message, ``n,[a=authzid],`` then
  ``%x01``-separated ``key=value`` pairs, ``auth=Bearer <token>`` among them, the others SASL
  extensions (KIP-342).
- ``JwksKeys``: the verification keys, read from a ``file://`` URL or fetched over HTTP(S),
  refreshed every ``sasl.oauthbearer.jwks.endpoint.refresh.ms`` and at once (rate limited) when a
  token names a key id the set does not have: the provider has rotated its keys.
- ``OAuthBearerValidator``: one token in, a ``ValidatedToken`` (principal, lifetime) out.
- ``OAuthBearerExchange``: one authentication's server state machine: the first message is
  answered with b"" (success) or RFC 7628's error JSON; after an error the client sends a lone
  ``%x01`` and the authentication fails.

Every failure is an ``OAuthBearerError``: its text, the reason, is for the broker's log and never
holds the token; ``client_message`` is what the client may be told.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPMessage
from types import MappingProxyType
from typing import IO, Any, Final, TypeAlias

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

log = logging.getLogger(__name__)

# Kafka's names (SaslConfigs) for the broker's OAUTHBEARER validation.
JWKS_ENDPOINT_URL: Final = "sasl.oauthbearer.jwks.endpoint.url"
JWKS_ENDPOINT_REFRESH_MS: Final = "sasl.oauthbearer.jwks.endpoint.refresh.ms"
JWKS_ENDPOINT_RETRY_BACKOFF_MS: Final = "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms"
JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS: Final = "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms"
EXPECTED_AUDIENCE: Final = "sasl.oauthbearer.expected.audience"
EXPECTED_ISSUER: Final = "sasl.oauthbearer.expected.issuer"
SCOPE_CLAIM_NAME: Final = "sasl.oauthbearer.scope.claim.name"
SUB_CLAIM_NAME: Final = "sasl.oauthbearer.sub.claim.name"
CLOCK_SKEW_SECONDS: Final = "sasl.oauthbearer.clock.skew.seconds"

# The settings above with their defaults (None: no default, unset means "not checked").
OAUTHBEARER_SETTINGS: Final[Mapping[str, str | None]] = MappingProxyType({
    JWKS_ENDPOINT_URL: None,
    JWKS_ENDPOINT_REFRESH_MS: "3600000",
    JWKS_ENDPOINT_RETRY_BACKOFF_MS: "100",
    JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS: "10000",
    EXPECTED_AUDIENCE: None,
    EXPECTED_ISSUER: None,
    SCOPE_CLAIM_NAME: "scope",
    SUB_CLAIM_NAME: "sub",
    CLOCK_SKEW_SECONDS: "30",
})

MECHANISM: Final = "OAUTHBEARER"

# The JWS algorithms a token may be signed with: asymmetric only. "none" and the HMAC family
# (HS256...) never, whatever the token's header says: a JWKS publishes public keys, and an
# HMAC "signed" with a public key is forgeable by anyone (the algorithm-confusion attack).
RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS: Final[Mapping[str, str]] = MappingProxyType({
    "secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512",
})
SIGNATURE_ALGORITHMS: Final = RSA_ALGORITHMS | frozenset(EC_ALGORITHMS.values()) | {"EdDSA"}

# How long one JWKS fetch may take, and how large the document may be.
JWKS_FETCH_TIMEOUT_S: Final = 10.0
JWKS_MAX_BYTES: Final = 1024 * 1024
# A key id longer than this is taken for garbage: it never starts a JWKS refresh (Kafka's limit).
MAX_KID_LENGTH: Final = 1000

PublicKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
_PRIVATE_KEYS: Final = (
    rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)

INVALID_CLIENT_FIRST_MESSAGE: Final = "Invalid OAUTHBEARER client first message"
INTERNAL_ERROR: Final = (
    "Authentication could not be performed due to an internal error on the server")


# --------------------------------------------------------------------------------------------
# Errors


def error_json(status: str, scope: str | None = None,
               openid_configuration: str | None = None) -> str:
    """RFC 7628's server error (section 3.2.2) in Kafka's shape: ``{"status":"invalid_token"}``,
    with ``scope`` and ``openid-configuration`` when given."""
    document = {"status": status}
    if scope is not None:
        document["scope"] = scope
    if openid_configuration is not None:
        document["openid-configuration"] = openid_configuration
    return json.dumps(document, separators=(",", ":"))


class OAuthBearerError(Exception):
    """An OAUTHBEARER authentication failed.

    ``str(error)`` / ``reason``: why, for the broker's log (never the token itself).
    ``error_json``: RFC 7628's server error JSON, the challenge sent when a token is refused.
    ``client_message``: what the client may be told when the authentication fails (for a refused
    token, the error JSON, as Kafka sends it).
    """

    def __init__(self, reason: str, *, status: str = "invalid_token", scope: str | None = None,
                 openid_configuration: str | None = None,
                 client_message: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.error_json = error_json(status, scope, openid_configuration)
        self.client_message = self.error_json if client_message is None else client_message


class JwksError(Exception):
    """The JWKS could not be loaded: the text names the URL and the reason."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"could not load the OAUTHBEARER JWKS from {url}: {reason}")
        self.url = url
        self.reason = reason


def _malformed(reason: str) -> OAuthBearerError:
    return OAuthBearerError(f"{INVALID_CLIENT_FIRST_MESSAGE}: {reason}", status="invalid_request",
                            client_message=INVALID_CLIENT_FIRST_MESSAGE)


def _shown(value: object, limit: int = 100) -> str:
    """An attacker-chosen value for the log: quoted, and cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class OAuthSettings:
    """The broker's OAUTHBEARER validation settings (Kafka's ``sasl.oauthbearer.*``)."""

    jwks_endpoint_url: str
    jwks_refresh_ms: int = 3_600_000
    jwks_retry_backoff_ms: int = 100
    jwks_retry_backoff_max_ms: int = 10_000
    expected_audience: tuple[str, ...] = ()  # any one of them must be in the token's aud
    expected_issuer: str | None = None
    scope_claim_name: str = "scope"
    sub_claim_name: str = "sub"
    clock_skew_s: int = 30

    @classmethod
    def from_settings(cls, get: Callable[[str], str | None]) -> OAuthSettings:
        """Read Kafka's names through ``get`` (None: unset). ValueError says which setting is
        wrong and why; ``sasl.oauthbearer.jwks.endpoint.url`` is required."""
        backoff_ms = _int_setting(get, JWKS_ENDPOINT_RETRY_BACKOFF_MS, 1)
        audience = get(EXPECTED_AUDIENCE) or ""
        return cls(
            jwks_endpoint_url=_jwks_url(get(JWKS_ENDPOINT_URL)),
            jwks_refresh_ms=_int_setting(get, JWKS_ENDPOINT_REFRESH_MS, 1),
            jwks_retry_backoff_ms=backoff_ms,
            jwks_retry_backoff_max_ms=_int_setting(
                get, JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS, backoff_ms,
                f"at least {JWKS_ENDPOINT_RETRY_BACKOFF_MS} ({backoff_ms})"),
            expected_audience=tuple(dict.fromkeys(
                a.strip() for a in audience.split(",") if a.strip())),
            expected_issuer=(get(EXPECTED_ISSUER) or "").strip() or None,
            scope_claim_name=_claim_name(get, SCOPE_CLAIM_NAME),
            sub_claim_name=_claim_name(get, SUB_CLAIM_NAME),
            clock_skew_s=_int_setting(get, CLOCK_SKEW_SECONDS, 0),
        )


def _default(name: str) -> str:
    default = OAUTHBEARER_SETTINGS[name]
    assert default is not None
    return default


def _int_setting(get: Callable[[str], str | None], name: str, minimum: int,
                 minimum_text: str | None = None) -> int:
    raw = get(name)
    text = raw.strip() if raw is not None and raw.strip() else _default(name)
    if re.fullmatch(r"-?[0-9]{1,18}", text) is None:
        raise ValueError(f"{name} must be a whole number, not {raw!r}")
    value = int(text)
    if value < minimum:
        raise ValueError(f"{name} must be {minimum_text or f'at least {minimum}'}, not {value}")
    return value


def _claim_name(get: Callable[[str], str | None], name: str) -> str:
    raw = get(name)
    if raw is None:
        return _default(name)
    if not raw.strip():
        raise ValueError(f"{name} must name a claim, not {raw!r}")
    return raw.strip()


def _jwks_url(raw: str | None) -> str:
    if raw is None or not raw.strip():
        raise ValueError(f"{JWKS_ENDPOINT_URL} is required for OAUTHBEARER: the https://, "
                         "http:// or file:// URL of the identity provider's JWKS")
    url = raw.strip()
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            _ = parts.port  # a bad port raises ValueError
            if not parts.hostname:
                raise ValueError("the URL has no host")
        elif scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path:
                raise ValueError("a file URL is file:///absolute/path")
        else:
            raise ValueError("only https://, http:// and file:// URLs are supported")
    except ValueError as exc:
        raise ValueError(f"{JWKS_ENDPOINT_URL} {url!r}: {exc}") from None
    return url


# --------------------------------------------------------------------------------------------
# The client's initial response (RFC 7628 section 3.1)

# saslname: UTF-8 without ",", "=" (escaped =2C, =3D) and control characters.
_SASLNAME: Final = re.compile(r"(?:[^\x00-\x1f\x7f=,]|=2C|=3D)+")
_KEY: Final = re.compile(r"[A-Za-z]+")
_VALUE: Final = re.compile(r"[\x21-\x7e \t\r\n]+")
# auth=Bearer <b64token> (RFC 6750 section 2.1); the scheme's case does not matter.
_AUTH: Final = re.compile(r"(?P<scheme>[A-Za-z0-9_]+) +(?P<token>[A-Za-z0-9\-._~+/]+=*)")
AUTH_KEY: Final = "auth"
SEPARATOR: Final = "\x01"


@dataclass(frozen=True)
class ClientInitialResponse:
    """The client's first OAUTHBEARER message, parsed."""

    token: str = field(repr=False)  # never in a log line
    authzid: str | None  # the authorization id asked for (escapes undone), None if none
    extensions: Mapping[str, str]  # SASL extensions (KIP-342), "auth" excluded


def parse_client_initial_response(message: bytes) -> ClientInitialResponse:
    """``n,[a=authzid],%x01key=value%x01...%x01%x01`` with ``auth=Bearer <token>`` among the pairs.

    Anything else raises ``OAuthBearerError`` (status ``invalid_request``)."""
    try:
        text = bytes(message).decode("utf-8")
    except (UnicodeDecodeError, TypeError, ValueError):
        raise _malformed("not UTF-8 bytes") from None
    if not text.startswith("n,"):
        raise _malformed('no "n," GS2 header (channel binding is not supported)')
    end = text.find(",", 2)
    if end < 0:
        raise _malformed("the GS2 header does not end")
    authzid = _authzid(text[2:end])
    pairs = _key_values(text[end + 1:])
    auth = pairs.pop(AUTH_KEY, None)
    if auth is None:
        raise _malformed('no "auth" key')
    match = _AUTH.fullmatch(auth)
    if match is None:
        raise _malformed('the "auth" value is not "Bearer <token>"')
    if match["scheme"].lower() != "bearer":
        raise _malformed(f"the scheme {_shown(match['scheme'])} is not Bearer")
    return ClientInitialResponse(match["token"], authzid, MappingProxyType(pairs))


def _authzid(gs2_authzid: str) -> str | None:
    if not gs2_authzid:
        return None
    if not gs2_authzid.startswith("a=") or _SASLNAME.fullmatch(gs2_authzid, 2) is None:
        raise _malformed("a bad authorization id in the GS2 header")
    return re.sub("=(2C|3D)", lambda m: "," if m[1] == "2C" else "=", gs2_authzid[2:])


def _key_values(rest: str) -> dict[str, str]:
    if not rest.startswith(SEPARATOR) or not rest.endswith(SEPARATOR * 2) or len(rest) < 3:
        raise _malformed("the key=value pairs are not framed by %x01")
    pairs: dict[str, str] = {}
    for pair in rest[1:-2].split(SEPARATOR):
        key, equals, value = pair.partition("=")
        if not equals or _KEY.fullmatch(key) is None or _VALUE.fullmatch(value) is None:
            raise _malformed("a bad key=value pair")
        if key in pairs:
            raise _malformed(f"the key {key!r} twice")
        pairs[key] = value
    return pairs


# --------------------------------------------------------------------------------------------
# The verification keys (JWKS)


@dataclass(frozen=True)
class VerificationKey:
    """One usable key of the JWKS: its id, the algorithms it may verify, the public key."""

    kid: str | None
    algorithms: frozenset[str]
    key: PublicKey = field(repr=False)
    jwk: jwt.PyJWK = field(repr=False, compare=False)


def parse_jwks(data: bytes) -> tuple[VerificationKey, ...]:
    """The signature keys of a JWKS document (RFC 7517). Keys that are not for signatures
    (``use`` other than ``sig``, ``key_ops`` without ``verify``), symmetric (``oct``), of an
    algorithm outside ``SIGNATURE_ALGORITHMS`` or that do not load are left out; ValueError if
    none is left or the document is not a JWKS."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWK set (a JSON object with a "keys" array)')
    keys = tuple(k for k in map(_verification_key, document["keys"]) if k is not None)
    if not keys:
        raise ValueError("no usable signature key (RSA, EC P-256/P-384/P-521 or Ed25519) among "
                         f"its {len(document['keys'])} keys")
    return keys


def _verification_key(data: object) -> VerificationKey | None:
    if not isinstance(data, dict) or data.get("kty") not in ("RSA", "EC", "OKP"):
        return None
    kid, alg, ops = data.get("kid"), data.get("alg"), data.get("key_ops")
    if data.get("use", "sig") != "sig" or (ops is not None and (
            not isinstance(ops, list) or "verify" not in ops)):
        return None
    if (kid is not None and not isinstance(kid, str)) or (
            alg is not None and alg not in SIGNATURE_ALGORITHMS):
        return None
    try:
        jwk = jwt.PyJWK(data)
    except Exception as exc:  # whatever a malformed key makes the JWK loader raise
        log.warning("OAUTHBEARER JWKS: key %s left out: %s", _shown(kid), type(exc).__name__)
        return None
    key = jwk.key.public_key() if isinstance(jwk.key, _PRIVATE_KEYS) else jwk.key
    algorithms = _algorithms_for(key)
    if alg is not None:
        algorithms &= {alg}
    if not algorithms:
        return None
    return VerificationKey(kid, algorithms, key, jwk)


def _algorithms_for(key: object) -> frozenset[str]:
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_ALGORITHMS:
        return frozenset({EC_ALGORITHMS[key.curve.name]})
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


class _SameSchemeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https:// to http:// (or the other way)."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() != req.type.lower():
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def read_jwks_document(url: str, timeout_s: float = JWKS_FETCH_TIMEOUT_S) -> bytes:
    """The JWKS document's bytes from a ``file://`` or ``http(s)://`` URL (blocking: run it in a
    thread). OSError or ValueError with the reason."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "file":
        with open(urllib.request.url2pathname(parts.path), "rb") as file:
            data = file.read(JWKS_MAX_BYTES + 1)
    else:
        opener = urllib.request.build_opener(_SameSchemeRedirects)
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with opener.open(request, timeout=timeout_s) as response:
                data = response.read(JWKS_MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise ValueError(f"HTTP {exc.code} {exc.reason}") from None
    if len(data) > JWKS_MAX_BYTES:
        raise ValueError(f"the document is larger than {JWKS_MAX_BYTES} bytes")
    return data


def load_jwks(url: str, timeout_s: float = JWKS_FETCH_TIMEOUT_S) -> tuple[VerificationKey, ...]:
    """Read and parse the JWKS at ``url`` (blocking)."""
    return parse_jwks(read_jwks_document(url, timeout_s))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, str):
        return _describe(exc.reason) if isinstance(exc.reason, BaseException) else str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JwksKeys:
    """The identity provider's verification keys, kept fresh.

    ``await start()`` loads them once (``JwksError`` if that fails); run ``refresh_forever()``
    as a task to reload them every ``jwks_refresh_ms`` (a failed reload is retried with
    exponential backoff from ``jwks_retry_backoff_ms`` to ``jwks_retry_backoff_max_ms``, the
    keys loaded before stay in use). A token naming a key id the set does not hold reloads the
    set at once, at most once per backoff window (the window doubles, up to the maximum, while
    such reloads fail or do not find the key; a token arriving while a reload runs waits for
    it). Fetches run in a thread, one at a time.
    """

    def __init__(self, settings: OAuthSettings, *, fetch_timeout_s: float = JWKS_FETCH_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._url = settings.jwks_endpoint_url
        self._refresh_s = settings.jwks_refresh_ms / 1000
        self._backoff_s = settings.jwks_retry_backoff_ms / 1000
        self._backoff_max_s = settings.jwks_retry_backoff_max_ms / 1000
        self._timeout_s = fetch_timeout_s
        self._clock = clock
        self._keys: tuple[VerificationKey, ...] = ()
        self._lock = asyncio.Lock()
        self._attempts = 0  # finished loads, successful or not
        self._last_error: str | None = None
        self._on_demand_at = -math.inf  # the earliest next reload for an unknown kid
        self._on_demand_backoff_s = self._backoff_s

    @property
    def url(self) -> str:
        return self._url

    @property
    def keys(self) -> tuple[VerificationKey, ...]:
        """The keys in use (empty before the first successful load)."""
        return self._keys

    async def start(self) -> None:
        """Load the keys once; ``JwksError`` (saying the URL and why) if that fails."""
        await self.refresh()
        log.info("OAUTHBEARER JWKS from %s: %d keys", self._url, len(self._keys))

    async def refresh(self) -> None:
        """Load the keys now; ``JwksError`` if that fails (the keys in use stay). A call made
        while a load runs waits for it and shares its outcome."""
        attempts = self._attempts
        async with self._lock:
            if self._attempts != attempts:
                if self._last_error is not None:
                    raise JwksError(self._url, self._last_error)
                return
            try:
                keys = await asyncio.to_thread(load_jwks, self._url, self._timeout_s)
            except Exception as exc:  # OSError, ValueError: whatever the fetch or parse raised
                self._attempts += 1
                self._last_error = _describe(exc)
                raise JwksError(self._url, self._last_error) from None
            self._attempts += 1
            self._last_error = None
            self._keys = keys

    async def refresh_forever(self) -> None:
        """Reload every ``jwks_refresh_ms``, retrying a failed reload with backoff; run it as a
        task and cancel it to stop."""
        while True:
            await asyncio.sleep(self._refresh_s)
            backoff_s = self._backoff_s
            while True:
                try:
                    await self.refresh()
                    break
                except JwksError as exc:
                    log.warning("%s; the %d keys loaded before stay in use, retrying in %g s",
                                exc, len(self._keys), backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._backoff_max_s)

    async def key_for(self, kid: str | None, alg: str) -> PublicKey:
        """The key that verifies a token with this ``kid`` and ``alg`` header; an unknown kid
        reloads the set first (rate limited). ``OAuthBearerError`` if there is none."""
        key = self._select(kid, alg)
        if key is None and kid is not None and await self._reload_for(kid):
            key = self._select(kid, alg)
        if key is None:
            raise OAuthBearerError(f"no key with the kid {_shown(kid)} in the JWKS ({self._url})")
        return key

    def _select(self, kid: str | None, alg: str) -> PublicKey | None:
        candidates: tuple[VerificationKey, ...]
        if kid is None:
            if len(self._keys) != 1:
                raise OAuthBearerError(
                    f"the token names no key (kid) and the JWKS has {len(self._keys)} keys")
            candidates = self._keys
        else:
            candidates = tuple(k for k in self._keys if k.kid == kid)
            if not candidates:
                return None
        for candidate in candidates:
            if alg in candidate.algorithms:
                return candidate.key
        raise OAuthBearerError(f"the key {_shown(kid)} does not verify {alg} signatures")

    async def _reload_for(self, kid: str) -> bool:
        """Reload for a token's unknown kid if the backoff window allows; True if the set now
        has that kid."""
        now = self._clock()
        if len(kid) > MAX_KID_LENGTH:
            return False
        if now < self._on_demand_at:
            if not self._lock.locked():
                return False
            # A reload is under way (for another token, or the scheduled one): wait for it.
            with contextlib.suppress(JwksError):
                await self.refresh()
            return any(k.kid == kid for k in self._keys)
        self._on_demand_at = now + self._on_demand_backoff_s
        log.info("OAUTHBEARER: a token names the unknown key %s, reloading the JWKS from %s",
                 _shown(kid), self._url)
        try:
            await self.refresh()
            found = any(k.kid == kid for k in self._keys)
        except JwksError as exc:
            log.warning("%s", exc)
            found = False
        if found:
            self._on_demand_backoff_s = self._backoff_s
        else:
            self._on_demand_backoff_s = min(self._on_demand_backoff_s * 2, self._backoff_max_s)
        return found


# --------------------------------------------------------------------------------------------
# Token validation


@dataclass(frozen=True)
class ValidatedToken:
    """What a valid token says."""

    principal: str  # the sub claim (or the configured one), trimmed
    lifetime_ms: int  # exp, in ms since the epoch
    scopes: frozenset[str]
    start_ms: int | None  # iat, in ms since the epoch, if the token has one


class OAuthBearerValidator:
    """Checks a token as Kafka's broker-side validator does (BrokerJwtValidator): a JWS
    signed with an asymmetric algorithm by a key of the JWKS (the key's type fixes the
    algorithms it may verify), ``exp`` required and not past (with the clock skew), ``nbf`` and
    ``iat`` not in the future if present, ``aud`` holding one of the expected audiences and
    ``iss`` the expected issuer when those are configured, the subject claim a non-empty string.
    """

    def __init__(self, settings: OAuthSettings, keys: JwksKeys, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._keys = keys
        self._clock = clock

    @property
    def keys(self) -> JwksKeys:
        return self._keys

    async def validate(self, token: str) -> ValidatedToken:
        """The token's principal, lifetime and scopes; ``OAuthBearerError`` if it is not valid
        (and only that: any other failure is wrapped)."""
        try:
            return await self._validate(token)
        except OAuthBearerError:
            raise
        except Exception as exc:
            raise OAuthBearerError(
                f"the token could not be validated ({type(exc).__name__})") from exc

    async def _validate(self, token: str) -> ValidatedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise OAuthBearerError(f"not a JWS: {exc}") from None
        alg = header.get("alg")
        if alg not in SIGNATURE_ALGORITHMS:
            raise OAuthBearerError(f"the signature algorithm {_shown(alg)} is not accepted "
                                   f"(only {', '.join(sorted(SIGNATURE_ALGORITHMS))})")
        if header.get("b64", True) is not True:
            raise OAuthBearerError("an unencoded (b64) payload is not accepted")
        key = await self._keys.key_for(header.get("kid"), alg)
        return self._token(self._verified_claims(token, key, alg))

    def _verified_claims(self, token: str, key: PublicKey, alg: str) -> dict[str, Any]:
        settings = self._settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=[alg],
                audience=list(settings.expected_audience) or None,
                issuer=settings.expected_issuer,
                # Times are checked in _token (strict types, an injectable clock).
                options={"verify_signature": True, "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False, "verify_aud": bool(settings.expected_audience),
                         "verify_iss": settings.expected_issuer is not None,
                         "verify_sub": False, "verify_jti": False, "require": [],
                         "enforce_minimum_key_length": True})
        except jwt.PyJWTError as exc:
            raise OAuthBearerError(f"{type(exc).__name__}: {exc}") from None
        return claims

    def _token(self, claims: dict[str, Any]) -> ValidatedToken:
        exp = _time_claim(claims, "exp")
        if exp is None:
            raise OAuthBearerError("the token has no exp claim")
        iat = _time_claim(claims, "iat")
        self._check_times(exp, _time_claim(claims, "nbf"), iat)
        return ValidatedToken(
            principal=_subject(claims, self._settings.sub_claim_name),
            lifetime_ms=int(exp * 1000),
            scopes=_scopes(claims, self._settings.scope_claim_name),
            start_ms=None if iat is None else int(iat * 1000),
        )

    def _check_times(self, exp: float, nbf: float | None, iat: float | None) -> None:
        now, skew = self._clock(), self._settings.clock_skew_s
        if now - skew >= exp:
            raise OAuthBearerError(f"the token expired at {_when(exp)} (now {_when(now)}, "
                                   f"clock skew {skew} s)")
        for name, start in (("nbf", nbf), ("iat", iat)):
            if start is not None and start > now + skew:
                raise OAuthBearerError(f"the token is not valid yet: {name} {_when(start)} "
                                       f"(now {_when(now)}, clock skew {skew} s)")


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (seconds since the epoch), None if absent."""
    value = claims.get(name)
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            or (isinstance(value, float) and not math.isfinite(value))):
        raise OAuthBearerError(f"the {name} claim is not a non-negative number of seconds")
    if isinstance(value, int) and value > 2**53:
        raise OAuthBearerError(f"the {name} claim is out of range")
    return value


def _when(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{seconds:g} s"


def _subject(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value.strip():
        raise OAuthBearerError(f"the {_shown(name)} claim (the principal) is missing, empty or "
                               "not a string")
    return value.strip()


def _scopes(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    """A space-separated string (RFC 8693) or a list of strings; another type: no scopes."""
    value = claims.get(name)
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        if not all(isinstance(s, str) and s.strip() for s in value):
            raise OAuthBearerError(f"the {_shown(name)} claim lists an empty or non-string scope")
        return frozenset(s.strip() for s in value)
    return frozenset()


# --------------------------------------------------------------------------------------------
# One authentication


class _State(enum.Enum):
    INITIAL = "initial"
    ERROR_SENT = "error sent"
    COMPLETE = "complete"
    FAILED = "failed"


class OAuthBearerExchange:
    """The server side of one OAUTHBEARER authentication (Kafka's OAuthBearerSaslServer).

    ``await respond(client_message)`` returns the server's answer or raises
    ``OAuthBearerError`` (and nothing else): the client's first message is answered with b""
    when its token is valid (``complete``, ``principal`` and ``lifetime_ms`` then tell the
    outcome) or with RFC 7628's error JSON; the client must then send a lone ``%x01``, which
    fails the authentication with the token's error. A first message that does not parse, an
    authorization id other than the token's principal, or anything after the outcome fails at
    once.
    """

    def __init__(self, validator: OAuthBearerValidator) -> None:
        self._validator = validator
        self._state = _State.INITIAL
        self._failure: OAuthBearerError | None = None
        self._token: ValidatedToken | None = None
        self._extensions: Mapping[str, str] = MappingProxyType({})

    @property
    def complete(self) -> bool:
        return self._state is _State.COMPLETE

    @property
    def token(self) -> ValidatedToken:
        if self._token is None:
            raise RuntimeError("the OAUTHBEARER exchange has not completed")
        return self._token

    @property
    def principal(self) -> str:
        return self.token.principal

    @property
    def lifetime_ms(self) -> int:
        return self.token.lifetime_ms

    @property
    def extensions(self) -> Mapping[str, str]:
        """The client's SASL extensions (empty until complete)."""
        return self._extensions

    async def respond(self, message: bytes) -> bytes:
        try:
            return await self._respond(message)
        except OAuthBearerError as exc:
            self._fail(exc)
            raise
        except Exception as exc:
            failure = OAuthBearerError(f"internal error: {type(exc).__name__}: {exc}",
                                       client_message=INTERNAL_ERROR)
            self._fail(failure)
            raise failure from exc

    def _fail(self, failure: OAuthBearerError) -> None:
        if self._state is not _State.COMPLETE:
            self._state = _State.FAILED
            self._failure = failure

    async def _respond(self, message: bytes) -> bytes:
        if self._state is _State.COMPLETE:
            raise OAuthBearerError("a client message after the authentication completed",
                                   status="invalid_request",
                                   client_message="Unexpected OAUTHBEARER message")
        if self._state is not _State.INITIAL:
            assert self._failure is not None
            if self._state is _State.ERROR_SENT and bytes(message) != SEPARATOR.encode():
                raise OAuthBearerError(
                    f"{self._failure.reason}; the client answered the error with something "
                    "other than %x01", status=self._failure.status,
                    client_message=self._failure.client_message)
            raise self._failure
        response = parse_client_initial_response(message)
        try:
            token = await self._validator.validate(response.token)
        except OAuthBearerError as exc:
            log.debug("OAUTHBEARER token refused: %s", exc.reason)
            self._state = _State.ERROR_SENT
            self._failure = exc
            return exc.error_json.encode()
        if response.authzid is not None and response.authzid != token.principal:
            raise OAuthBearerError(
                f"the client asked for the authorization id {_shown(response.authzid)}, the "
                f"token's principal is {_shown(token.principal)}",
                client_message="Authentication failed: the authorization id differs from the "
                               "token's principal")
        self._token = token
        self._extensions = response.extensions
        self._state = _State.COMPLETE
        return b""
