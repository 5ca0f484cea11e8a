"""The `sasl` scenarios of the security workers: SASL exchanges that are wrong, cut short,
replayed or too large, on SASL_PLAINTEXT and SASL_SSL, with SaslAuthenticate (v0-2) or raw
tokens (after a v0 SaslHandshake). Only a correct login may authenticate:

* a mutated SCRAM client-first (the client-final then computed for the message it meant to
  send), a mutated client-final, one that lies consistently (the proof computed over what it
  says: another authorization id, the nonce without the server's part or with it changed,
  another channel binding, a wrong password, another user), a client-final replayed on a new
  connection or sent on another connection's exchange: authenticated = an `auth-bypass`
  finding (unless the mutated message still says exactly the same);
* PLAIN tokens that are not a user's correct password (or ask for another authorization id);
* after any refusal the connection must be closed: a Metadata request must get no answer.
"""

from __future__ import annotations

import random
from typing import Any, Final

from kio.schema.api_versions.v3.request import ApiVersionsRequest

from bench.fuzz import authz_check, sasl_client, tls_attacks, wire
from bench.fuzz.sasl_client import ScramClient, ServerFirst
from bench.fuzz.sec_worker import (
    CLOSE_TIMEOUT_S,
    SASL_TIMEOUT_S,
    SecurityWorker,
    Talk,
    decode,
)
from bench.fuzz.security import (
    ENABLED_MECHANISMS,
    FUZZ_PASSWORD,
    FUZZ_USER,
    LIVENESS_PASSWORD,
    LIVENESS_USER,
    OPEN_KEYS,
    PASSWORDS,
    PREFIX,
)

SCRAM: Final = ("SCRAM-SHA-256", "SCRAM-SHA-512")
PRE_AUTH_LIMIT: Final = 64 * 1024  # socket.request.max.bytes.pre.auth
BAD_MECHANISMS: Final = ("", "GSSAPI", "plain", "PLAIN ", " PLAIN", "PLAIN\x00", "SCRAM-SHA-1",
                         "SCRAM-SHA-384", "scram-sha-256", "OAUTHBEARER", "ANONYMOUS",
                         "EXTERNAL", "SCRAM-SHA-256-PLUS", "ä☃", "x" * 1000)


def _raw(worker: SecurityWorker) -> bool:
    return worker.rng.random() < 0.25


def _mode(raw: bool) -> str:
    return "raw tokens" if raw else "SaslAuthenticate"


def _bypass(worker: SecurityWorker, talk: Talk, title: str, detail: str) -> None:
    worker.finding("auth-bypass", title, f"{detail} ({talk.listener})", talk)


def _refused(worker: SecurityWorker, talk: Talk, error: int | None, what: str) -> None:
    worker.tally.check(f"refused: {what}")
    if error is not None:
        worker.closed_after(talk, f"a refused {what}")


