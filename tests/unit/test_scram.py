"""SCRAM-SHA-256/512 server side: full exchanges against an independent RFC 5802 client, the
RFC 7677 test vector byte for byte, every way the exchange must fail (and that an unknown user
fails exactly as a wrong password does), and Kafka's credential string."""

from __future__ import annotations

import base64
import re

import pytest

from strom.security.principal import AuthenticationFailed
from strom.security.scram import (
    MAX_ITERATIONS,
    MECHANISM_TYPE_IDS,
    MECHANISM_TYPES,
    MECHANISMS,
    MIN_ITERATIONS,
    ScramCredential,
    ScramExchange,
    credential_from_password,
    fake_credential,
    random_salt,
    saslname_decode,
    saslname_encode,
)
from tests.unit.scram_client import ScramClient

SECRET = b"broker secret for fake credentials"
BOTH = sorted(MECHANISMS)
INVALID = (
    "Authentication failed during authentication due to invalid credentials with SASL"
    " mechanism {}"
)
SERVER_FIRST = re.compile(rb"r=([\x21-\x2b\x2d-\x7e]+),s=([A-Za-z0-9+/=]+),i=([0-9]+)")

# RFC 7677 section 3.
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def credential(mechanism: str, password: str = "secret") -> ScramCredential:
    return credential_from_password(mechanism, password, salt=b"fixed salt " + mechanism.encode())


def start(
    mechanism: str,
    client: ScramClient,
    cred: ScramCredential | None,
    **kwargs: str,
) -> tuple[ScramExchange, bytes]:
    exchange = ScramExchange(mechanism, SECRET, **kwargs)
    exchange.client_first(client.first())
    return exchange, exchange.server_first(cred)


def fails_with(message: str, call: object, *args: object) -> None:
    assert callable(call)
    with pytest.raises(AuthenticationFailed) as caught:
        call(*args)
    assert str(caught.value) == message


# --- success ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", BOTH)
def test_full_exchange_succeeds(mechanism: str) -> None:
    client = ScramClient(mechanism, "alice", "secret")
    exchange = ScramExchange(mechanism, SECRET)
    assert exchange.client_first(client.first()) == "alice"
    assert exchange.user == "alice"
    server_first = exchange.server_first(credential(mechanism))
    done_before_final = exchange.done
    assert not done_before_final
    server_final = exchange.client_final(client.final(server_first))
    client.check_server_final(server_final)
    assert exchange.done
    assert exchange.mechanism == mechanism


@pytest.mark.parametrize("mechanism", BOTH)
def test_random_server_nonce_is_printable_and_fresh(mechanism: str) -> None:
    client = ScramClient(mechanism, "alice", "secret")
    nonces = set()
    for _ in range(3):
        _, server_first = start(mechanism, client, credential(mechanism))
        match = SERVER_FIRST.fullmatch(server_first)
        assert match is not None
        assert match[1].startswith(client.nonce.encode())
        assert len(match[1]) >= len(client.nonce) + 20
        nonces.add(match[1])
    assert len(nonces) == 3


def test_rfc7677_vector() -> None:
    cred = credential_from_password("SCRAM-SHA-256", "pencil", 4096, RFC_SALT)
    exchange = ScramExchange("SCRAM-SHA-256", SECRET, server_nonce=RFC_SERVER_NONCE)
    assert exchange.client_first(RFC_CLIENT_FIRST) == "user"
    assert exchange.server_first(cred) == RFC_SERVER_FIRST
    assert exchange.client_final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert exchange.done


