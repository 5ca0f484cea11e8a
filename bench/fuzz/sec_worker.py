"""The `--security` campaign's worker threads. Each picks one scenario at a time (weighted),
on a connection of its own to the SASL_PLAINTEXT, SASL_SSL or SSL listener, and counts every
frame it sends in its category (`pre-auth`, `sasl`, `tls`, `unauthorized`) and scenario.

* `pre-auth`: frames of every API but ApiVersions and the SASL ones (the fuzz user's seeds,
  as they are or mutated) before authentication: on a fresh connection, after ApiVersions,
  after a SaslHandshake, in the middle of a SCRAM exchange, pipelined behind a handshake, or
  as a "token" after a v0 handshake. Each must get the connection closed with no answer.
* `sasl` (sec_sasl.py): SASL exchanges that are wrong, cut, replayed or too large.
* `tls`: what a TLS listener gets instead of, within or after a TLS handshake.
* `unauthorized`: the fuzz user logs in (SCRAM or PLAIN) and sends its seeds, as they are or
  mutated; every answer goes through authz_check.
"""

from __future__ import annotations

import random
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic

from bench.fuzz import authz_check, mutators, sasl_client, tls_attacks, wire
from bench.fuzz.abuse import api_versions_frame
from bench.fuzz.campaign import FrameSource, Gate, Settings, check_answer
from bench.fuzz.findings import FindingLog, pretty_hex
from bench.fuzz.logscan import FrameHistory
from bench.fuzz.mutators import Seed
from bench.fuzz.security import (
    ATTACKER_IP,
    ENABLED_MECHANISMS,
    FUZZ_PASSWORD,
    FUZZ_USER,
    OPEN_KEYS,
    PREFIX,
    SASL_LISTENERS,
    TLS_ATTACKER_IP,
    Exchanges,
    Listeners,
    ValidExchange,
)
from bench.fuzz.tally import Tally
from bench.fuzz.wire import Conn, Exchange

SASL_TIMEOUT_S: Final = 10.0  # a correct SASL step (PLAIN derives a key: slow under load)
CLOSE_TIMEOUT_S: Final = 5.0  # a frame that must close the connection
TLS_READ_S: Final = 2.0
UNAUTHORIZED_FRAMES_MAX: Final = 64
UNAUTHORIZED_CONTROL_SHARE: Final = 0.7  # a mutated frame mostly closes the connection
REPRODUCER_FRAMES: Final = 4
REPRODUCER_CHARS: Final = 2400


@dataclass
class SecurityContext:
    """What the security workers share."""

    listeners: Listeners
    user_seeds: list[Seed]  # the fuzz user's seeds (every API)
    preauth_seeds: list[Seed]  # those of APIs a SASL listener must not serve before login
    source: FrameSource  # the PLAINTEXT workers' frames (sent on the SSL listener)
    exchanges: Exchanges
    settings: Settings
    verified: ssl.SSLContext
    unverified: ssl.SSLContext

    @classmethod
    def build(cls, listeners: Listeners, user_seeds: list[Seed], source: FrameSource,
              settings: Settings) -> SecurityContext:
        preauth = [s for s in user_seeds if s.api_key not in OPEN_KEYS]
        return cls(listeners, user_seeds, preauth, source, Exchanges(), settings,
                   listeners.client_context(), listeners.client_context(verify=False))


