"""SASL/OAUTHBEARER on the broker: settings, the client's initial response, tokens checked
against a JWKS file (signature, algorithm, times, audience, issuer, claims), the JWKS reloaded
for an unknown key id, and the exchange's error-then-%x01 flow. No network: the JWKS is a file."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from strom.security import oauthbearer
from strom.security.oauthbearer import (
    CLOCK_SKEW_SECONDS,
    EXPECTED_AUDIENCE,
    EXPECTED_ISSUER,
    JWKS_ENDPOINT_REFRESH_MS,
    JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS,
    JWKS_ENDPOINT_RETRY_BACKOFF_MS,
    JWKS_ENDPOINT_URL,
    SCOPE_CLAIM_NAME,
    SUB_CLAIM_NAME,
    JwksError,
    JwksKeys,
    OAuthBearerError,
    OAuthBearerExchange,
    OAuthBearerValidator,
    OAuthSettings,
    ValidatedToken,
    VerificationKey,
    error_json,
    load_jwks,
    parse_client_initial_response,
)
from tests.oauth_keys import (
    PrivateKey,
    add_to_jwks,
    generate_key,
    make_keypair_and_jwks,
    public_jwk,
    sign_token,
    write_jwks,
)

T = TypeVar("T")
INVALID_TOKEN = b'{"status":"invalid_token"}'


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@pytest.fixture(scope="module")
def rsa_key() -> PrivateKey:
    return generate_key("RSA")


@pytest.fixture(scope="module")
def other_rsa_key() -> PrivateKey:
    return generate_key("RSA")


@pytest.fixture
def jwks(tmp_path: Path, rsa_key: PrivateKey) -> Path:
    """A JWKS file holding rsa_key's public key as "k1"."""
    return write_jwks(tmp_path / "jwks.json", [public_jwk(rsa_key, "k1")])


def settings_for(jwks_path: Path, **values: str) -> OAuthSettings:
    named = {JWKS_ENDPOINT_URL: jwks_path.as_uri(), **values}
    return OAuthSettings.from_settings(named.get)


async def started(jwks_path: Path, values: dict[str, str] | None = None,
                  clock: Callable[[], float] | None = None) -> OAuthBearerValidator:
    settings = settings_for(jwks_path, **(values or {}))
    keys = JwksKeys(settings) if clock is None else JwksKeys(settings, clock=clock)
    await keys.start()
    return OAuthBearerValidator(settings, keys)


def validate(jwks_path: Path, token: str, **values: str) -> ValidatedToken:
    async def go() -> ValidatedToken:
        return await (await started(jwks_path, values)).validate(token)

    return run(go())


def refused(jwks_path: Path, token: str, **values: str) -> OAuthBearerError:
    with pytest.raises(OAuthBearerError) as info:
        validate(jwks_path, token, **values)
    error = info.value
    if len(token) > 16:  # the token is never in what is logged or told
        assert token not in str(error) and token not in error.client_message
    assert error.error_json == '{"status":"invalid_token"}'
    return error


def b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 300, **extra}


# --------------------------------------------------------------------------------------------
# Settings


def test_settings_defaults(jwks: Path) -> None:
    settings = settings_for(jwks)
    assert settings == OAuthSettings(jwks.as_uri())
    assert (settings.jwks_refresh_ms, settings.jwks_retry_backoff_ms,
            settings.jwks_retry_backoff_max_ms) == (3_600_000, 100, 10_000)
    assert settings.expected_audience == () and settings.expected_issuer is None
    assert (settings.scope_claim_name, settings.sub_claim_name) == ("scope", "sub")
    assert settings.clock_skew_s == 30


def test_settings_read_with_kafkas_names() -> None:
    settings = OAuthSettings.from_settings({
        JWKS_ENDPOINT_URL: " https://idp.example.com/keys ",
        JWKS_ENDPOINT_REFRESH_MS: "60000",
        JWKS_ENDPOINT_RETRY_BACKOFF_MS: "50",
        JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS: "5000",
        EXPECTED_AUDIENCE: "kafka, other,,kafka",
        EXPECTED_ISSUER: "https://idp.example.com",
        SCOPE_CLAIM_NAME: "scp",
        SUB_CLAIM_NAME: "email",
        CLOCK_SKEW_SECONDS: "0",
    }.get)
    assert settings == OAuthSettings(
        "https://idp.example.com/keys", 60000, 50, 5000, ("kafka", "other"),
        "https://idp.example.com", "scp", "email", 0)