def valid(worker: SecurityWorker, category: str, scenario: str) -> None:
    """A correct login (any mechanism, either framing), then a request that must be served."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        mechanism = worker.rng.choice(ENABLED_MECHANISMS)
        if not worker.login(talk, mechanism, _raw(worker)):
            return
        frame = wire.encode_frame(ApiVersionsRequest(client_software_name="strom-fuzz",
                                                     client_software_version="1"), talk.cid())
        if talk.send(frame, "after-login", SASL_TIMEOUT_S).response is None:
            worker.finding("sasl", "an authenticated connection was not served",
                           f"{mechanism}: ApiVersions after the login got no answer", talk)
    finally:
        talk.close()


def handshake_garbage(worker: SecurityWorker, category: str, scenario: str) -> None:
    """A SaslHandshake naming a mechanism the listener does not enable (or a mutated one):
    refused, and the connection closed."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        version = worker.rng.randrange(2)
        mechanism: str | None
        if worker.rng.random() < 0.6:
            mechanism = worker.rng.choice(BAD_MECHANISMS)
            frame = sasl_client.handshake_frame(mechanism, version, talk.cid())
            labels = ["handshake:bad-mechanism"]
        else:
            good = sasl_client.handshake_frame(worker.rng.choice(ENABLED_MECHANISMS), version,
                                               talk.cid())
            what, body = tls_attacks.mutate_bytes(worker.rng, good[4:])
            frame, labels = wire.framed(body), [f"handshake:{what}"]
            request = wire.decode_request(frame)
            mechanism = getattr(request, "mechanism", None)
        exchange = talk.send(frame, f"handshake-v{version}", CLOSE_TIMEOUT_S, labels=labels)
        head = wire.frame_header(frame)
        if head is None or head[0] != sasl_client.HANDSHAKE_KEY:  # the mutation changed it
            if exchange.response is not None and (head is None or head[0] not in OPEN_KEYS):
                worker.finding("pre-auth", "answered before authentication: "
                               f"{authz_check.api_name(head[0] if head else -1)}",
                               f"a mutated SaslHandshake became API key "
                               f"{head[0] if head else '?'} and was answered", talk)
            return
        body_answer = decode(frame, exchange.response) if exchange.response else None
        error = getattr(body_answer, "error_code", None)
        if error == 0 and mechanism not in ENABLED_MECHANISMS:
            _bypass(worker, talk, "SaslHandshake accepted a mechanism that is not enabled",
                    f"mechanism {mechanism!r}")
        elif error == 0:
            worker.tally.check("mutated handshakes that still named an enabled mechanism")
        elif exchange.response is not None:
            worker.tally.check("refused: SaslHandshake")
            worker.closed_after(talk, "a refused SaslHandshake")
        else:
            worker.tally.check("refused: SaslHandshake")
    finally:
        talk.close()


