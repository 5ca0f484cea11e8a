"""TLS on the byte level, for attacks on the SSL and SASL_SSL listeners: ClientHellos made by
OpenSSL into memory (so they can be mutated or cut), a client handshake pumped by hand over a
plain socket (so it can stop at any step, or be followed by raw records), junk records, and the
stalled handshakes the broker must close after its handshake timeout.
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from bench.fuzz import wire

HANDSHAKE_TIMEOUT_S: Final = 10.0  # the broker's (strom.server.listeners)
CLOSE_SLACK_S: Final = 10.0  # a stalled handshake must be closed by timeout + this
RECORD_HEADER: Final = struct.Struct(">BHH")  # content type, version, length
HANDSHAKE: Final = 22
ALERT: Final = 21
HEARTBEAT: Final = 24
APPLICATION_DATA: Final = 23
# How a stalled handshake stalls: no byte, part of a ClientHello, a ClientHello and no answer
# to the server's flight, a record header promising 16 KiB that never come.
STALL_KINDS: Final = ("silent", "partial-hello", "hello-only", "record-header-only")


def client_context(old_versions: bool = False) -> ssl.SSLContext:
    """A client context that trusts anything; `old_versions`: TLS 1.0 and 1.1 only (and every
    cipher OpenSSL still has)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if old_versions:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


class Handshake:
    """A TLS client on memory BIOs: `hello()`, then `feed(server bytes)` returns the client's
    next flight, until `done`."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str = "localhost") -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing,
                                    server_hostname=server_hostname)
        self.done = False

    def _step(self) -> bytes:
        try:
            self.tls.do_handshake()
            self.done = True
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def hello(self) -> bytes:
        return self._step()

    def feed(self, data: bytes) -> bytes:
        self.incoming.write(data)
        return self._step()

    def encrypt(self, data: bytes) -> bytes:
        self.tls.write(data)
        return self.outgoing.read()


def client_hello(rng: random.Random, old_versions: bool = False) -> bytes:
    """A fresh ClientHello record (new random and key shares each time)."""
    del rng  # OpenSSL draws its own randomness
    return Handshake(client_context(old_versions)).hello()


def read_some(sock: socket.socket, timeout_s: float, limit: int = 1 << 16
              ) -> tuple[bytes, str]:
    """What the peer sends within `timeout_s`: (bytes, "close" | "reset" | "timeout")."""
    deadline = time.monotonic() + timeout_s
    got = bytearray()
    while len(got) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(got), wire.TIMEOUT
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            return bytes(got), wire.TIMEOUT
        except OSError:
            return bytes(got), wire.RESET
        if not chunk:
            return bytes(got), wire.CLOSE
        got += chunk
    return bytes(got), wire.TIMEOUT


def read_flight(sock: socket.socket, handshake: Handshake, timeout_s: float) -> bytes:
    """Reads the server's flight until the client has something to send or is done; the
    client's answer (b"" if the server sent nothing usable in time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(1 << 16)
        except (TimeoutError, OSError):
            return b""
        if not chunk:
            return b""
        answer = handshake.feed(chunk)
        if answer or handshake.done:
            return answer
    return b""


def record_types(data: bytes) -> list[int]:
    """The content types of the TLS records in `data` (as far as they can be read)."""
    types, pos = [], 0
    while pos + RECORD_HEADER.size <= len(data):
        kind, _version, length = RECORD_HEADER.unpack_from(data, pos)
        types.append(kind)
        pos += RECORD_HEADER.size + length
    return types


def record(kind: int, payload: bytes, version: int = 0x0303) -> bytes:
    return RECORD_HEADER.pack(kind, version, len(payload)) + payload


def junk_records(rng: random.Random) -> tuple[str, bytes]:
    """Raw records to send after a finished handshake, which the record layer must refuse."""
    choice = rng.randrange(8)
    if choice == 0:  # a new ClientHello in the clear: renegotiation of a sort
        return "renegotiation-hello", client_hello(rng)
    if choice == 1:
        return "change-cipher-spec", record(20, b"\x01")
    if choice == 2:
        return "plain-alert", record(ALERT, bytes([rng.choice((1, 2)), rng.randrange(256)]))
    if choice == 3:  # Heartbleed's shape: a request claiming a 16 KiB payload
        return "heartbeat", record(HEARTBEAT, b"\x01\x40\x00" + rng.randbytes(3))
    if choice == 4:
        return "bad-mac-data", record(APPLICATION_DATA, rng.randbytes(rng.randint(1, 400)))
    if choice == 5:
        return "oversized-record", RECORD_HEADER.pack(APPLICATION_DATA, 0x0303, 0xFFFF) + \
            rng.randbytes(rng.randint(0, 600))
    if choice == 6:
        return "random-bytes", rng.randbytes(rng.randint(1, 2000))
    return "handshake-fragment", record(HANDSHAKE, rng.randbytes(rng.randint(0, 60)))