@pytest.mark.parametrize(("values", "message"), [
    ({}, "sasl.oauthbearer.jwks.endpoint.url is required"),
    ({JWKS_ENDPOINT_URL: " "}, "is required"),
    ({JWKS_ENDPOINT_URL: "ftp://idp/keys"}, "only https://, http:// and file://"),
    ({JWKS_ENDPOINT_URL: "https:///keys"}, "no host"),
    ({JWKS_ENDPOINT_URL: "https://idp:99999/keys"}, "sasl.oauthbearer.jwks.endpoint.url"),
    ({JWKS_ENDPOINT_URL: "file://remote/keys"}, "file:///absolute/path"),
    ({JWKS_ENDPOINT_REFRESH_MS: "soon"}, "refresh.ms must be a whole number"),
    ({JWKS_ENDPOINT_REFRESH_MS: "0"}, "refresh.ms must be at least 1"),
    ({JWKS_ENDPOINT_RETRY_BACKOFF_MS: "-5"}, "backoff.ms must be at least 1"),
    ({JWKS_ENDPOINT_RETRY_BACKOFF_MS: "500", JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS: "100"},
     "backoff.max.ms must be at least sasl.oauthbearer.jwks.endpoint.retry.backoff.ms (500)"),
    ({CLOCK_SKEW_SECONDS: "-1"}, "clock.skew.seconds must be at least 0"),
    ({CLOCK_SKEW_SECONDS: "1.5"}, "clock.skew.seconds must be a whole number"),
    ({SUB_CLAIM_NAME: "  "}, "sub.claim.name must name a claim"),
])
def test_bad_settings_say_which_and_why(values: dict[str, str], message: str) -> None:
    named = {JWKS_ENDPOINT_URL: "https://idp.example.com/keys", **values} if values else {}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OAuthSettings.from_settings(named.get)


# --------------------------------------------------------------------------------------------
# The client's initial response


def test_initial_response_without_authzid() -> None:
    parsed = parse_client_initial_response(b"n,,\x01auth=Bearer abc.def-_x\x01\x01")
    assert parsed.token == "abc.def-_x"
    assert parsed.authzid is None
    assert dict(parsed.extensions) == {}
    assert "abc.def" not in repr(parsed)


def test_initial_response_with_authzid_and_extensions() -> None:
    parsed = parse_client_initial_response(
        b"n,a=al=2Cice=3D,\x01auth=bearer tok\x01traceId=a b=c\x01logicalCluster=lc-1\x01\x01")
    assert parsed.token == "tok"
    assert parsed.authzid == "al,ice="
    assert dict(parsed.extensions) == {"traceId": "a b=c", "logicalCluster": "lc-1"}


def test_initial_response_escapes_are_undone_once() -> None:
    parsed = parse_client_initial_response(b"n,a=x=3D2C,\x01auth=Bearer t\x01\x01")
    assert parsed.authzid == "x=2C"


@pytest.mark.parametrize("message", [
    b"",
    b"\x01",
    b"\xff\xfe",
    b"n,,",
    b"n,",
    b"y,,\x01auth=Bearer t\x01\x01",
    b"p=tls-unique,,\x01auth=Bearer t\x01\x01",
    b"n,,auth=Bearer t\x01\x01",
    b"n,,\x01auth=Bearer t\x01",
    b"n,,\x01auth=Bearer t",
    b"n,,\x01\x01",
    b"n,,\x01\x01\x01",
    b"n,,\x01key=value\x01\x01",
    b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
    b"n,,\x01auth=Bearer t\x01key1=v\x01\x01",
    b"n,,\x01auth=Bearer t\x01key=\x01\x01",
    b"n,,\x01auth=Bearer t\x01novalue\x01\x01",
    b"n,,\x01auth=Bearer t\x01\x01\x01\x01",
    b"n,,\x01auth=Basic dXNlcjpwYXNz\x01\x01",
    b"n,,\x01auth=Bearer\x01\x01",
    b"n,,\x01auth=Bearer two tokens\x01\x01",
    b"n,,\x01auth=Bearer t!k\x01\x01",
    b"n,a=,\x01auth=Bearer t\x01\x01",
    b"n,a=x=y,\x01auth=Bearer t\x01\x01",
    b"n,b=x,\x01auth=Bearer t\x01\x01",
    b"n,a=x\x01auth=Bearer t\x01\x01",
    b"n,,\x01auth=Bearer t\x01k=v\x02\x01\x01",
])
def test_malformed_initial_responses_are_refused(message: bytes) -> None:
    with pytest.raises(OAuthBearerError) as info:
        parse_client_initial_response(message)
    assert info.value.status == "invalid_request"
    assert info.value.client_message == "Invalid OAUTHBEARER client first message"


