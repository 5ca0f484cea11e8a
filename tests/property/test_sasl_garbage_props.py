"""Property: whatever bytes a client sends, the SASL mechanisms answer with success or
AuthenticationFailed, never another exception (garbage, non-UTF-8, and near-valid messages
made of the grammar's own pieces); and a failed exchange stays failed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from strom.security.plain import parse_plain
from strom.security.principal import AuthenticationFailed
from strom.security.scram import ScramExchange, credential_from_password

SECRET = b"fuzz secret"
CREDENTIAL = credential_from_password("SCRAM-SHA-256", "secret", salt=b"fuzz salt")
PIECES = [
    b"n", b"y", b"p=tls-unique", b"a=", b"n=", b"r=", b"c=", b"p=", b"m=", b"s=", b"i=",
    b"biws", b"=2C", b"=3D", b"=", b",", b"\x00", b"alice", b"fyko", b"AAAA", b"AA==",
    b"tokenauth=true", b"ext=1", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b" ",
]  # fmt: skip
near_valid = st.lists(st.sampled_from(PIECES), max_size=14).map(b"".join)
messages = st.one_of(st.binary(max_size=200), near_valid)
shaped_first = st.tuples(near_valid, near_valid, messages).map(
    lambda parts: b"n,,n=%s,r=%s%s" % parts
)


def _first_then(message: bytes) -> ScramExchange:
    exchange = ScramExchange("SCRAM-SHA-256", SECRET, server_nonce="srv")
    exchange.client_first(b"n,,n=alice,r=fyko")
    exchange.server_first(CREDENTIAL)
    return exchange


@settings(max_examples=300, deadline=None)
@given(st.one_of(messages, shaped_first))
def test_client_first_raises_only_authentication_failed(message: bytes) -> None:
    exchange = ScramExchange("SCRAM-SHA-256", SECRET)
    try:
        user = exchange.client_first(message)
    except AuthenticationFailed:
        try:
            exchange.server_first(None)
        except AuthenticationFailed:
            return
        raise AssertionError("a failed exchange went on") from None
    assert user == exchange.user and user
    assert exchange.server_first(None).startswith(b"r=")


@settings(max_examples=300, deadline=None)
@given(st.one_of(messages, near_valid.map(lambda m: b"c=biws,r=fykosrv," + m)))
def test_client_final_raises_only_authentication_failed(message: bytes) -> None:
    exchange = _first_then(message)
    try:
        exchange.client_final(message)
    except AuthenticationFailed:
        assert not exchange.done
        return
    raise AssertionError(f"garbage authenticated: {message!r}")


@settings(max_examples=300, deadline=None)
@given(st.one_of(messages, st.lists(messages, min_size=3, max_size=3).map(b"\x00".join)))
def test_parse_plain_raises_only_authentication_failed(message: bytes) -> None:
    try:
        user, password = parse_plain(message)
    except AuthenticationFailed:
        return
    assert user and password and "\x00" not in user + password