class Talk:
    """One connection of a scenario. Every frame sent is counted (category, scenario, step)
    and kept: a finding's reproducer is the conversation's last frames."""

    def __init__(self, worker: SecurityWorker, category: str, scenario: str,
                 listener: str) -> None:
        self.worker = worker
        self.category, self.scenario, self.listener = category, scenario, listener
        use_tls = listener in ("SSL", "SASL_SSL")
        source = TLS_ATTACKER_IP if category == "tls" else ATTACKER_IP
        self.conn = Conn(worker.ctx.listeners.address(listener), 10.0,
                         tls=worker.ctx.unverified if use_tls else None, source=source)
        self.sent: list[bytes] = []
        self._cid = 0
        self.closed = False

    def cid(self) -> int:
        self._cid += 1
        return self._cid

    def _count(self, frame: bytes, step: str, outcome: str, kafka: bool,
               labels: list[str] | None = None) -> None:
        head = wire.frame_header(frame) if kafka else None
        self.worker.tally.security_frame(self.category, self.scenario, step, labels or [],
                                         head, outcome)

    def send(self, frame: bytes, step: str, timeout_s: float, kafka: bool = True,
             labels: list[str] | None = None) -> Exchange:
        """Sends a frame and waits for one answer frame (raw tokens too: `kafka=False`)."""
        self.sent.append(frame)
        self.worker.history.sent(self.conn.local_port, frame)
        self.worker.last_frame = frame
        exchange = self.conn.exchange(frame, timeout_s, min_size=4 if kafka else 0)
        self._count(frame, step, exchange.outcome, kafka, labels)
        if exchange.outcome != wire.RESPONSE:
            self.close()
        return exchange

    def cut(self, data: bytes, step: str) -> None:
        """Sends `data` (a frame's beginning, or nothing) and closes the connection."""
        self.sent.append(data)
        try:
            if data:
                self.conn.send(data)
        except OSError:
            pass
        self._count(data, step, wire.CUT, kafka=False)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.close()

    def reproducer(self) -> str:
        frames = self.sent[-REPRODUCER_FRAMES:]
        skipped = len(self.sent) - len(frames)
        text = " → ".join(pretty_hex(f) for f in frames)
        head = f"{self.listener}, {skipped} frames before: " if skipped else f"{self.listener}: "
        return (head + text)[:REPRODUCER_CHARS]


def metadata_probe(correlation_id: int, name: str) -> bytes:
    """A Metadata request that would create a `fzu-` topic if it were executed."""
    return wire.encode_frame(MetadataRequest(
        topics=(MetadataRequestTopic(topic_id=None, name=name),),
        allow_auto_topic_creation=True, include_topic_authorized_operations=False),
        correlation_id)


def decode(frame: bytes, response: bytes) -> Any | None:
    head = wire.frame_header(frame)
    if head is None:
        return None
    try:
        return wire.decode_response(head[0], head[1], response)
    except Exception:  # an answer that does not decode is counted by the caller
        return None