def test_error_json_shape() -> None:
    assert error_json("invalid_token") == '{"status":"invalid_token"}'
    assert json.loads(error_json("insufficient_scope", "read", "https://idp/.well-known")) == {
        "status": "insufficient_scope", "scope": "read",
        "openid-configuration": "https://idp/.well-known"}


# --------------------------------------------------------------------------------------------
# Tokens


def test_valid_token_gives_principal_lifetime_and_start(jwks: Path, rsa_key: PrivateKey) -> None:
    now = int(time.time())
    token = sign_token(rsa_key, "k1", "alice", iat=now - 5, exp=now + 600)
    result = validate(jwks, token)
    assert result == ValidatedToken("alice", (now + 600) * 1000, frozenset(), (now - 5) * 1000)


@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521"])
def test_ec_tokens(tmp_path: Path, curve: str) -> None:
    key, jwks_path = make_keypair_and_jwks(tmp_path, "ec", kind=curve)
    assert validate(jwks_path, sign_token(key, "ec", "bob")).principal == "bob"


def test_rsa_key_without_alg_verifies_every_rsa_algorithm(jwks: Path, rsa_key: PrivateKey) -> None:
    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        assert validate(jwks, sign_token(rsa_key, "k1", "alice", alg=alg)).principal == "alice"


def test_key_pinned_to_an_alg_refuses_others(tmp_path: Path, rsa_key: PrivateKey) -> None:
    jwks_path = write_jwks(tmp_path / "jwks.json", [public_jwk(rsa_key, "k1", alg="RS256")])
    assert validate(jwks_path, sign_token(rsa_key, "k1", "alice")).principal == "alice"
    error = refused(jwks_path, sign_token(rsa_key, "k1", "alice", alg="PS256"))
    assert "does not verify PS256" in str(error)


def test_ec_key_does_not_verify_an_rsa_alg(tmp_path: Path, rsa_key: PrivateKey) -> None:
    ec_key = generate_key("P-256")
    jwks_path = write_jwks(tmp_path / "jwks.json", [public_jwk(ec_key, "k1")])
    assert "does not verify RS256" in str(refused(jwks_path, sign_token(rsa_key, "k1", "x")))


def test_expired_beyond_the_skew_fails(jwks: Path, rsa_key: PrivateKey) -> None:
    assert validate(jwks, sign_token(rsa_key, "k1", "alice", lifetime_s=-10)).principal
    error = refused(jwks, sign_token(rsa_key, "k1", "alice", lifetime_s=-60))
    assert "expired" in str(error)
    refused(jwks, sign_token(rsa_key, "k1", "alice", lifetime_s=-10), **{CLOCK_SKEW_SECONDS: "0"})


def test_not_yet_valid_fails(jwks: Path, rsa_key: PrivateKey) -> None:
    now = int(time.time())
    assert validate(jwks, sign_token(rsa_key, "k1", "alice", nbf=now + 10)).principal
    assert "not valid yet: nbf" in str(refused(
        jwks, sign_token(rsa_key, "k1", "alice", nbf=now + 120)))
    assert "not valid yet: iat" in str(refused(
        jwks, sign_token(rsa_key, "k1", "alice", iat=now + 120, lifetime_s=600)))


def test_exp_is_required_and_numeric(jwks: Path, rsa_key: PrivateKey) -> None:
    assert "no exp" in str(refused(jwks, sign_token(rsa_key, "k1", "alice", exp=None)))
    for exp in ("9999999999", True, -1, [1]):
        assert "exp claim" in str(refused(jwks, sign_token(rsa_key, "k1", "alice", exp=exp)))
    assert "iat claim" in str(refused(jwks, sign_token(rsa_key, "k1", "alice", iat="now")))


