"""The byte-level TCP fault proxy in front of an echo server on loopback: it forwards both ways
and counts; a black hole holds everything (open and new connections alike) and heal delivers
it; one-way loss discards one direction only and heal closes the connections that lost bytes;
sever resets every connection; stop leaves nothing listening."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from strom.testing.tcp_proxy import TcpFaultProxy

QUIET_S = 0.3  # how long "nothing arrives" is watched for


class EchoServer(socketserver.ThreadingTCPServer):
    """Echoes every byte back; remembers how many connections and bytes it got."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.connections = 0
        self.received = bytearray()
        self.lock = threading.Lock()


class EchoHandler(socketserver.BaseRequestHandler):
    server: EchoServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        while data := self.request.recv(65536):
            with self.server.lock:
                self.server.received += data
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpFaultProxy]:
    with TcpFaultProxy("127.0.0.1", echo.server_address[1]) as running:
        yield running


def connect(proxy: TcpFaultProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.settimeout(5)
    return s


def receive(s: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def silent(s: socket.socket) -> bool:
    s.settimeout(QUIET_S)
    try:
        return s.recv(1) == b"never"
    except TimeoutError:
        return True
    finally:
        s.settimeout(5)


def closed(s: socket.socket) -> bool:
    """The proxy closed or reset `s`."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_forwards_both_ways_and_counts(proxy: TcpFaultProxy) -> None:
    with connect(proxy) as s:
        s.sendall(b"hello")
        assert receive(s, 5) == b"hello"
    c = proxy.counters
    assert c.connections_accepted == 1
    assert c.bytes_forwarded == {"to_upstream": 5, "to_client": 5}


def test_blackhole_holds_open_and_new_connections_until_heal(
        proxy: TcpFaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as old:
        old.sendall(b"a")
        assert receive(old, 1) == b"a"
        proxy.blackhole()
        old.sendall(b"held")
        new = connect(proxy)  # accepted, but nothing reaches the server
        new.sendall(b"new")
        assert silent(old) and silent(new)
        assert echo.connections == 1 and bytes(echo.received) == b"a"
        assert proxy.heal() == 0
        assert receive(old, 4) == b"held" and receive(new, 3) == b"new"
        assert echo.connections == 2
        new.close()


def test_one_way_loss_to_upstream_then_heal_closes_the_broken_connection(
        proxy: TcpFaultProxy, echo: EchoServer) -> None:
    with connect(proxy) as s:
        proxy.drop("to_upstream")
        s.sendall(b"lost")
        assert silent(s)
        assert bytes(echo.received) == b""
        assert proxy.counters.bytes_dropped["to_upstream"] == 4
        assert proxy.heal() == 1
        assert closed(s)  # the stream has a hole in it
    with connect(proxy) as again:
        again.sendall(b"ok")
        assert receive(again, 2) == b"ok"


def test_one_way_loss_to_client_lets_requests_through(proxy: TcpFaultProxy,
                                                      echo: EchoServer) -> None:
    with connect(proxy) as s:
        proxy.drop("to_client")
        s.sendall(b"done")
        assert silent(s)
        assert bytes(echo.received) == b"done"  # it happened; the client never hears so
        assert proxy.counters.bytes_dropped["to_client"] == 4
        with connect(proxy) as untouched:  # nothing lost on it yet: heal keeps it
            assert proxy.heal() == 1
            untouched.sendall(b"x")
            assert receive(untouched, 1) == b"x"


def test_sever_resets_every_connection(proxy: TcpFaultProxy) -> None:
    a, b = connect(proxy), connect(proxy)
    for s in (a, b):
        s.sendall(b"1")
        assert receive(s, 1) == b"1"
    assert proxy.sever() == 2
    for s in (a, b):
        with s:
            assert closed(s)
    assert proxy.counters.connections_severed == 2


def test_drop_refuses_an_unknown_direction(proxy: TcpFaultProxy) -> None:
    with pytest.raises(ValueError, match="direction"):
        proxy.drop("sideways")  # type: ignore[arg-type]


def test_stop_closes_the_port_and_the_thread(echo: EchoServer) -> None:
    proxy = TcpFaultProxy("127.0.0.1", echo.server_address[1]).start()
    port = proxy.port
    s = connect(proxy)
    proxy.stop()
    with s:
        assert closed(s)
    assert not any(t.name == "strom-tcp-proxy" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