class SecurityWorker:
    """One thread running security scenarios until the campaign stops."""

    def __init__(self, index: int, seed: int, ctx: SecurityContext, gate: Gate, tally: Tally,
                 findings: FindingLog, history: FrameHistory) -> None:
        self.index = index
        self.rng = random.Random(seed * 1_000_033 + 7_919 * index)
        self.ctx, self.gate, self.tally = ctx, gate, tally
        self.findings, self.history = findings, history
        self.last_frame: bytes | None = None
        self.thread = threading.Thread(target=self.run, name=f"fuzz-sec-{index}", daemon=True)
        self._probes = 0

    # -- the loop

    def run(self) -> None:
        from bench.fuzz import sec_sasl

        scenarios = {**PREAUTH, **sec_sasl.SCENARIOS, **TLS, **UNAUTHORIZED}
        names = list(scenarios)
        weights = [scenarios[n][1] for n in names]
        while not self.gate.stopped:
            self.gate.checkpoint()
            name = self.rng.choices(names, weights)[0]
            category, _weight, run = scenarios[name]
            try:
                run(self, category, name)
            except OSError as exc:  # the broker refused a connection or reset it early
                self.tally.check(f"connection failed ({exc.__class__.__name__})")
            except Exception as exc:  # a harness bug: counted and shown, the worker goes on
                self.tally.harness_error(f"{name}: {exc!r}")

    # -- shared steps

    def sasl_listener(self) -> str:
        return self.rng.choice(SASL_LISTENERS)

    def finding(self, kind: str, title: str, detail: str, talk: Talk | None) -> None:
        if kind == "sasl" and not attacker_served(self.ctx.listeners):
            # One cause for every correct step that fails from now on: not a new finding each.
            title = (f"connections from {ATTACKER_IP} are refused (its connection budget is "
                     "used up: see 'connections released'); a correct step failed")
        self.findings.add(kind, title, detail, frame_hex=talk.reproducer() if talk else None)

    def probe_name(self) -> str:
        self._probes += 1
        return f"{PREFIX}probe-{self.index}-{self._probes % 50}"

    def closed_after(self, talk: Talk, why: str, kind: str = "pre-auth") -> None:
        """After a refusal the connection must be closed: a Metadata request (which would
        create a topic) must get no answer."""
        if talk.closed:
            self.tally.check(f"closed after {why}")
            return
        exchange = talk.send(metadata_probe(talk.cid(), self.probe_name()), "probe",
                             CLOSE_TIMEOUT_S)
        if exchange.outcome == wire.RESPONSE:
            self.finding(kind, f"a request was answered after {why}",
                         f"{talk.scenario} on {talk.listener}: the Metadata request after it "
                         "was answered", talk)
        elif exchange.outcome == wire.TIMEOUT:
            self.finding("sasl", f"the connection stayed open after {why}",
                         f"{talk.scenario} on {talk.listener}: no answer and no close within "
                         f"{CLOSE_TIMEOUT_S:.0f} s", talk)
        else:
            self.tally.check(f"closed after {why}")
        talk.close()

    def handshake(self, talk: Talk, mechanism: str, version: int = 1) -> int | None:
        """SaslHandshake; its error code, None without an answer (or one not decoding)."""
        frame = sasl_client.handshake_frame(mechanism, version, talk.cid())
        exchange = talk.send(frame, f"handshake-v{version}", SASL_TIMEOUT_S)
        body = decode(frame, exchange.response) if exchange.response else None
        return None if body is None else int(body.error_code)

    def token(self, talk: Talk, token: bytes, raw: bool, step: str,
              timeout_s: float = SASL_TIMEOUT_S) -> tuple[int | None, bytes | None]:
        """One SASL token (SaslAuthenticate v0-2, or raw after a v0 handshake): (error code,
        the answer's token); error None if no answer came, 0 for any raw answer."""
        if raw:
            exchange = talk.send(sasl_client.raw_frame(token), step, timeout_s, kafka=False)
            return (None, None) if exchange.response is None else (0, exchange.response)
        frame = sasl_client.authenticate_frame(token, self.rng.randrange(3), talk.cid())
        exchange = talk.send(frame, step, timeout_s)
        if exchange.response is None:
            return None, None
        body = decode(frame, exchange.response)
        if body is None:
            self.tally.check("SaslAuthenticate answers that do not decode")
            return -1, None
        return int(body.error_code), bytes(body.auth_bytes or b"")

    def login(self, talk: Talk, mechanism: str, raw: bool, user: str = FUZZ_USER,
              password: str = FUZZ_PASSWORD) -> bool:
        """A correct login; a refusal is a finding (the user and password are right)."""
        why = f"{mechanism} login as {user} ({'raw tokens' if raw else 'SaslAuthenticate'})"
        error = self.handshake(talk, mechanism, 0 if raw else 1)
        if error != 0:
            self.finding("sasl", "a correct SaslHandshake was refused",
                         f"{why} on {talk.listener}: answered {error}", talk)
            return False
        if mechanism == "PLAIN":
            error, _data = self.token(talk, sasl_client.plain_token(user, password), raw,
                                      "plain")
            ok = error == 0
        else:
            client = sasl_client.ScramClient(mechanism, user, password,
                                             sasl_client.nonce(self.rng))
            first = client.first()
            error, data = self.token(talk, first, raw, "client-first")
            server = sasl_client.parse_server_first(data or b"") if error == 0 else None
            ok = False
            if server is not None:
                final = client.final(server)
                error, data = self.token(talk, final, raw, "client-final")
                ok = error == 0
                if ok and not client.server_final_ok(data or b""):
                    self.finding("sasl", "the server-final message does not prove the "
                                 "server's key", f"{why}: server-final {data!r}", talk)
                if ok:
                    self.ctx.exchanges.add(ValidExchange(mechanism, first, final))
        if not ok:
            self.finding("sasl", "a correct login was refused",
                         f"{why} on {talk.listener}: error {error}", talk)
            return False
        self.tally.check("correct logins")
        return True


# -- pre-authentication

def _preauth_frame(worker: SecurityWorker) -> tuple[bytes, list[str]]:
    seed = worker.rng.choice(worker.ctx.preauth_seeds)
    if worker.rng.random() < 0.4:
        return wire.framed(seed.body), [f"seed:{seed.origin}"]
    body, names = mutators.mutate(worker.rng, seed, worker.ctx.preauth_seeds,
                                  worker.rng.randint(1, 3))
    return wire.framed(body), names