def authenticate_first(worker: SecurityWorker, category: str, scenario: str) -> None:
    """SaslAuthenticate without a SaslHandshake (even with a correct PLAIN token)."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        token = worker.rng.choice((
            sasl_client.plain_token(FUZZ_USER, FUZZ_PASSWORD),
            ScramClient("SCRAM-SHA-256", FUZZ_USER, FUZZ_PASSWORD,
                        sasl_client.nonce(worker.rng)).first(),
            worker.rng.randbytes(worker.rng.randint(0, 100))))
        error, _data = worker.token(talk, token, False, "authenticate-first", CLOSE_TIMEOUT_S)
        if error == 0:
            _bypass(worker, talk, "SaslAuthenticate without a SaslHandshake succeeded",
                    f"token {token[:40]!r}")
        _refused(worker, talk, error, "SaslAuthenticate without a handshake")
    finally:
        talk.close()


def _scram_start(worker: SecurityWorker, talk: Talk, raw: bool,
                 user: str = FUZZ_USER, password: str = FUZZ_PASSWORD,
                 mechanism: str | None = None) -> ScramClient | None:
    mechanism = mechanism or worker.rng.choice(SCRAM)
    error = worker.handshake(talk, mechanism, 0 if raw else 1)
    if error != 0:
        worker.finding("sasl", "a correct SaslHandshake was refused",
                       f"{mechanism} on {talk.listener}: answered {error}", talk)
        return None
    return ScramClient(mechanism, user, password, sasl_client.nonce(worker.rng))


def _server_first(worker: SecurityWorker, talk: Talk, client: ScramClient, raw: bool,
                  first: bytes | None = None) -> ServerFirst | None:
    """Sends a correct (or the given) client-first; the server-first (a finding if a correct
    one is refused)."""
    sent = client.first() if first is None else first
    error, data = worker.token(talk, sent, raw, "client-first")
    server = sasl_client.parse_server_first(data or b"") if error == 0 else None
    if server is None and first is None:
        worker.finding("sasl", "a correct SCRAM client-first was refused",
                       f"{client.mechanism} ({_mode(raw)}) on {talk.listener}: error "
                       f"{error}, answer {data!r}", talk)
    return server


def _mutated_first(rng: random.Random, client: ScramClient) -> tuple[str, bytes]:
    first, bare, gs2 = client.first(), client.bare.encode(), client.gs2.encode()
    choice = rng.randrange(12)
    if choice < 4:
        return tls_attacks.mutate_bytes(rng, first)
    return {
        4: ("gs2-y", b"y,," + bare),
        5: ("gs2-channel-binding", b"p=tls-unique,," + bare),
        6: ("authzid-other-user", f"n,a={LIVENESS_USER},".encode() + bare),
        7: ("mandatory-extension", gs2 + b"m=ext," + bare),
        8: ("nonce-empty", gs2 + f"n={FUZZ_USER},r=".encode()),
        9: ("nonce-unprintable", gs2 + bare + b"\x01\x7f"),
        10: ("tokenauth", gs2 + bare + b",tokenauth=true"),
        11: ("user-bad-escape", gs2 + b"n=fuzz=2Xuser,r=" + client.nonce.encode()),
    }[choice]


def scram_first_mutated(worker: SecurityWorker, category: str, scenario: str) -> None:
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    raw = _raw(worker)
    try:
        client = _scram_start(worker, talk, raw)
        if client is None:
            return
        what, first = _mutated_first(worker.rng, client)
        error, data = worker.token(talk, first, raw, f"client-first:{what}",
                                   CLOSE_TIMEOUT_S)
        server = sasl_client.parse_server_first(data or b"") if error == 0 else None
        if server is None:
            _refused(worker, talk, None if raw else error, "mutated client-first")
            return
        final = client.final(server)  # for the client-first it meant to send
        error, _data = worker.token(talk, final, raw, "client-final", CLOSE_TIMEOUT_S)
        if error == 0 and first == client.first():  # the mutation changed nothing
            worker.tally.check("mutated client-firsts the mutation left unchanged (accepted)")
            return
        if error == 0:
            _bypass(worker, talk, "SCRAM authenticated a mutated client-first",
                    f"{client.mechanism} ({_mode(raw)}), {what}: sent {first[:80]!r}")
            return
        _refused(worker, talk, None if raw else error, "mutated client-first")
    finally:
        talk.close()


def _mutated_final(rng: random.Random, client: ScramClient, server: ServerFirst,
                   final: bytes) -> tuple[str, bytes]:
    without, _sep, proof = final.decode().rpartition(",p=")
    choice = rng.randrange(11)
    if choice < 4:
        return tls_attacks.mutate_bytes(rng, final)
    binding = without.split(",")[0]
    return {
        4: ("nonce-client-only", f"{binding},r={client.nonce},p={proof}".encode()),
        5: ("nonce-server-changed",
            f"{binding},r={server.nonce[:-1]}{'A' if server.nonce[-1] != 'A' else 'B'},"
            f"p={proof}".encode()),
        6: ("proof-zero", f"{without},p={sasl_client.b64(bytes(len(proof) * 3 // 4))}"
            .encode()),
        7: ("proof-short", f"{without},p={proof[:8]}".encode()),
        8: ("proof-missing", without.encode()),
        9: ("binding-y", f"c={sasl_client.b64(b'y,,')},r={server.nonce},p={proof}".encode()),
        10: ("extra-attribute", f"{without},x=1,p={proof}".encode()),
    }[choice]


def scram_final_mutated(worker: SecurityWorker, category: str, scenario: str) -> None:
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    raw = _raw(worker)
    try:
        client = _scram_start(worker, talk, raw)
        server = None if client is None else _server_first(worker, talk, client, raw)
        if client is None or server is None:
            return
        final = client.final(server)
        what, sent = _mutated_final(worker.rng, client, server, final)
        error, _data = worker.token(talk, sent, raw, f"client-final:{what}", CLOSE_TIMEOUT_S)
        if error == 0:
            same = sasl_client.same_final(sent, final)
            if same is not None:
                worker.tally.check("mutated client-finals that still said the same (accepted"
                                   + (", the proof in non-canonical base64)" if same == "lenient"
                                      else ")"))
                return
            _bypass(worker, talk, "SCRAM authenticated a mutated client-final",
                    f"{client.mechanism} ({_mode(raw)}), {what}: sent {sent[:120]!r}, the "
                    f"correct one was {final[:120]!r}")
            return
        _refused(worker, talk, None if raw else error, "mutated client-final")
    finally:
        talk.close()


LIES: Final = ("authzid-other-user", "nonce-client-only", "nonce-server-changed",
               "binding-y", "wrong-password", "other-users-password", "unknown-user",
               "bare-other-user")


def scram_lie(worker: SecurityWorker, category: str, scenario: str) -> None:
    """A client whose proof matches what it sends, but what it sends is not a login."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    raw = _raw(worker)
    lie = worker.rng.choice(LIES)
    try:
        user, password, mechanism = FUZZ_USER, FUZZ_PASSWORD, worker.rng.choice(SCRAM)
        if lie == "wrong-password":
            password = "not-" + FUZZ_PASSWORD
        elif lie == "other-users-password":
            user, password, mechanism = LIVENESS_USER, FUZZ_PASSWORD, "SCRAM-SHA-512"
        elif lie == "unknown-user":
            user = f"{PREFIX}nobody"
        client = _scram_start(worker, talk, raw, user, password, mechanism)
        if client is None:
            return
        if lie == "authzid-other-user":
            client.gs2 = f"n,a={LIVENESS_USER},"
        error, data = worker.token(talk, client.first(), raw, f"client-first:{lie}",
                                   CLOSE_TIMEOUT_S)
        server = sasl_client.parse_server_first(data or b"") if error == 0 else None
        if server is None:
            _refused(worker, talk, None if raw else error, "lying SCRAM exchange")
            return
        changed = server.nonce[:-1] + ("A" if server.nonce[-1] != "A" else "B")
        final = client.final(server, **{
            "nonce-client-only": {"combined_nonce": client.nonce},
            "nonce-server-changed": {"combined_nonce": changed},
            "binding-y": {"binding_gs2": "y,,"},
            "bare-other-user": {"bare": f"n={LIVENESS_USER},r={client.nonce}"},
        }.get(lie, {}))
        error, _data = worker.token(talk, final, raw, f"client-final:{lie}", CLOSE_TIMEOUT_S)
        if error == 0:
            _bypass(worker, talk, f"SCRAM authenticated a lying client ({lie})",
                    f"{client.mechanism} ({_mode(raw)}) as {user}: final {final[:120]!r}")
            return
        _refused(worker, talk, None if raw else error, "lying SCRAM exchange")
    finally:
        talk.close()