def test_rfc7677_vector_with_the_test_client() -> None:
    client = ScramClient("SCRAM-SHA-256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert client.first() == RFC_CLIENT_FIRST
    assert client.final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL


def test_authzid_equal_to_user_binds_its_header() -> None:
    client = ScramClient("SCRAM-SHA-256", "a,b", "secret", authzid="a,b")
    exchange, server_first = start("SCRAM-SHA-256", client, credential("SCRAM-SHA-256"))
    assert client.gs2_header == "n,a=a=2Cb,"
    client.check_server_final(exchange.client_final(client.final(server_first)))
    assert exchange.done and exchange.user == "a,b"


def test_unknown_and_tokenauth_false_extensions_are_ignored() -> None:
    client = ScramClient(
        "SCRAM-SHA-512", "alice", "secret", extensions=("tokenauth=false", "foo=bar=baz")
    )
    exchange, server_first = start("SCRAM-SHA-512", client, credential("SCRAM-SHA-512"))
    client.check_server_final(exchange.client_final(client.final(server_first)))
    assert exchange.done


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", BOTH)
def test_wrong_password_fails_with_kafkas_message(mechanism: str) -> None:
    client = ScramClient(mechanism, "alice", "guess")
    exchange, server_first = start(mechanism, client, credential(mechanism, "secret"))
    fails_with(INVALID.format(mechanism), exchange.client_final, client.final(server_first))
    assert not exchange.done
    fails_with(
        "Unexpected SCRAM message: the exchange is failed",
        exchange.client_final,
        client.final(server_first),
    )


@pytest.mark.parametrize("mechanism", BOTH)
def test_unknown_user_fails_as_a_wrong_password_does(mechanism: str) -> None:
    known_client = ScramClient(mechanism, "alice", "guess")
    _, known_first = start(mechanism, known_client, credential_from_password(mechanism, "x"))
    client = ScramClient(mechanism, "mallory", "guess")
    exchange, server_first = start(mechanism, client, None)
    known, unknown = SERVER_FIRST.fullmatch(known_first), SERVER_FIRST.fullmatch(server_first)
    assert known is not None and unknown is not None
    # Alike: a Kafka-style salt of base-36 digits, the same iteration count, same nonce shape.
    for match in (known, unknown):
        assert re.fullmatch(rb"[0-9a-z]{20,26}", base64.b64decode(match[2]))
        assert match[3] == b"4096"
        assert len(match[1]) - len(client.nonce) in range(20, 27)
    fails_with(INVALID.format(mechanism), exchange.client_final, client.final(server_first))
    # The same salt on every attempt for the same user (a changing one would give it away).
    _, again = start(mechanism, client, None)
    assert SERVER_FIRST.fullmatch(again)[2] == unknown[2]  # type: ignore[index]
    _, other = start(mechanism, ScramClient(mechanism, "trudy", "guess"), None)
    assert SERVER_FIRST.fullmatch(other)[2] != unknown[2]  # type: ignore[index]


def test_fake_credential_depends_on_secret_user_and_mechanism() -> None:
    base = fake_credential("SCRAM-SHA-256", SECRET, "bob")
    assert base == fake_credential("SCRAM-SHA-256", SECRET, "bob")
    assert base.salt != fake_credential("SCRAM-SHA-256", b"other", "bob").salt
    assert base.salt != fake_credential("SCRAM-SHA-256", SECRET, "bobby").salt
    sha512 = fake_credential("SCRAM-SHA-512", SECRET, "bob")
    assert base.salt != sha512.salt
    assert len(base.stored_key) == len(base.server_key) == 32
    assert len(sha512.stored_key) == len(sha512.server_key) == 64
    assert base.iterations == MIN_ITERATIONS


def test_weak_stored_credential_is_refused_like_an_unknown_user() -> None:
    weak = credential_from_password("SCRAM-SHA-256", "secret")
    weak = ScramCredential(weak.salt, weak.stored_key, weak.server_key, 1)
    client = ScramClient("SCRAM-SHA-256", "alice", "secret")
    exchange, server_first = start("SCRAM-SHA-256", client, weak)
    assert server_first.endswith(b",i=4096")
    fails_with(INVALID.format("SCRAM-SHA-256"), exchange.client_final, client.final(server_first))


def test_modified_nonce_fails() -> None:
    cred = credential("SCRAM-SHA-256")
    for forged in ("fyko+d2lbbFgONRv9qkxdawL", "fyko+d2lbbFgONRv9qkxdawLsomething"):
        client = ScramClient("SCRAM-SHA-256", "alice", "secret")
        exchange, server_first = start("SCRAM-SHA-256", client, cred)
        final = client.final(server_first, nonce=forged)
        fails_with(INVALID.format("SCRAM-SHA-256"), exchange.client_final, final)


def test_a_final_nonce_prefixed_with_the_client_nonce_is_accepted_as_kafka_does() -> None:
    """Older librdkafka (kcat's) sends its own nonce again before the server's r= value;
    Kafka's ScramSaslServer accepts a final nonce that ends with the full nonce."""
    cred = credential("SCRAM-SHA-512")
    client = ScramClient("SCRAM-SHA-512", "alice", "secret")
    exchange, server_first = start("SCRAM-SHA-512", client, cred)
    full = server_first.decode().split(",")[0][2:]
    final = client.final(server_first, nonce=client.nonce + full)
    client.check_server_final(exchange.client_final(final))
    assert exchange.done


def test_replayed_client_final_fails() -> None:
    cred = credential("SCRAM-SHA-256")
    client = ScramClient("SCRAM-SHA-256", "alice", "secret")
    first_exchange, server_first = start("SCRAM-SHA-256", client, cred)
    recorded = client.final(server_first)
    first_exchange.client_final(recorded)
    assert first_exchange.done
    replay, _ = start("SCRAM-SHA-256", client, cred)
    fails_with(INVALID.format("SCRAM-SHA-256"), replay.client_final, recorded)


@pytest.mark.parametrize(
    ("authzid", "binding"),
    [
        ("", "eSws"),  # "y,,"
        ("", "biwsAA=="),
        ("alice", "biws"),  # the header sent was "n,a=alice,"
        ("", base64.b64encode(b"n,a=alice,").decode()),
    ],
)
def test_wrong_channel_binding_fails(authzid: str, binding: str) -> None:
    client = ScramClient("SCRAM-SHA-256", "alice", "secret", authzid=authzid)
    exchange, server_first = start("SCRAM-SHA-256", client, credential("SCRAM-SHA-256"))
    final = client.final(server_first, binding=binding)
    fails_with(INVALID.format("SCRAM-SHA-256"), exchange.client_final, final)


def test_authzid_other_than_user_fails() -> None:
    exchange = ScramExchange("SCRAM-SHA-256", SECRET)
    fails_with(
        "Authentication failed: Client requested an authorization id that is different"
        " from username",
        exchange.client_first,
        b"n,a=admin,n=alice,r=abc",
    )


@pytest.mark.parametrize("value", ["true", "TRUE", "True"])
def test_tokenauth_fails(value: str) -> None:
    exchange = ScramExchange("SCRAM-SHA-256", SECRET)
    fails_with(
        "Delegation token authentication (SCRAM extension tokenauth=true) is not supported",
        exchange.client_first,
        f"n,,n=alice,r=abc,tokenauth={value}".encode(),
    )


@pytest.mark.parametrize("header", [b"y,,", b"p=tls-unique,,", b"p=tls-server-end-point,,"])
def test_channel_binding_flags_other_than_n_fail(header: bytes) -> None:
    exchange = ScramExchange("SCRAM-SHA-256", SECRET)
    fails_with(
        "SCRAM channel binding is not supported: the client must send the GS2 flag 'n'",
        exchange.client_first,
        header + b"n=alice,r=abc",
    )


def test_mandatory_extension_fails() -> None:
    exchange = ScramExchange("SCRAM-SHA-256", SECRET)
    fails_with(
        "SCRAM mandatory extensions (m=) are not supported",
        exchange.client_first,
        b"n,,m=ext,n=alice,r=abc",
    )


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"n,,",
        b"n,",
        b"n,,n=alice",
        b"n,,r=abc,n=alice",  # attributes out of order
        b"n,,n=,r=abc",
        b"n,,n=alice,r=",
        b"n,,n=alice,r=a b",  # a space is not printable
        b"n,,n=al=ice,r=abc",  # "=" not escaped
        b"n,,n=al=2cice,r=abc",  # escapes are upper case
        b"n,,n=al\x00ice,r=abc",
        b"n,,n=alice,r=abc,",
        b"n,,n=alice,r=abc,x",
        b"n,,n=alice,r=abc,p=xyz",  # an RFC attribute is no extension
        b"n,,n=alice,r=abc,ext=1,ext=2",
        b"n,,n=alice,r=abc,e1=x",
        b"n,x=y,n=alice,r=abc",
        b"n,a=,n=alice,r=abc",
        b"x,,n=alice,r=abc",
        b"N,,n=alice,r=abc",
        b"n,,n=\xff\xfe,r=abc",
    ],
)
def test_malformed_client_first_fails(message: bytes) -> None:
    exchange = ScramExchange("SCRAM-SHA-256", SECRET)
    with pytest.raises(AuthenticationFailed, match="SCRAM"):
        exchange.client_first(message)
    with pytest.raises(AuthenticationFailed, match="the exchange is failed"):
        exchange.client_first(b"n,,n=alice,r=abc")


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"c=biws",
        b"c=biws,r=NONCE",
        b"r=NONCE,c=biws,p=AAAA",
        b"c=biws,r=NONCE,p=",
        b"c=biws,r=NONCE,p=AAA",  # not padded
        b"c=biws,r=NONCE,p=AA AA",
        b"c=,r=NONCE,p=AAAA",
        b"c=biws,r=,p=AAAA",
        b"c=biws,r=NONCE,x,p=AAAA",
        b"c=biws,r=NONCE,p=AAAA,x=1",
        b"m=x,c=biws,r=NONCE,p=AAAA",
        b"c=biws,r=NONCE,p=\xff",
    ],
)
def test_malformed_client_final_fails(message: bytes) -> None:
    client = ScramClient("SCRAM-SHA-256", "alice", "secret")
    exchange, server_first = start("SCRAM-SHA-256", client, credential("SCRAM-SHA-256"))
    nonce = SERVER_FIRST.fullmatch(server_first)[1]  # type: ignore[index]
    with pytest.raises(AuthenticationFailed, match="Invalid SCRAM client final message"):
        exchange.client_final(message.replace(b"NONCE", nonce))
    assert not exchange.done