def preauth(worker: SecurityWorker, category: str, scenario: str) -> None:
    """Setup steps (by scenario), then up to 4 frames; a frame of a closed API must close the
    connection unanswered."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        if not _preauth_setup(worker, talk, scenario):
            return
        for _ in range(4):
            frame, labels = _preauth_frame(worker)
            exchange = talk.send(frame, "frame", CLOSE_TIMEOUT_S, labels=labels)
            if not _preauth_judged(worker, talk, frame, exchange):
                return
    finally:
        talk.close()


def _preauth_setup(worker: SecurityWorker, talk: Talk, scenario: str) -> bool:
    if scenario == "pre-auth:after-api-versions":
        exchange = talk.send(api_versions_frame(talk.cid()), "api-versions", SASL_TIMEOUT_S)
        if exchange.response is None:
            worker.finding("sasl", "ApiVersions before authentication was not answered",
                           f"on {talk.listener}: {exchange.outcome}", talk)
            return False
    elif scenario == "pre-auth:after-handshake":
        mechanism = worker.rng.choice(ENABLED_MECHANISMS)
        error = worker.handshake(talk, mechanism)
        if error != 0:
            worker.finding("sasl", "a correct SaslHandshake was refused",
                           f"{mechanism} on {talk.listener}: answered {error}", talk)
            return False
    elif scenario == "pre-auth:mid-scram":
        mechanism = worker.rng.choice(("SCRAM-SHA-256", "SCRAM-SHA-512"))
        if worker.handshake(talk, mechanism) != 0:
            return False
        client = sasl_client.ScramClient(mechanism, FUZZ_USER, FUZZ_PASSWORD,
                                         sasl_client.nonce(worker.rng))
        error, _data = worker.token(talk, client.first(), False, "client-first")
        if error != 0:
            worker.finding("sasl", "a correct SCRAM client-first was refused",
                           f"{mechanism} on {talk.listener}: answered {error}", talk)
            return False
    return True


def _preauth_judged(worker: SecurityWorker, talk: Talk, frame: bytes,
                    exchange: Exchange) -> bool:
    """Judges a frame sent before authentication; True if the connection may go on (the
    frame, mutated, became one of the open APIs and was answered)."""
    head = wire.frame_header(frame)
    key = None if head is None else head[0]
    if exchange.outcome == wire.RESPONSE:
        if key in OPEN_KEYS:
            worker.tally.check("pre-auth frames that became an open API and were answered")
            return True
        worker.finding("pre-auth", f"answered before authentication: "
                       f"{authz_check.api_name(-1 if key is None else key)}",
                       f"{talk.scenario} on {talk.listener}: API key {key} v"
                       f"{head[1] if head else '?'} was answered", talk)
        return False
    if exchange.outcome == wire.TIMEOUT and key not in OPEN_KEYS:
        worker.finding("sasl", "a frame before authentication was neither answered nor "
                       "closed", f"{talk.scenario} on {talk.listener}: API key {key}, "
                       f"{CLOSE_TIMEOUT_S:.0f} s", talk)
        return False
    worker.tally.check("pre-auth frames closed without an answer")
    return False


def preauth_pipelined(worker: SecurityWorker, category: str, scenario: str) -> None:
    """SaslHandshake, a closed API's frame and a correct PLAIN login in one write: only the
    handshake may be answered."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        frame, labels = _preauth_frame(worker)
        head = wire.frame_header(frame)
        if head is None or head[0] in OPEN_KEYS:
            return
        frames = [sasl_client.handshake_frame("PLAIN", 1, talk.cid()), frame,
                  sasl_client.authenticate_frame(sasl_client.plain_token(
                      FUZZ_USER, FUZZ_PASSWORD), 2, talk.cid())]
        talk.sent += frames
        talk.conn.send(b"".join(frames))
        answers: list[bytes] = []
        outcome = wire.RESPONSE
        while outcome == wire.RESPONSE and len(answers) < 3:
            try:
                answers.append(talk.conn.recv_frame(CLOSE_TIMEOUT_S))
            except wire.Closed:
                outcome = wire.CLOSE
            except TimeoutError:
                outcome = wire.TIMEOUT
            except OSError:
                outcome = wire.RESET
        outcomes = [wire.RESPONSE] * len(answers) + [outcome] * (3 - len(answers))
        for sent, got in zip(frames, outcomes, strict=True):
            talk._count(sent, "pipelined", got, True, labels if sent is frame else None)
        if len(answers) > 1:
            worker.finding("pre-auth", "answered before authentication (pipelined behind a "
                           "SaslHandshake)", f"{len(answers)} of 3 frames answered: API key "
                           f"{head[0]} v{head[1]} came before the login", talk)
        elif outcome == wire.TIMEOUT:
            worker.finding("sasl", "a frame before authentication was neither answered nor "
                           "closed", f"pipelined: API key {head[0]}", talk)
        else:
            worker.tally.check("pre-auth frames closed without an answer")
    finally:
        talk.close()