def test_iat_is_optional(jwks: Path, rsa_key: PrivateKey) -> None:
    result = validate(jwks, sign_token(rsa_key, "k1", "alice", iat=None))
    assert result.start_ms is None


def test_signature_by_another_key_fails(jwks: Path, other_rsa_key: PrivateKey) -> None:
    error = refused(jwks, sign_token(other_rsa_key, "k1", "mallory"))
    assert "Signature verification failed" in str(error)


def test_tampered_payload_fails(jwks: Path, rsa_key: PrivateKey) -> None:
    header, _, signature = sign_token(rsa_key, "k1", "alice").split(".")
    forged = f"{header}.{b64(json.dumps(claims(sub='admin')).encode())}.{signature}"
    refused(jwks, forged)


def test_alg_none_is_refused(jwks: Path) -> None:
    token = unsigned({"alg": "none", "kid": "k1", "typ": "JWT"}, claims()) + "."
    assert "'none' is not accepted" in str(refused(jwks, token))


def test_hs256_signed_with_the_public_key_is_refused(tmp_path: Path,
                                                     rsa_key: PrivateKey) -> None:
    """Algorithm confusion: an HMAC keyed with the (public) RSA key, and the JWKS even holding
    that key material as a symmetric key: neither is ever used for HMAC."""
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    jwks_path = write_jwks(tmp_path / "jwks.json", [
        public_jwk(rsa_key, "k1"),
        {"kty": "oct", "kid": "k2", "k": b64(pem), "use": "sig"},
    ])
    for kid in ("k1", "k2"):
        signing_input = unsigned({"alg": "HS256", "kid": kid, "typ": "JWT"}, claims())
        mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        assert "'HS256' is not accepted" in str(refused(jwks_path, f"{signing_input}.{b64(mac)}"))


def test_unknown_alg_and_garbage_are_refused(jwks: Path) -> None:
    assert "not accepted" in str(refused(jwks, unsigned({"alg": "XX1", "kid": "k1"}, claims())
                                         + ".c2ln"))
    for garbage in ("", "abc", "a.b.c", "....", "eyJ.eyJ.sig"):
        assert "not a JWS" in str(refused(jwks, garbage))
    refused(jwks, unsigned({"alg": "RS256", "kid": 5}, claims()) + ".c2ln")
    refused(jwks, unsigned({"alg": "RS256", "kid": "k1", "b64": False}, claims()) + ".c2ln")
    refused(jwks, unsigned({"alg": "RS256", "kid": "k1", "crit": ["x"], "x": 1}, claims())
            + ".c2ln")


def test_audience_when_configured(jwks: Path, rsa_key: PrivateKey) -> None:
    aud = {EXPECTED_AUDIENCE: "kafka,streams"}
    assert validate(jwks, sign_token(rsa_key, "k1", "a", aud="streams"), **aud).principal == "a"
    assert validate(jwks, sign_token(rsa_key, "k1", "a", aud=["x", "kafka"]), **aud).principal
    assert "Audience" in str(refused(jwks, sign_token(rsa_key, "k1", "a", aud="x"), **aud))
    assert "aud" in str(refused(jwks, sign_token(rsa_key, "k1", "a"), **aud))
    # Not configured: a token's aud is not looked at.
    assert validate(jwks, sign_token(rsa_key, "k1", "a", aud="anything")).principal == "a"


def test_issuer_when_configured(jwks: Path, rsa_key: PrivateKey) -> None:
    iss = {EXPECTED_ISSUER: "https://idp.example.com"}
    token = sign_token(rsa_key, "k1", "a", iss="https://idp.example.com")
    assert validate(jwks, token, **iss).principal == "a"
    assert "issuer" in str(refused(jwks, sign_token(rsa_key, "k1", "a", iss="https://evil"), **iss))
    assert "iss" in str(refused(jwks, sign_token(rsa_key, "k1", "a"), **iss))
    assert validate(jwks, sign_token(rsa_key, "k1", "a", iss="https://other")).principal == "a"