def scram_replay(worker: SecurityWorker, category: str, scenario: str) -> None:
    """A client-final that authenticated before, sent on a new connection (after the same
    client-first, or a new one): the server's nonce is new, so it must fail."""
    mechanism = worker.rng.choice(SCRAM)
    recorded = worker.ctx.exchanges.pick(worker.rng, mechanism)
    if recorded is None:
        valid(worker, "sasl", "sasl:valid")
        return
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    raw = _raw(worker)
    try:
        client = _scram_start(worker, talk, raw, mechanism=mechanism)
        if client is None:
            return
        same_first = worker.rng.random() < 0.5
        first = recorded.client_first if same_first else client.first()
        error, data = worker.token(talk, first, raw, "client-first")
        if error != 0 or sasl_client.parse_server_first(data or b"") is None:
            worker.finding("sasl", "a correct SCRAM client-first was refused",
                           f"{mechanism} ({_mode(raw)}): error {error}", talk)
            return
        error, _data = worker.token(talk, recorded.client_final, raw, "replayed-final",
                                    CLOSE_TIMEOUT_S)
        if error == 0:
            _bypass(worker, talk, "SCRAM authenticated a replayed client-final",
                    f"{mechanism} ({_mode(raw)}), "
                    f"{'the recorded' if same_first else 'a new'} client-first")
            return
        _refused(worker, talk, None if raw else error, "replayed client-final")
    finally:
        talk.close()