def preauth_raw_token(worker: SecurityWorker, category: str, scenario: str) -> None:
    """After a v0 SaslHandshake a Kafka request is a (wrong) SASL token: no answer."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        mechanism = worker.rng.choice(ENABLED_MECHANISMS)
        if worker.handshake(talk, mechanism, 0) != 0:
            return
        frame, labels = _preauth_frame(worker)
        exchange = talk.send(frame, "frame-as-token", CLOSE_TIMEOUT_S, labels=labels)
        if exchange.outcome == wire.RESPONSE:
            worker.finding("pre-auth", "a Kafka request after SaslHandshake v0 was answered",
                           f"{mechanism} on {talk.listener}: answer "
                           f"{(exchange.response or b'')[:60]!r}", talk)
        elif exchange.outcome == wire.TIMEOUT:
            worker.finding("sasl", "a wrong raw SASL token was neither answered nor closed",
                           f"{mechanism} on {talk.listener}", talk)
        else:
            worker.tally.check("pre-auth frames closed without an answer")
    finally:
        talk.close()


# -- authenticated, not authorized

def unauthorized(worker: SecurityWorker, category: str, scenario: str) -> None:
    """The fuzz user logs in, then sends its seeds until the connection closes."""
    talk = Talk(worker, category, scenario, worker.sasl_listener())
    try:
        mechanism = worker.rng.choice(ENABLED_MECHANISMS)
        if not worker.login(talk, mechanism, worker.rng.random() < 0.1):
            return
        for _ in range(UNAUTHORIZED_FRAMES_MAX):
            if worker.gate.stopped:
                return
            worker.gate.checkpoint()
            seed = worker.rng.choice(worker.ctx.user_seeds)
            if worker.rng.random() < UNAUTHORIZED_CONTROL_SHARE:
                frame, labels, kind = wire.framed(seed.body), [f"seed:{seed.origin}"], "control"
            else:
                body, labels = mutators.mutate(worker.rng, seed, worker.ctx.user_seeds,
                                               worker.rng.randint(1, 3))
                frame, kind = wire.framed(body), "mutated"
            exchange = talk.send(frame, kind, worker.ctx.settings.frame_timeout_s,
                                 labels=labels)
            if exchange.response is None:
                return
            _judge_unauthorized(worker, talk, frame, exchange.response, mechanism)
    finally:
        talk.close()


def _judge_unauthorized(worker: SecurityWorker, talk: Talk, frame: bytes, response: bytes,
                        mechanism: str) -> None:
    check_answer(frame, response, "unauthorized", worker.tally, worker.findings,
                 worker.ctx.settings.secret)
    head = wire.frame_header(frame)
    if head is None:
        return
    found = authz_check.violations(head[0], head[1], response)
    if found is None:
        worker.tally.check("fuzz-user answers that do not decode")
        return
    worker.tally.check("fuzz-user answers checked")
    if not found:
        return
    worker.findings.add(
        "unauthorized", f"executed for the fuzz user: {authz_check.api_name(head[0])}",
        f"{authz_check.api_name(head[0])} v{head[1]} from {FUZZ_USER} ({mechanism} on "
        f"{talk.listener}, no ACL): {'; '.join(found[:3])}", frame)


# -- TLS

def _tls_listener(worker: SecurityWorker) -> str:
    return worker.rng.choice(("SSL", "SASL_SSL"))


def _raw_socket(worker: SecurityWorker, listener: str) -> socket.socket:
    sock = socket.create_connection(worker.ctx.listeners.address(listener), timeout=5.0,
                                    source_address=(TLS_ATTACKER_IP, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _tls_count(worker: SecurityWorker, scenario: str, step: str, outcome: str,
               port: int, data: bytes) -> None:
    worker.history.sent(port, data)
    worker.tally.security_frame("tls", scenario, step, [], None, outcome)


def tls_garbage(worker: SecurityWorker, category: str, scenario: str) -> None:
    """Something other than a ClientHello first; a plaintext Kafka request must get no Kafka
    answer."""
    listener = _tls_listener(worker)
    kafka_frame = api_versions_frame(4242)
    what, data = tls_attacks.garbage_hello(worker.rng, kafka_frame)
    sock = _raw_socket(worker, listener)
    try:
        port = sock.getsockname()[1]
        sock.sendall(data)
        got, outcome = tls_attacks.read_some(sock, TLS_READ_S)
        _tls_count(worker, scenario, what, wire.RESPONSE if got else outcome, port, data)
        if what == "plaintext-kafka" and len(got) >= 8 and \
                struct.unpack_from(">i", got, 4)[0] == 4242:
            worker.findings.add("tls", "a TLS listener answered a plaintext Kafka request",
                                f"{listener}: {got[:40].hex()}", data)
    except OSError:
        _tls_count(worker, scenario, what, wire.RESET, 0, data)
    finally:
        sock.close()


def tls_mutated_hello(worker: SecurityWorker, category: str, scenario: str) -> None:
    listener = _tls_listener(worker)
    what, data = tls_attacks.mutate_bytes(worker.rng, tls_attacks.client_hello(worker.rng))
    sock = _raw_socket(worker, listener)
    try:
        port = sock.getsockname()[1]
        sock.sendall(data)
        got, outcome = tls_attacks.read_some(sock, TLS_READ_S)
        _tls_count(worker, scenario, what, wire.RESPONSE if got else outcome, port, data)
    except OSError:
        _tls_count(worker, scenario, what, wire.RESET, 0, data)
    finally:
        sock.close()


def _handshake_to(worker: SecurityWorker, sock: socket.socket,
                  context: ssl.SSLContext | None = None
                  ) -> tuple[tls_attacks.Handshake, bytes] | None:
    """Sends a ClientHello and reads the server's flight; the handshake and the client's
    next flight (None if the server did not answer)."""
    handshake = tls_attacks.Handshake(context or tls_attacks.client_context())
    sock.sendall(handshake.hello())
    flight = tls_attacks.read_flight(sock, handshake, 5.0)
    return (handshake, flight) if flight or handshake.done else None


def tls_truncated(worker: SecurityWorker, category: str, scenario: str) -> None:
    """A handshake whose client flight is cut, changed or never sent."""
    listener = _tls_listener(worker)
    sock = _raw_socket(worker, listener)
    port = sock.getsockname()[1]
    try:
        started = _handshake_to(worker, sock)
        if started is None:
            _tls_count(worker, scenario, "no-server-flight", wire.TIMEOUT, port, b"")
            return
        _handshake, flight = started
        choice = worker.rng.randrange(3)
        if choice == 0:
            _tls_count(worker, scenario, "cut-before-finished", wire.CUT, port, b"")
            return
        if choice == 1:
            data = flight[:worker.rng.randrange(max(len(flight), 1))]
            sock.sendall(data)
            _tls_count(worker, scenario, "finished-truncated", wire.CUT, port, data)
            return
        what, data = tls_attacks.mutate_bytes(worker.rng, flight)
        sock.sendall(data)
        _got, outcome = tls_attacks.read_some(sock, TLS_READ_S)
        _tls_count(worker, scenario, f"finished-{what}", outcome, port, data)
    except OSError:
        _tls_count(worker, scenario, "error", wire.RESET, port, b"")
    finally:
        sock.close()


def tls_junk_after(worker: SecurityWorker, category: str, scenario: str) -> None:
    """A finished handshake, then raw records the record layer must refuse: a heartbeat
    must not be answered."""
    listener = _tls_listener(worker)
    sock = _raw_socket(worker, listener)
    port = sock.getsockname()[1]
    try:
        started = _handshake_to(worker, sock)
        if started is None:
            _tls_count(worker, scenario, "no-server-flight", wire.TIMEOUT, port, b"")
            return
        _handshake, flight = started
        sock.sendall(flight)
        what, data = tls_attacks.junk_records(worker.rng)
        sock.sendall(data)
        got, outcome = tls_attacks.read_some(sock, TLS_READ_S)
        _tls_count(worker, scenario, what, outcome, port, data)
        if tls_attacks.HEARTBEAT in tls_attacks.record_types(got):
            worker.findings.add("tls", "a TLS heartbeat was answered",
                                f"{listener}: {got[:60].hex()}", data)
    except OSError:
        _tls_count(worker, scenario, "error", wire.RESET, port, b"")
    finally:
        sock.close()


def tls_old_version(worker: SecurityWorker, category: str, scenario: str) -> None:
    """TLS 1.0/1.1 only: the listeners allow TLS 1.2 and 1.3 (ssl.enabled.protocols)."""
    listener = _tls_listener(worker)
    context = tls_attacks.client_context(old_versions=True)
    try:
        with context.wrap_socket(_raw_socket(worker, listener),
                                 server_hostname="localhost") as tls:
            version = tls.version()
        _tls_count(worker, scenario, "tls1.0-1.1", wire.RESPONSE, 0, b"")
        worker.findings.add("tls", f"a {version} handshake succeeded",
                            f"{listener} should speak TLSv1.2 and TLSv1.3 only")
    except ssl.SSLError:
        _tls_count(worker, scenario, "tls1.0-1.1", wire.CLOSE, 0, b"")
        worker.tally.check("TLS 1.0/1.1 handshakes refused")


def tls_frames(worker: SecurityWorker, category: str, scenario: str) -> None:
    """A correct TLS connection to the SSL listener (User:ANONYMOUS, a super user) carrying
    the PLAINTEXT workers' frames."""
    talk = Talk(worker, category, scenario, "SSL")
    try:
        for _ in range(worker.rng.randint(1, 8)):
            frame, frame_category, labels = worker.ctx.source.next(worker.rng)
            exchange = talk.send(frame, frame_category, worker.ctx.settings.frame_timeout_s,
                                 labels=labels)
            if exchange.response is None:
                return
            check_answer(frame, exchange.response, frame_category, worker.tally,
                         worker.findings, worker.ctx.settings.secret)
    finally:
        talk.close()