def test_proof_of_the_wrong_length_fails_as_invalid_credentials() -> None:
    client = ScramClient("SCRAM-SHA-512", "alice", "secret")
    exchange, server_first = start("SCRAM-SHA-512", client, credential("SCRAM-SHA-512"))
    final = client.final(server_first)
    short = final[: final.index(b",p=")] + b",p=" + base64.b64encode(bytes(32))
    fails_with(INVALID.format("SCRAM-SHA-512"), exchange.client_final, short)


def test_client_final_extensions_are_part_of_the_auth_message() -> None:
    client = ScramClient("SCRAM-SHA-256", "alice", "secret")
    exchange, server_first = start("SCRAM-SHA-256", client, credential("SCRAM-SHA-256"))
    final = client.final(server_first)
    with_ext = final.replace(b",p=", b",x=1,p=")  # the proof does not cover "x=1"
    fails_with(INVALID.format("SCRAM-SHA-256"), exchange.client_final, with_ext)


def test_out_of_order_calls_fail() -> None:
    client = ScramClient("SCRAM-SHA-256", "alice", "secret")
    cred = credential("SCRAM-SHA-256")

    early_final = ScramExchange("SCRAM-SHA-256", SECRET)
    fails_with(
        "Unexpected SCRAM message: the exchange is awaiting client-first-message",
        early_final.client_final,
        b"c=biws,r=x,p=AAAA",
    )
    with pytest.raises(AuthenticationFailed):
        early_final.client_first(client.first())  # failed for good

    early_server = ScramExchange("SCRAM-SHA-256", SECRET)
    with pytest.raises(AuthenticationFailed, match="awaiting client-first-message"):
        early_server.server_first(cred)
    with pytest.raises(RuntimeError):
        _ = early_server.user

    twice = ScramExchange("SCRAM-SHA-256", SECRET)
    twice.client_first(client.first())
    with pytest.raises(AuthenticationFailed, match="awaiting the user's credential"):
        twice.client_first(client.first())

    final_before_credential = ScramExchange("SCRAM-SHA-256", SECRET)
    final_before_credential.client_first(client.first())
    with pytest.raises(AuthenticationFailed, match="awaiting the user's credential"):
        final_before_credential.client_final(b"c=biws,r=x,p=AAAA")

    server_first_twice, server_first = start("SCRAM-SHA-256", client, cred)
    with pytest.raises(AuthenticationFailed, match="awaiting client-final-message"):
        server_first_twice.server_first(cred)

    after_done, server_first = start("SCRAM-SHA-256", client, cred)
    final = client.final(server_first)
    after_done.client_final(final)
    assert after_done.done
    with pytest.raises(AuthenticationFailed, match="the exchange is complete"):
        after_done.client_final(final)
    assert not after_done.done