def test_custom_sub_claim_name(jwks: Path, rsa_key: PrivateKey) -> None:
    email = {SUB_CLAIM_NAME: "email"}
    token = sign_token(rsa_key, "k1", "12345", email=" alice@example.com ")
    assert validate(jwks, token, **email).principal == "alice@example.com"
    assert "'email' claim" in str(refused(jwks, sign_token(rsa_key, "k1", "12345"), **email))
    assert validate(jwks, sign_token(rsa_key, "k1", None, email="bob"), **email).principal == "bob"


@pytest.mark.parametrize("sub", [None, "", "   ", 42, ["alice"]])
def test_subject_must_be_a_non_empty_string(jwks: Path, rsa_key: PrivateKey, sub: Any) -> None:
    token = sign_token(rsa_key, "k1", sub)  # None: no sub claim
    assert "'sub' claim" in str(refused(jwks, token))


def test_scopes(jwks: Path, rsa_key: PrivateKey) -> None:
    def scopes(**values: Any) -> frozenset[str]:
        settings = {k: v for k, v in values.items() if k == SCOPE_CLAIM_NAME}
        token_claims = {k: v for k, v in values.items() if k != SCOPE_CLAIM_NAME}
        return validate(jwks, sign_token(rsa_key, "k1", "a", **token_claims), **settings).scopes

    assert scopes(scope="read  write\tadmin") == {"read", "write", "admin"}
    assert scopes(scope=["read", " write ", "read"]) == {"read", "write"}
    assert scopes(scope="") == frozenset()
    assert scopes(scope=7) == frozenset()
    assert scopes() == frozenset()
    assert scopes(scp="a b", **{SCOPE_CLAIM_NAME: "scp"}) == {"a", "b"}
    assert "scope" in str(refused(jwks, sign_token(rsa_key, "k1", "a", scope=["read", " "])))
    assert "scope" in str(refused(jwks, sign_token(rsa_key, "k1", "a", scope=["read", 1])))


def test_token_without_kid_needs_a_single_key(tmp_path: Path, rsa_key: PrivateKey,
                                              other_rsa_key: PrivateKey) -> None:
    jwks_path = write_jwks(tmp_path / "jwks.json", [public_jwk(rsa_key, "k1")])
    assert validate(jwks_path, sign_token(rsa_key, None, "alice")).principal == "alice"
    add_to_jwks(jwks_path, other_rsa_key, "k2")
    assert "names no key" in str(refused(jwks_path, sign_token(rsa_key, None, "alice")))


def test_same_kid_for_two_key_types(tmp_path: Path, rsa_key: PrivateKey) -> None:
    ec_key = generate_key("P-384")
    jwks_path = write_jwks(tmp_path / "jwks.json",
                           [public_jwk(ec_key, "k"), public_jwk(rsa_key, "k")])
    assert validate(jwks_path, sign_token(rsa_key, "k", "r")).principal == "r"
    assert validate(jwks_path, sign_token(ec_key, "k", "e")).principal == "e"


# --------------------------------------------------------------------------------------------
# The JWKS


def test_unknown_kid_reloads_the_jwks_file(tmp_path: Path, rsa_key: PrivateKey,
                                           other_rsa_key: PrivateKey) -> None:
    _, jwks_path = make_keypair_and_jwks(tmp_path, "old")

    async def go() -> None:
        validator = await started(jwks_path)
        add_to_jwks(jwks_path, other_rsa_key, "new")  # the provider rotates its keys
        result = await validator.validate(sign_token(other_rsa_key, "new", "carol"))
        assert result.principal == "carol"
        assert {k.kid for k in validator.keys.keys} == {"old", "new"}

    run(go())


def test_unknown_kid_reloads_are_rate_limited(tmp_path: Path, rsa_key: PrivateKey,
                                              other_rsa_key: PrivateKey) -> None:
    jwks_path = write_jwks(tmp_path / "jwks.json", [public_jwk(rsa_key, "k1")])
    now = [1000.0]

    async def go() -> None:
        validator = await started(jwks_path, {
            JWKS_ENDPOINT_RETRY_BACKOFF_MS: "100", JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS: "400",
        }, clock=lambda: now[0])
        # A garbage kid reloads once; the key is not there: the window doubles (to 200 ms).
        with pytest.raises(OAuthBearerError, match="no key with the kid 'nope'"):
            await validator.validate(sign_token(rsa_key, "nope", "x"))
        add_to_jwks(jwks_path, other_rsa_key, "k2")
        token = sign_token(other_rsa_key, "k2", "dave")
        now[0] += 0.05  # within the first window (100 ms): no reload
        with pytest.raises(OAuthBearerError, match="no key with the kid 'k2'"):
            await validator.validate(token)
        now[0] += 0.06  # past it: reload, found
        assert (await validator.validate(token)).principal == "dave"

    run(go())