def attacker_served(listeners: Listeners) -> bool:
    """Whether a new connection from the attackers' address is still served."""
    try:
        with Conn(listeners.address("PLAINTEXT"), 5.0, source=ATTACKER_IP) as conn:
            return conn.exchange(api_versions_frame(1), 5.0).outcome == wire.RESPONSE
    except OSError:
        return False


def healthy_tls(listeners: Listeners, timeout_s: float = 10.0) -> None:
    """A correct TLS client (the CA trusted, host name checked) is answered ApiVersions."""
    with Conn(listeners.address("SSL"), timeout_s, tls=listeners.client_context()) as conn:
        exchange = conn.exchange(api_versions_frame(1), timeout_s)
        if exchange.response is None:
            raise OSError(f"ApiVersions over TLS: {exchange.outcome}")


def healthy_sasl_ssl(listeners: Listeners, timeout_s: float = 10.0) -> None:
    with Conn(listeners.address("SASL_SSL"), timeout_s,
              tls=listeners.client_context()) as conn:
        sasl_client.login(conn, "SCRAM-SHA-256", FUZZ_USER, FUZZ_PASSWORD,
                          f"healthy{time.monotonic_ns()}", timeout_s)


Scenario = tuple[str, int, Any]
PREAUTH: Final[dict[str, Scenario]] = {
    "pre-auth:fresh": ("pre-auth", 8, preauth),
    "pre-auth:after-api-versions": ("pre-auth", 5, preauth),
    "pre-auth:after-handshake": ("pre-auth", 6, preauth),
    "pre-auth:mid-scram": ("pre-auth", 5, preauth),
    "pre-auth:pipelined": ("pre-auth", 2, preauth_pipelined),
    "pre-auth:raw-token": ("pre-auth", 2, preauth_raw_token),
}
TLS: Final[dict[str, Scenario]] = {
    "tls:garbage-hello": ("tls", 3, tls_garbage),
    "tls:mutated-hello": ("tls", 4, tls_mutated_hello),
    "tls:truncated-handshake": ("tls", 3, tls_truncated),
    "tls:junk-after-handshake": ("tls", 4, tls_junk_after),
    "tls:old-version": ("tls", 1, tls_old_version),
    "tls:frames": ("tls", 3, tls_frames),
}
UNAUTHORIZED: Final[dict[str, Scenario]] = {
    "unauthorized:frames": ("unauthorized", 22, unauthorized),
}