def scram_cross(worker: SecurityWorker, category: str, scenario: str) -> None:
    """Two exchanges at once: A's correct client-final on B must fail; on A it works."""
    listener = worker.sasl_listener()
    a, b = Talk(worker, category, scenario, listener), Talk(worker, category, scenario,
                                                            listener)
    try:
        mechanism = worker.rng.choice(SCRAM)
        clients = [_scram_start(worker, t, False, mechanism=mechanism) for t in (a, b)]
        if clients[0] is None or clients[1] is None:
            return
        servers = [_server_first(worker, t, c, False) for t, c in zip((a, b), clients,
                                                                      strict=True)]
        if servers[0] is None or servers[1] is None:
            return
        final_a = clients[0].final(servers[0])
        error, _data = worker.token(b, final_a, False, "other-connection-final",
                                    CLOSE_TIMEOUT_S)
        if error == 0:
            _bypass(worker, b, "SCRAM authenticated another connection's client-final",
                    f"{mechanism}")
        else:
            _refused(worker, b, error, "client-final of another exchange")
        error, _data = worker.token(a, final_a, False, "client-final")
        if error != 0:
            worker.finding("sasl", "a correct login was refused",
                           f"{mechanism} while another exchange of the user failed: "
                           f"error {error}", a)
        else:
            worker.tally.check("correct logins")
    finally:
        a.close()
        b.close()


def _plain_garbage(rng: random.Random) -> tuple[str, bytes]:
    good = sasl_client.plain_token(FUZZ_USER, FUZZ_PASSWORD)
    choice = rng.randrange(16)
    if choice < 4:
        return tls_attacks.mutate_bytes(rng, good)
    if choice == 4:
        return "random-bytes", rng.randbytes(rng.randint(0, 200))
    return {
        5: ("wrong-password", f"\x00{FUZZ_USER}\x00wrong".encode()),
        6: ("other-users-password", f"\x00{LIVENESS_USER}\x00{FUZZ_PASSWORD}".encode()),
        7: ("authzid-other-user",
            f"{LIVENESS_USER}\x00{FUZZ_USER}\x00{FUZZ_PASSWORD}".encode()),
        8: ("no-user", f"\x00\x00{FUZZ_PASSWORD}".encode()),
        9: ("no-password", f"\x00{FUZZ_USER}\x00".encode()),
        10: ("two-fields", f"{FUZZ_USER}\x00{FUZZ_PASSWORD}".encode()),
        11: ("four-fields", f"\x00{FUZZ_USER}\x00{FUZZ_PASSWORD}\x00x".encode()),
        12: ("user-case", f"\x00{FUZZ_USER.upper()}\x00{FUZZ_PASSWORD}".encode()),
        13: ("not-utf8", f"\x00{FUZZ_USER}\x00".encode() + b"\xff\xfe"),
        14: ("long-user", f"\x00{'u' * 60_000}\x00{FUZZ_PASSWORD}".encode()),
        15: ("liveness-prefix", f"\x00{LIVENESS_USER}\x00{LIVENESS_PASSWORD}x".encode()),
    }[choice]


def plain_garbage(worker: SecurityWorker, category: str, scenario: str) -> None:
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    raw = _raw(worker)
    try:
        if worker.handshake(talk, "PLAIN", 0 if raw else 1) != 0:
            worker.finding("sasl", "a correct SaslHandshake was refused",
                           f"PLAIN on {talk.listener}", talk)
            return
        what, token = _plain_garbage(worker.rng)
        error, _data = worker.token(talk, token, raw, f"plain:{what}", CLOSE_TIMEOUT_S)
        legit = sasl_client.plain_is_valid(token, dict(PASSWORDS))
        if error == 0 and not legit:
            _bypass(worker, talk, "PLAIN authenticated a wrong token",
                    f"{_mode(raw)}, {what}: {token[:80]!r}")
        elif error == 0:
            worker.tally.check("mutated PLAIN tokens that were still correct (accepted)")
        elif legit:
            worker.finding("sasl", "a correct login was refused",
                           f"PLAIN ({_mode(raw)}) {token[:80]!r}: error {error}", talk)
        else:
            _refused(worker, talk, None if raw else error, "PLAIN token")
    finally:
        talk.close()


