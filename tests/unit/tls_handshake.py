"""Real TLS handshakes in memory: two SSLObjects joined by ssl.MemoryBIO pairs, no sockets."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from strom.security.dn import subject_name


class Refused(Exception):
    """A handshake that failed, and the side that failed it."""

    def __init__(self, side: str, error: ssl.SSLError) -> None:
        super().__init__(f"{side}: {error}")
        self.side = side
        self.error = error


@dataclass
class Connection:
    server: ssl.SSLObject
    client: ssl.SSLObject
    server_in: ssl.MemoryBIO
    server_out: ssl.MemoryBIO
    client_in: ssl.MemoryBIO
    client_out: ssl.MemoryBIO

    def pump(self) -> None:
        self.server_in.write(self.client_out.read())
        self.client_in.write(self.server_out.read())

    def exchange(self) -> None:
        """Application data both ways (a TLS 1.3 client learns of a refusal only here)."""
        try:
            self.client.write(b"ping")
            self.pump()
            assert self.server.read(4) == b"ping"
        except ssl.SSLError as exc:
            raise Refused("server", exc) from None
        self.server.write(b"pong")
        self.pump()
        try:
            assert self.client.read(4) == b"pong"
        except ssl.SSLError as exc:
            raise Refused("client", exc) from None

    @property
    def server_certificate_cn(self) -> str:
        der = self.client.getpeercert(binary_form=True)
        assert der is not None
        return subject_name(der)


def connect(server_context: ssl.SSLContext, client_context: ssl.SSLContext,
            server_hostname: str | None = "localhost") -> Connection:
    """Both handshakes over memory BIOs, then data both ways; Refused(side) on failure."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    server = server_context.wrap_bio(bios[0], bios[1], server_side=True)
    client = client_context.wrap_bio(bios[2], bios[3], server_hostname=server_hostname)
    conn = Connection(server, client, *bios)
    done = {"client": False, "server": False}
    for _ in range(20):
        for side, obj in (("client", client), ("server", server)):
            if done[side]:
                continue
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                raise Refused(side, exc) from None
            conn.pump()
        if all(done.values()):
            conn.exchange()
            return conn
    raise AssertionError("the handshake does not progress")
