"""The broker's SASL side: which mechanisms a listener offers, the SCRAM credentials (kept by
the storage engine as `scram` metadata records, so every broker of a cluster checks the same),
and one exchange per authentication for PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER.

PLAIN checks the password against the user's SCRAM credentials (either mechanism), as there
is one credential store. An unknown user costs the same work and gets the same answer as a
wrong password: SCRAM goes on with a fake salt derived from a per-broker secret and fails at
the last step, PLAIN derives a key from a dummy credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from strom.config.broker import BrokerConfig
from strom.security.oauthbearer import (
    JwksKeys,
    OAuthBearerError,
    OAuthBearerExchange,
    OAuthBearerValidator,
    OAuthSettings,
)
from strom.security.plain import (
    INVALID_CREDENTIALS,
    dummy_credential,
    parse_plain,
    verify_password,
)
from strom.security.principal import AuthenticationFailed
from strom.security.scram import MECHANISMS, ScramCredential, ScramExchange
from strom.storage.api import StorageEngine

log = logging.getLogger(__name__)

PLAIN: Final = "PLAIN"
OAUTHBEARER: Final = "OAUTHBEARER"
SUPPORTED: Final = (PLAIN, *MECHANISMS, OAUTHBEARER)
SCRAM_KIND: Final = "scram"
CLUSTER_KIND: Final = "cluster"
SECRET_KEY: Final = "sasl.secret"



def credential_key(user: str, mechanism: str) -> str:
    """A SCRAM credential's record key: MECHANISM/USER (mechanisms hold no '/')."""
    return f"{mechanism}/{user}"


def split_credential_key(key: str) -> tuple[str, str]:
    """(user, mechanism) of a record key."""
    mechanism, _, user = key.partition("/")
    return user, mechanism


async def read_credentials(engine: StorageEngine) -> dict[str, dict[str, ScramCredential]]:
    """user -> mechanism -> credential, as the engine holds them."""
    found: dict[str, dict[str, ScramCredential]] = {}
    for key, value in (await engine.read_metadata(SCRAM_KIND)).items():
        user, mechanism = split_credential_key(key)
        try:
            found.setdefault(user, {})[mechanism] = ScramCredential.from_kafka(value)
        except ValueError as exc:
            log.warning("ignoring the %s credential of %r: %s", mechanism, user, exc)
    return found


@dataclass
class Authenticated:
    user: str
    lifetime_ms: int | None = None  # when the credential itself expires (a token), ms epoch


class Exchange(Protocol):
    """One SASL authentication in progress: each SaslAuthenticate's bytes in, the answer out;
    `result` is set once it succeeded. Failures raise AuthenticationFailed."""

    result: Authenticated | None

    async def step(self, message: bytes) -> bytes: ...


class PlainExchange:
    def __init__(self, sasl: SaslMechanisms) -> None:
        self.sasl = sasl
        self.result: Authenticated | None = None

    async def step(self, message: bytes) -> bytes:
        if self.result is not None:
            raise AuthenticationFailed("PLAIN authentication already complete")
        user, password = parse_plain(message)
        credentials = (await self.sasl.credentials()).get(user, {})
        ok = await asyncio.to_thread(verify_password, password, credentials, self.sasl.dummy)
        if not ok:
            raise AuthenticationFailed(INVALID_CREDENTIALS)
        self.result = Authenticated(user)
        return b""


class ScramSaslExchange:
    def __init__(self, sasl: SaslMechanisms, mechanism: str) -> None:
        self.sasl = sasl
        self.mechanism = mechanism
        self.scram = ScramExchange(mechanism, sasl.secret)
        self.steps = 0
        self.result: Authenticated | None = None

    async def step(self, message: bytes) -> bytes:
        self.steps += 1
        if self.steps == 1:
            user = self.scram.client_first(message)
            credential = (await self.sasl.credentials()).get(user, {}).get(self.mechanism)
            return self.scram.server_first(credential)
        if self.steps == 2:
            answer = self.scram.client_final(message)
            self.result = Authenticated(self.scram.user)
            return answer
        raise AuthenticationFailed(f"{self.mechanism} authentication already complete")