def test_concurrent_tokens_with_a_new_kid_share_one_reload(
        tmp_path: Path, rsa_key: PrivateKey, other_rsa_key: PrivateKey,
        monkeypatch: pytest.MonkeyPatch) -> None:
    jwks_path = write_jwks(tmp_path / "jwks.json", [public_jwk(rsa_key, "k1")])
    loads: list[str] = []

    def counting_load(url: str, timeout_s: float) -> tuple[VerificationKey, ...]:
        loads.append(url)
        return load_jwks(url, timeout_s)

    monkeypatch.setattr(oauthbearer, "load_jwks", counting_load)

    async def go() -> None:
        validator = await started(jwks_path)
        add_to_jwks(jwks_path, other_rsa_key, "k2")
        tokens = [sign_token(other_rsa_key, "k2", name) for name in ("a", "b", "c")]
        results = await asyncio.gather(*(validator.validate(t) for t in tokens))
        assert [r.principal for r in results] == ["a", "b", "c"]

    run(go())
    assert len(loads) == 2  # the start, and one reload for the three tokens


def test_refresh_forever_picks_up_new_keys(tmp_path: Path, rsa_key: PrivateKey,
                                           other_rsa_key: PrivateKey) -> None:
    jwks_path = write_jwks(tmp_path / "jwks.json", [public_jwk(rsa_key, "k1")])

    async def go() -> None:
        settings = settings_for(jwks_path, **{JWKS_ENDPOINT_REFRESH_MS: "20",
                                              JWKS_ENDPOINT_RETRY_BACKOFF_MS: "10",
                                              JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS: "20"})
        keys = JwksKeys(settings)
        await keys.start()
        task = asyncio.create_task(keys.refresh_forever())
        try:
            jwks_path.write_text("{not json")  # a failed reload keeps the keys
            await asyncio.sleep(0.1)
            assert [k.kid for k in keys.keys] == ["k1"]
            write_jwks(jwks_path, [public_jwk(other_rsa_key, "k2")])
            for _ in range(200):
                if [k.kid for k in keys.keys] == ["k2"]:
                    break
                await asyncio.sleep(0.01)
            assert [k.kid for k in keys.keys] == ["k2"]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(go())


def test_failed_refresh_keeps_the_keys(jwks: Path) -> None:
    async def go() -> None:
        keys = JwksKeys(settings_for(jwks))
        await keys.start()
        jwks.write_text('{"keys": []}')
        with pytest.raises(JwksError, match="no usable signature key"):
            await keys.refresh()
        assert [k.kid for k in keys.keys] == ["k1"]

    run(go())


@pytest.mark.parametrize(("content", "reason"), [
    (None, "FileNotFoundError"),
    ("{not json", "not JSON"),
    ('["a"]', "not a JWK set"),
    ('{"keys": {}}', "not a JWK set"),
    ('{"keys": []}', "no usable signature key"),
    ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "no usable signature key"),
    ('{"keys": [{"kty": "RSA", "n": "AQAB", "e": "!!"}]}', "no usable signature key"),
])
def test_start_failure_names_the_url_and_the_reason(tmp_path: Path, content: str | None,
                                                    reason: str) -> None:
    jwks_path = tmp_path / "jwks.json"
    if content is not None:
        jwks_path.write_text(content)
    with pytest.raises(JwksError) as info:
        run(JwksKeys(settings_for(jwks_path)).start())
    assert jwks_path.as_uri() in str(info.value)
    assert reason in str(info.value)


def test_keys_not_for_signatures_are_left_out(tmp_path: Path, rsa_key: PrivateKey,
                                              other_rsa_key: PrivateKey) -> None:
    ec_key = generate_key("P-256")
    jwks_path = write_jwks(tmp_path / "jwks.json", [
        public_jwk(rsa_key, "enc", use="enc"),
        public_jwk(rsa_key, "wrap", key_ops=["wrapKey"]),
        public_jwk(rsa_key, "hs", alg="HS256"),
        public_jwk(ec_key, "mismatch", alg="ES384"),
        public_jwk(other_rsa_key, "ok", key_ops=["verify"]),
        "not a key",
    ])

    async def go() -> None:
        keys = JwksKeys(settings_for(jwks_path))
        await keys.start()
        assert [k.kid for k in keys.keys] == ["ok"]

    run(go())


