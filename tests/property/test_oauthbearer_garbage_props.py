"""Whatever bytes a client sends as OAUTHBEARER messages, the broker's parser and exchange answer
with bytes or fail with OAuthBearerError, never another exception; and an exchange that failed
stays failed."""

from __future__ import annotations

import asyncio
import json

import jwt
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from strom.security.oauthbearer import (
    JWKS_ENDPOINT_URL,
    ClientInitialResponse,
    JwksKeys,
    OAuthBearerError,
    OAuthBearerExchange,
    OAuthBearerValidator,
    OAuthSettings,
    parse_client_initial_response,
)
from tests.oauth_keys import make_keypair_and_jwks, sign_token

VALID_KID = "k1"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[OAuthBearerValidator, list[str]]:
    """A validator over a one-key JWKS file, and a few real tokens (valid, expired, other sub)."""
    directory = tmp_path_factory.mktemp("oauth")
    key, jwks_path = make_keypair_and_jwks(directory, VALID_KID)
    oauth = OAuthSettings.from_settings({JWKS_ENDPOINT_URL: jwks_path.as_uri()}.get)
    keys = JwksKeys(oauth)
    asyncio.run(keys.start())
    tokens = [sign_token(key, VALID_KID, "alice"), sign_token(key, VALID_KID, "bob", -3600),
              sign_token(key, None, "carol", aud="x", scope=["a", "b"])]
    return OAuthBearerValidator(oauth, keys), tokens


def b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


json_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                        st.lists(st.text(max_size=4), max_size=3))
headers = st.fixed_dictionaries(
    {}, optional={"alg": st.sampled_from(["RS256", "ES256", "PS512", "none", "HS256", "EdDSA", ""]),
                  "kid": st.one_of(st.just(VALID_KID), st.text(max_size=12), st.integers()),
                  "b64": st.booleans(), "crit": st.lists(st.text(max_size=3), max_size=2)})
payloads = st.dictionaries(st.sampled_from(["sub", "exp", "iat", "nbf", "aud", "iss", "scope"]),
                           json_values, max_size=7)


@st.composite
def tokens(draw: st.DrawFn, real: list[str]) -> str:
    """Real tokens, real tokens with a character changed or cut, and JWS-shaped garbage."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.sampled_from(real))
    if kind == 1:
        token = draw(st.sampled_from(real))
        at = draw(st.integers(0, len(token) - 1))
        rest = token[at + 1:] if draw(st.booleans()) else ""
        return token[:at] + draw(st.sampled_from("Aa0-_.=")) + rest
    if kind == 2:
        header = b64(json.dumps(draw(headers)).encode())
        payload = b64(json.dumps(draw(payloads)).encode())
        return f"{header}.{payload}.{b64(draw(st.binary(max_size=40)))}"
    return draw(st.text("AZaz09-_.~+/=", min_size=1, max_size=40))


extension_keys = st.from_regex(r"[A-Za-z]{1,6}", fullmatch=True).filter(lambda k: k != "auth")
extension_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1,
                           max_size=10)


@st.composite
def well_formed(draw: st.DrawFn, real: list[str]) -> bytes:
    header = draw(st.sampled_from([b"n,,", b"n,a=alice,", b"n,a=bob,", b"n,a=x=2Cy,"]))
    pairs = [b"auth=Bearer " + draw(tokens(real)).encode()]
    extensions = draw(st.dictionaries(extension_keys, extension_values, max_size=2))
    pairs += [f"{k}={v}".encode() for k, v in extensions.items()]
    return header + b"\x01" + b"\x01".join(draw(st.permutations(pairs))) + b"\x01\x01"


@st.composite
def messages(draw: st.DrawFn, real: list[str]) -> bytes:
    """Client messages: raw bytes, well-formed ones (with real, damaged or forged tokens), and
    pieces of the RFC 7628 format put together, right or not."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return draw(well_formed(real))
    header = draw(st.sampled_from([b"n,,", b"n,a=alice,", b"n,a=x=2Cy,", b"n,a=bob,", b"y,,",
                                   b"n,", b""]))
    pairs = [b"auth=" + draw(st.sampled_from([b"Bearer ", b"bearer  ", b"Basic ", b"Bearer"]))
             + draw(tokens(real)).encode()]
    for _ in range(draw(st.integers(0, 2))):
        pairs.append(draw(st.sampled_from([b"ext", b"auth", b"k1", b""])) + b"="
                     + draw(st.binary(max_size=8)))
    pairs = draw(st.permutations(pairs))
    return (header + draw(st.sampled_from([b"\x01", b""])) + b"\x01".join(pairs)
            + draw(st.sampled_from([b"\x01\x01", b"\x01", b"", b"\x01\x01\x01"])))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_parse_raises_only_its_error(setup: tuple[OAuthBearerValidator, list[str]],
                                     data: st.DataObject) -> None:
    message = data.draw(messages(setup[1]))
    try:
        parsed = parse_client_initial_response(message)
    except OAuthBearerError as exc:
        assert exc.status == "invalid_request"
        return
    assert isinstance(parsed, ClientInitialResponse)
    assert parsed.token and parsed.token in message.decode()
    assert "auth" not in parsed.extensions


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_exchange_answers_or_raises_its_error(setup: tuple[OAuthBearerValidator, list[str]],
                                              data: st.DataObject) -> None:
    validator, real = setup
    sent = data.draw(st.lists(st.one_of(messages(real), st.just(b"\x01")), min_size=1,
                              max_size=3))

    async def go() -> None:
        exchange = OAuthBearerExchange(validator)
        failed = False
        for message in sent:
            try:
                answer = await exchange.respond(message)
            except OAuthBearerError as exc:
                assert exc.client_message
                event(f"failed: {exc.status}")
                failed = True
                continue
            assert not failed, "an exchange that failed answered again"
            event("complete" if exchange.complete else "error challenge")
            if exchange.complete:
                assert answer == b""
                assert exchange.principal in ("alice", "bob", "carol")
            else:
                assert json.loads(answer)["status"] == "invalid_token"

    asyncio.run(go())


def test_the_fixture_tokens_include_a_valid_one(
        setup: tuple[OAuthBearerValidator, list[str]]) -> None:
    """The exchange property sees successes too (a sanity check of the fixture)."""
    validator, real = setup
    assert asyncio.run(validator.validate(real[0])).principal == "alice"