def test_unknown_mechanism_and_bad_server_nonce_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown SCRAM mechanism"):
        ScramExchange("SCRAM-SHA-1", SECRET)
    for nonce in ("", "a,b", "a b", "é"):
        with pytest.raises(ValueError, match="server nonce"):
            ScramExchange("SCRAM-SHA-256", SECRET, server_nonce=nonce)


# --- names ------------------------------------------------------------------------------------


def test_saslname_escaping() -> None:
    assert saslname_encode("a,b=c") == "a=2Cb=3Dc"
    assert saslname_decode("a=2Cb=3Dc") == "a,b=c"
    assert saslname_decode("=3D2C") == "=2C"
    assert saslname_decode("é") == "é"
    for name in ("", "=", "=2", "=2c", "=41", "a,b", "a\x00"):
        with pytest.raises(AuthenticationFailed):
            saslname_decode(name)
    for name in ("plain", "a,b", "=", "=2C", ",=,=3D", "ünï"):
        assert saslname_decode(saslname_encode(name)) == name


def test_client_first_decodes_the_user_name() -> None:
    client = ScramClient("SCRAM-SHA-256", "CN=x,O=y", "secret")
    assert b"n=CN=3Dx=2CO=3Dy," in client.first()
    exchange, server_first = start("SCRAM-SHA-256", client, credential("SCRAM-SHA-256"))
    assert exchange.user == "CN=x,O=y"
    client.check_server_final(exchange.client_final(client.final(server_first)))