def garbage_hello(rng: random.Random, kafka_frame: bytes) -> tuple[str, bytes]:
    """Something other than a ClientHello as a connection's first bytes."""
    choice = rng.randrange(7)
    if choice == 0:
        return "random-bytes", rng.randbytes(rng.randint(1, 3000))
    if choice == 1:  # a plaintext Kafka request on a TLS port
        return "plaintext-kafka", kafka_frame
    if choice == 2:
        return "http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    if choice == 3:  # an SSLv2-style ClientHello
        return "sslv2-hello", b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + rng.randbytes(37)
    if choice == 4:
        return "empty-record", record(HANDSHAKE, b"", rng.choice((0x0301, 0x0303, 0x0300)))
    if choice == 5:
        return "alert-first", record(ALERT, b"\x02\x28")
    return "zeros", b"\x00" * rng.randint(1, 5000)


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One byte-level change: a bit flipped, a byte set, bytes cut off, inserted or removed,
    or a length field (big-endian uint16 or uint24) made huge or zero."""
    out = bytearray(data)
    choice = rng.randrange(6)
    if not out:
        return "insert", rng.randbytes(rng.randint(1, 16))
    if choice == 0:
        pos = rng.randrange(len(out))
        out[pos] ^= 1 << rng.randrange(8)
        return "bit-flip", bytes(out)
    if choice == 1:
        out[rng.randrange(len(out))] = rng.randrange(256)
        return "byte-set", bytes(out)
    if choice == 2:
        return "truncate", bytes(out[:rng.randrange(len(out))])
    if choice == 3:
        pos = rng.randrange(len(out) + 1)
        return "insert", bytes(out[:pos] + rng.randbytes(rng.randint(1, 16)) + out[pos:])
    if choice == 4:
        pos = rng.randrange(len(out))
        return "delete", bytes(out[:pos] + out[pos + rng.randint(1, 8):])
    width = rng.choice((2, 3))
    if len(out) <= width:
        return "truncate", b""
    pos = rng.randrange(len(out) - width)
    out[pos:pos + width] = rng.choice((b"\xff" * width, b"\x00" * width))
    return "length", bytes(out)


@dataclass
class StallResult:
    kind: str
    listener: str
    closed_after_s: float | None  # None: still open at the deadline


@dataclass
class Staller:
    """Every `every_s`, handshakes that stall on each TLS listener; each must be closed by the
    broker within its handshake timeout (+ slack), and healthy clients must be served while
    they hang. `healthy` runs one healthy client (raises on failure)."""

    addresses: dict[str, tuple[str, int]]
    healthy: Callable[[], None]
    every_s: float
    stop: threading.Event
    source: str | None = None  # the address the stalled connections come from
    results: list[StallResult] = field(default_factory=list)
    healthy_failures: list[str] = field(default_factory=list)
    healthy_ok: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(17))

    def run(self, report: Callable[[StallResult], None]) -> None:
        while not self.stop.is_set():
            for result in self.batch():
                self.results.append(result)
                report(result)
            if self.stop.wait(self.every_s):
                return

    def _open(self, kind: str, address: tuple[str, int]) -> socket.socket:
        sock = socket.create_connection(
            address, timeout=5.0,
            source_address=None if self.source is None else (self.source, 0))
        if kind == "partial-hello":
            hello = client_hello(self.rng)
            sock.sendall(hello[:self.rng.randint(1, len(hello) - 1)])
        elif kind == "hello-only":
            sock.sendall(client_hello(self.rng))
        elif kind == "record-header-only":
            sock.sendall(RECORD_HEADER.pack(HANDSHAKE, 0x0301, 0x4000) + b"\x01\x00")
        return sock

    def batch(self) -> list[StallResult]:
        """Opens the stalled connections, runs healthy clients meanwhile, and waits until
        the broker closed each (or the deadline passed)."""
        opened: dict[socket.socket, tuple[str, str, float]] = {}
        for listener, address in self.addresses.items():
            for kind in STALL_KINDS:
                try:
                    opened[self._open(kind, address)] = (kind, listener, time.monotonic())
                except OSError:
                    continue
        results: list[StallResult] = []
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S + CLOSE_SLACK_S
        probes = [time.monotonic() + 1.0, time.monotonic() + HANDSHAKE_TIMEOUT_S / 2]
        while opened and time.monotonic() < deadline:
            if probes and time.monotonic() >= probes[0]:
                probes.pop(0)
                self._probe(len(opened))
            readable, _, _ = select.select(list(opened), [], [], 0.25)
            for sock in readable:
                try:
                    data = sock.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    kind, listener, at = opened.pop(sock)
                    results.append(StallResult(kind, listener, time.monotonic() - at))
                    sock.close()
        for sock, (kind, listener, _at) in opened.items():
            results.append(StallResult(kind, listener, None))
            sock.close()
        return results

    def _probe(self, stalled: int) -> None:
        try:
            self.healthy()
            self.healthy_ok += 1
        except Exception as exc:  # any failure of the healthy client is the finding
            self.healthy_failures.append(f"with {stalled} handshakes stalled: "
                                         f"{exc.__class__.__name__}: {exc}")
