"""The client side of SCRAM (RFC 5802), written independently of strom.security.scram, for
the tests to drive the broker's side with: it can also send a chosen channel binding or nonce
and extensions, to test how the server refuses them."""

from __future__ import annotations

import base64
import hashlib
import hmac

HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


def encode_name(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    def __init__(
        self,
        mechanism: str,
        user: str,
        password: str,
        *,
        nonce: str = "fyko+d2lbbFgONRv9qkxdawL",
        authzid: str = "",
        extensions: tuple[str, ...] = (),
    ) -> None:
        self.hash = HASHES[mechanism]
        self.password = password
        self.nonce = nonce
        self.gs2_header = f"n,{'a=' + encode_name(authzid) if authzid else ''},"
        self.bare = f"n={encode_name(user)},r={nonce}" + "".join(f",{e}" for e in extensions)
        self.server_signature = b""

    def first(self) -> bytes:
        return (self.gs2_header + self.bare).encode("utf-8")

    def final(
        self, server_first: bytes, *, binding: str | None = None, nonce: str | None = None
    ) -> bytes:
        text = server_first.decode("ascii")
        attrs = dict(part.split("=", 1) for part in text.split(","))
        assert list(attrs) == ["r", "s", "i"]
        assert attrs["r"].startswith(self.nonce) and len(attrs["r"]) > len(self.nonce)
        salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
        if binding is None:
            binding = base64.b64encode(self.gs2_header.encode("utf-8")).decode("ascii")
        without_proof = f"c={binding},r={attrs['r'] if nonce is None else nonce}"
        salted = hashlib.pbkdf2_hmac(self.hash, self.password.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", self.hash)
        stored_key = hashlib.new(self.hash, client_key).digest()
        auth_message = f"{self.bare},{text},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, self.hash)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", self.hash)
        self.server_signature = hmac.digest(server_key, auth_message, self.hash)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def check_server_final(self, server_final: bytes) -> None:
        assert server_final == b"v=" + base64.b64encode(self.server_signature)