class OAuthSaslExchange:
    def __init__(self, validator: OAuthBearerValidator) -> None:
        self.exchange = OAuthBearerExchange(validator)
        self.result: Authenticated | None = None

    async def step(self, message: bytes) -> bytes:
        """A refused token is answered with RFC 7628's error JSON; the client's %x01 after it
        fails the authentication."""
        try:
            answer = await self.exchange.respond(message)
        except OAuthBearerError as exc:
            log.info("OAUTHBEARER authentication failed: %s", exc)
            raise AuthenticationFailed(exc.client_message or "Authentication failed") from None
        if self.exchange.complete:
            self.result = Authenticated(self.exchange.principal, self.exchange.lifetime_ms)
        return answer


class SaslMechanisms:
    """The broker's SASL configuration and credential store."""

    def __init__(self, config: BrokerConfig, engine: StorageEngine) -> None:
        self.config = config
        self.engine = engine
        self.secret = secrets.token_bytes(32)
        self.dummy = dummy_credential(self.secret)
        self._oauth: dict[str, OAuthBearerValidator] = {}
        self._refreshers: list[asyncio.Task[None]] = []
        self.failures = 0  # failed authentications since start
        self.successes = 0
        self.reauthentications = 0  # of the successes, on an authenticated connection

    def enabled(self, listener: str) -> list[str]:
        text = self.config.for_listener(listener, "sasl.enabled.mechanisms")
        return [m.strip().upper() for m in text.split(",") if m.strip()]

    def reauth_ms(self, listener: str) -> int:
        return int(self.config.for_listener(listener, "connections.max.reauth.ms"))

    async def credentials(self) -> Mapping[str, Mapping[str, ScramCredential]]:
        return await read_credentials(self.engine)

    async def start(self, listeners: list[str]) -> None:
        """Takes the cluster's SASL secret (created by the first broker: unknown users' fake
        salts must not change with a restart or from one broker to the next), and loads the
        JWKS of every listener offering OAUTHBEARER (a failure stops the start with the
        reason)."""
        if any(self.config.protocol_of(name).startswith("SASL") for name in listeners):
            records = await self.engine.read_metadata(CLUSTER_KIND)
            secret = records.get(SECRET_KEY)
            if secret is None:
                secret = secrets.token_hex(32)
                await self.engine.write_metadata(CLUSTER_KIND, {SECRET_KEY: secret}, ())
            self.secret = bytes.fromhex(secret)
            self.dummy = dummy_credential(self.secret)
        for listener in listeners:
            if OAUTHBEARER in self.enabled(listener):
                await self._validator(listener)

    async def _validator(self, listener: str) -> OAuthBearerValidator:
        validator = self._oauth.get(listener)
        if validator is None:
            def get(name: str) -> str | None:
                return self.config.for_listener(listener, name) or None

            settings = OAuthSettings.from_settings(get)
            keys = JwksKeys(settings)
            await keys.start()
            self._refreshers.append(asyncio.create_task(keys.refresh_forever()))
            validator = self._oauth[listener] = OAuthBearerValidator(settings, keys)
        return validator

    async def close(self) -> None:
        for task in self._refreshers:
            task.cancel()
        for task in self._refreshers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def new_exchange(self, listener: str, mechanism: str) -> Exchange:
        if mechanism == PLAIN:
            return PlainExchange(self)
        if mechanism in MECHANISMS:
            return ScramSaslExchange(self, mechanism)
        if mechanism == OAUTHBEARER:
            return OAuthSaslExchange(await self._validator(listener))
        raise AuthenticationFailed(f"unsupported SASL mechanism {mechanism}")

    def session_lifetime_ms(self, listener: str, result: Authenticated) -> int:
        """KIP-368: how long the session lasts before the client must re-authenticate (0:
        for ever, when connections.max.reauth.ms is 0)."""
        limit = self.reauth_ms(listener)
        if limit <= 0:
            return 0
        if result.lifetime_ms is not None:
            limit = min(limit, max(result.lifetime_ms - int(time.time() * 1000), 0))
        return limit