def oversized(worker: SecurityWorker, category: str, scenario: str) -> None:
    """A frame over the pre-authentication limit (64 KiB) before authentication must close
    the connection unanswered, whatever it is."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        size = worker.rng.choice((PRE_AUTH_LIMIT + 1, PRE_AUTH_LIMIT + 100, 200_000))
        choice = worker.rng.randrange(4)
        raw = choice == 2
        if choice in (0, 2) and worker.handshake(
                talk, worker.rng.choice(ENABLED_MECHANISMS), 0 if raw else 1) != 0:
            return
        if choice in (0, 1):
            frame = sasl_client.authenticate_frame(b"", 2, talk.cid())
            frame = _padded(frame, size)
            what = "SaslAuthenticate"
        elif choice == 2:
            frame, what = sasl_client.raw_frame(b"n,," + bytes(size - 3)), "raw token"
        else:
            frame, what = _padded(wire.encode_frame(ApiVersionsRequest(
                client_software_name="x", client_software_version="1"), talk.cid()),
                size), "ApiVersions"
        exchange = talk.send(frame, f"oversized:{what}", CLOSE_TIMEOUT_S,
                             kafka=not raw)
        if exchange.outcome == wire.RESPONSE:
            worker.finding("pre-auth", "a frame over the pre-authentication limit was "
                           "answered", f"{what} of {len(frame) - 4:,} bytes before "
                           f"authentication on {talk.listener}", talk)
        elif exchange.outcome == wire.TIMEOUT:
            worker.finding("sasl", "a frame over the pre-authentication limit did not close "
                           "the connection", f"{what} of {len(frame) - 4:,} bytes", talk)
        else:
            worker.tally.check("oversized pre-auth frames closed")
    finally:
        talk.close()


def _padded(frame: bytes, size: int) -> bytes:
    """The frame with junk after its body, so the frame is `size` bytes (prefix excluded)."""
    body = frame[4:] + bytes(max(size - len(frame) + 4, 0))
    return wire.framed(body)


def raw_garbage(worker: SecurityWorker, category: str, scenario: str) -> None:
    """Raw tokens after a v0 SaslHandshake that are wrong: no answer but a SCRAM
    server-first for a token that parses as a client-first; never a login."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        mechanism = worker.rng.choice(ENABLED_MECHANISMS)
        if worker.handshake(talk, mechanism, 0) != 0:
            return
        if mechanism == "PLAIN":
            good = sasl_client.plain_token(FUZZ_USER, FUZZ_PASSWORD)
        else:
            good = ScramClient(mechanism, FUZZ_USER, FUZZ_PASSWORD,
                               sasl_client.nonce(worker.rng)).first()
        choice = worker.rng.randrange(4)
        if choice == 0:
            what, token = "random-bytes", worker.rng.randbytes(worker.rng.randint(0, 300))
        elif choice == 1:
            what, token = "empty", b""
        else:
            what, token = tls_attacks.mutate_bytes(worker.rng, good)
        error, data = worker.token(talk, token, True, f"raw:{what}", CLOSE_TIMEOUT_S)
        if error is None:
            worker.tally.check("refused: raw token")
            return
        if mechanism == "PLAIN":
            if not sasl_client.plain_is_valid(token, dict(PASSWORDS)):
                _bypass(worker, talk, "PLAIN authenticated a wrong raw token",
                        f"{what}: {token[:80]!r}")
            return
        if sasl_client.parse_server_first(data or b"") is None:
            worker.finding("sasl", "a raw SCRAM client-first got an answer that is not a "
                           "server-first", f"{mechanism}, {what}: {data!r}", talk)
            return
        final_what, final = tls_attacks.mutate_bytes(worker.rng, b"c=biws,r=x,p=AAAA")
        error, _data = worker.token(talk, final, True, f"raw-final:{final_what}",
                                    CLOSE_TIMEOUT_S)
        if error is not None:
            _bypass(worker, talk, "SCRAM authenticated a wrong raw client-final",
                    f"{mechanism}: {final!r}")
    finally:
        talk.close()