# --------------------------------------------------------------------------------------------
# The exchange


def message(token: str, authzid: str = "", extensions: str = "") -> bytes:
    header = f"n,a={authzid}," if authzid else "n,,"
    return f"{header}\x01auth=Bearer {token}\x01{extensions}\x01".encode()


def exchange_run(jwks_path: Path, *messages: bytes) -> tuple[OAuthBearerExchange, list[Any]]:
    """Send the messages in turn; each answer, or the OAuthBearerError raised."""

    async def go() -> tuple[OAuthBearerExchange, list[Any]]:
        exchange = OAuthBearerExchange(await started(jwks_path))
        answers: list[Any] = []
        for m in messages:
            try:
                answers.append(await exchange.respond(m))
            except OAuthBearerError as exc:
                answers.append(exc)
        return exchange, answers

    return run(go())


def test_exchange_success(jwks: Path, rsa_key: PrivateKey) -> None:
    now = int(time.time())
    token = sign_token(rsa_key, "k1", "alice", exp=now + 900)
    exchange, answers = exchange_run(jwks, message(token, extensions="traceId=7\x01"))
    assert answers == [b""]
    assert exchange.complete
    assert exchange.principal == "alice"
    assert exchange.lifetime_ms == (now + 900) * 1000
    assert dict(exchange.extensions) == {"traceId": "7"}


def test_exchange_authzid_must_be_the_principal(jwks: Path, rsa_key: PrivateKey) -> None:
    token = sign_token(rsa_key, "k1", "alice")
    exchange, answers = exchange_run(jwks, message(token, authzid="alice"))
    assert answers == [b""] and exchange.principal == "alice"
    exchange, answers = exchange_run(jwks, message(token, authzid="admin"), b"\x01")
    assert not exchange.complete
    assert isinstance(answers[0], OAuthBearerError)
    assert "'admin'" in str(answers[0]) and token not in answers[0].client_message
    assert isinstance(answers[1], OAuthBearerError)


def test_exchange_error_then_acknowledgement(jwks: Path, rsa_key: PrivateKey) -> None:
    token = sign_token(rsa_key, "k1", "alice", lifetime_s=-3600)
    exchange, answers = exchange_run(jwks, message(token), b"\x01", b"\x01")
    assert answers[0] == INVALID_TOKEN
    assert isinstance(answers[1], OAuthBearerError) and "expired" in str(answers[1])
    assert answers[1].client_message == INVALID_TOKEN.decode()
    assert isinstance(answers[2], OAuthBearerError)
    assert not exchange.complete
    with pytest.raises(RuntimeError):
        exchange.principal  # noqa: B018


def test_exchange_error_then_anything_else_fails(jwks: Path, rsa_key: PrivateKey) -> None:
    bad = sign_token(rsa_key, "k1", "alice", lifetime_s=-3600)
    good = sign_token(rsa_key, "k1", "alice")
    exchange, answers = exchange_run(jwks, message(bad), message(good))
    assert answers[0] == INVALID_TOKEN
    assert isinstance(answers[1], OAuthBearerError) and "other than %x01" in str(answers[1])
    assert not exchange.complete


def test_exchange_malformed_first_message_fails_at_once(jwks: Path) -> None:
    for first in (b"\x01", b"n,,\x01auth=Bearer\x01\x01", b"garbage"):
        exchange, answers = exchange_run(jwks, first)
        assert isinstance(answers[0], OAuthBearerError)
        assert answers[0].status == "invalid_request"
        assert not exchange.complete


def test_exchange_message_after_success_fails(jwks: Path, rsa_key: PrivateKey) -> None:
    token = sign_token(rsa_key, "k1", "alice")
    exchange, answers = exchange_run(jwks, message(token), message(token))
    assert answers[0] == b"" and isinstance(answers[1], OAuthBearerError)
    assert exchange.complete and exchange.principal == "alice"