# --- credentials ------------------------------------------------------------------------------


def test_mechanism_tables() -> None:
    assert MECHANISMS == {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
    assert MECHANISM_TYPES == {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
    assert MECHANISM_TYPE_IDS == {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
    assert (MIN_ITERATIONS, MAX_ITERATIONS) == (4096, 16384)


def test_credential_string_round_trip() -> None:
    cred = ScramCredential(b"salt", b"\x00" * 32, b"\xff" * 32, 8192)
    text = cred.to_kafka()
    assert text == (
        "salt=c2FsdA==,stored_key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,"
        "server_key=//////////////////////////////////////////8=,iterations=8192"
    )
    assert ScramCredential.from_kafka(text) == cred
    reordered = ",".join(reversed(text.split(",")))
    assert ScramCredential.from_kafka(reordered) == cred
    for mechanism in BOTH:
        real = credential_from_password(mechanism, "pw")
        assert ScramCredential.from_kafka(real.to_kafka()) == real


def test_credential_repr_hides_the_keys() -> None:
    cred = ScramCredential(b"salt", b"STOREDKEY", b"SERVERKEY", 4096)
    assert "STOREDKEY" not in repr(cred) and "SERVERKEY" not in repr(cred)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "not key=value"),
        ("garbage", "not key=value"),
        ("=AAAA,stored_key=AAAA,server_key=AAAA,iterations=4096", "not key=value"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAAA", "lacks iterations"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=4096,x=1", "no field 'x'"),
        ("salt=AAAA,salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=4096", "twice"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=-1", "iterations"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=0", "iterations"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=", "iterations"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=4O96", "iterations"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=99999999999", "iterations"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=٤٠٩٦", "iterations"),
        ("salt=,stored_key=AAAA,server_key=AAAA,iterations=4096", "salt"),
        ("salt=AAAA,stored_key=SECRET!,server_key=AAAA,iterations=4096", "stored_key"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAA,iterations=4096", "server_key"),
        ("salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=4096,", "not key=value"),
    ],
)
def test_from_kafka_rejects_garbage(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as caught:
        ScramCredential.from_kafka(text)
    assert "SECRET" not in str(caught.value)


def test_credential_from_password() -> None:
    cred = credential_from_password("SCRAM-SHA-256", "pencil", 4096, RFC_SALT)
    assert cred.salt == RFC_SALT and cred.iterations == 4096
    assert len(cred.stored_key) == len(cred.server_key) == 32
    assert credential_from_password("SCRAM-SHA-256", "pencil", 4096, RFC_SALT) == cred
    fresh = credential_from_password("SCRAM-SHA-512", "pencil")
    assert fresh.iterations == MIN_ITERATIONS and len(fresh.stored_key) == 64
    assert re.fullmatch(rb"[0-9a-z]{1,26}", fresh.salt)
    assert fresh.salt != credential_from_password("SCRAM-SHA-512", "pencil").salt
    for iterations in (MIN_ITERATIONS - 1, MAX_ITERATIONS + 1):
        with pytest.raises(ValueError, match="between 4096 and 16384"):
            credential_from_password("SCRAM-SHA-256", "pencil", iterations)


def test_random_salt_is_kafka_style() -> None:
    salts = {random_salt() for _ in range(50)}
    assert len(salts) == 50
    assert all(re.fullmatch(rb"[0-9a-z]{15,26}", s) for s in salts)
    assert max(len(s) for s in salts) >= 25


def test_a_fake_credential_never_authenticates(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even if the fake credential happened to be the password's, an unknown user stays out.
    import strom.security.scram as scram

    real = credential("SCRAM-SHA-256", "secret")
    monkeypatch.setattr(scram, "fake_credential", lambda *_: real)
    client = ScramClient("SCRAM-SHA-256", "ghost", "secret")
    exchange, server_first = start("SCRAM-SHA-256", client, None)
    fails_with(INVALID.format("SCRAM-SHA-256"), exchange.client_final, client.final(server_first))