def cut(worker: SecurityWorker, category: str, scenario: str) -> None:
    """An exchange abandoned at a random point: after the handshake, after a client-first,
    or in the middle of a frame."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    raw = _raw(worker)
    try:
        mechanism = worker.rng.choice(ENABLED_MECHANISMS)
        where = worker.rng.randrange(4)
        if where == 0:  # in the middle of the handshake frame
            frame = sasl_client.handshake_frame(mechanism, 0 if raw else 1, talk.cid())
            talk.cut(frame[:worker.rng.randrange(1, len(frame))], "cut:handshake")
            return
        if worker.handshake(talk, mechanism, 0 if raw else 1) != 0:
            return
        if where == 1:
            talk.cut(b"", "cut:after-handshake")
            return
        if mechanism == "PLAIN":
            token = sasl_client.plain_token(FUZZ_USER, FUZZ_PASSWORD)
        else:
            token = ScramClient(mechanism, FUZZ_USER, FUZZ_PASSWORD,
                                sasl_client.nonce(worker.rng)).first()
        frame = (sasl_client.raw_frame(token) if raw
                 else sasl_client.authenticate_frame(token, 2, talk.cid()))
        if where == 2:
            talk.cut(frame[:worker.rng.randrange(1, len(frame))], "cut:token")
        else:
            talk.cut(frame, "cut:after-token")
    finally:
        talk.close()


def reauth_switch(worker: SecurityWorker, category: str, scenario: str) -> None:
    """Logged in as the fuzz user, a new SCRAM-SHA-512 exchange as the liveness user (with
    its password): re-authentication must not change the principal."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        if not worker.login(talk, "SCRAM-SHA-512", False):
            return
        client = _scram_start(worker, talk, False, LIVENESS_USER, LIVENESS_PASSWORD,
                              "SCRAM-SHA-512")
        server = None if client is None else _server_first(worker, talk, client, False)
        if client is None or server is None:
            return
        error, _data = worker.token(talk, client.final(server), False, "reauth-final",
                                    CLOSE_TIMEOUT_S)
        if error == 0:
            _bypass(worker, talk, "re-authentication changed the principal",
                    f"{FUZZ_USER}'s connection re-authenticated as {LIVENESS_USER}")
            return
        worker.tally.check("refused: re-authentication as another user")
        if error is not None:
            worker.closed_after(talk, "a refused re-authentication", kind="sasl")
    finally:
        talk.close()


SCENARIOS: Final[dict[str, tuple[str, int, Any]]] = {
    "sasl:valid": ("sasl", 3, valid),
    "sasl:handshake-garbage": ("sasl", 4, handshake_garbage),
    "sasl:authenticate-first": ("sasl", 3, authenticate_first),
    "sasl:scram-first-mutated": ("sasl", 5, scram_first_mutated),
    "sasl:scram-final-mutated": ("sasl", 6, scram_final_mutated),
    "sasl:scram-lie": ("sasl", 4, scram_lie),
    "sasl:scram-replay": ("sasl", 3, scram_replay),
    "sasl:scram-cross": ("sasl", 1, scram_cross),
    "sasl:plain-garbage": ("sasl", 5, plain_garbage),
    "sasl:oversized": ("sasl", 2, oversized),
    "sasl:raw-garbage": ("sasl", 4, raw_garbage),
    "sasl:cut": ("sasl", 4, cut),
    "sasl:reauth-switch": ("sasl", 1, reauth_switch),
}
