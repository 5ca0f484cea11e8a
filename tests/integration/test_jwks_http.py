"""The OAUTHBEARER JWKS fetched over HTTP from a tiny server on the loopback: loaded at start,
fetched again for a token's unknown key id, redirects followed within one scheme, and a failure
(an HTTP error, a refused connection, a timeout) reported with the URL and the reason."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from strom.security.oauthbearer import (
    JWKS_ENDPOINT_URL,
    JwksError,
    JwksKeys,
    OAuthBearerValidator,
    OAuthSettings,
)
from tests.oauth_keys import generate_key, public_jwk, sign_token


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout test) is no error here


class JwksServer:
    """Serves ``jwks`` at /jwks.json, redirects /moved to it and /elsewhere to https://, answers
    404 for anything else; /slow waits for ``release`` first. ``paths``: the paths asked for."""

    def __init__(self) -> None:
        self.jwks: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.paths.append(self.path)
                with contextlib.suppress(OSError):  # the client gave up (the timeout test)
                    self.answer()

            def answer(self) -> None:
                if self.path == "/slow":
                    owner.release.wait(10)
                if self.path in ("/moved", "/elsewhere"):
                    scheme = "https" if self.path == "/elsewhere" else "http"
                    self.send_response(302)
                    self.send_header("Location", f"{scheme}://127.0.0.1:{owner.port}/jwks.json")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path not in ("/jwks.json", "/slow"):
                    self.send_error(404)
                    return
                body = json.dumps({"keys": owner.jwks}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/jwks.json") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def jwks_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[JwksServer]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = JwksServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(10)


def settings_for(url: str) -> OAuthSettings:
    return OAuthSettings.from_settings({JWKS_ENDPOINT_URL: url}.get)


def test_keys_fetched_at_start_and_again_for_an_unknown_kid(jwks_server: JwksServer) -> None:
    first, second = generate_key("RSA"), generate_key("P-256")
    jwks_server.jwks = [public_jwk(first, "first")]

    async def go() -> None:
        settings = settings_for(jwks_server.url())
        keys = JwksKeys(settings)
        await keys.start()
        validator = OAuthBearerValidator(settings, keys)
        assert (await validator.validate(sign_token(first, "first", "alice"))).principal == "alice"
        assert jwks_server.paths == ["/jwks.json"]
        jwks_server.jwks.append(public_jwk(second, "second"))  # the provider rotates its keys
        assert (await validator.validate(sign_token(second, "second", "bob"))).principal == "bob"
        assert jwks_server.paths == ["/jwks.json", "/jwks.json"]

    asyncio.run(go())


def test_redirect_within_http_is_followed(jwks_server: JwksServer) -> None:
    jwks_server.jwks = [public_jwk(generate_key("P-256"), "k")]
    keys = JwksKeys(settings_for(jwks_server.url("/moved")))
    asyncio.run(keys.start())
    assert [k.kid for k in keys.keys] == ["k"]
    assert jwks_server.paths == ["/moved", "/jwks.json"]


@pytest.mark.parametrize(("path", "reason"), [
    ("/missing", "HTTP 404"),
    ("/elsewhere", "HTTP 302"),  # http:// to https:// is not followed
])
def test_http_failure_at_start_names_the_url(jwks_server: JwksServer, path: str,
                                            reason: str) -> None:
    jwks_server.jwks = [public_jwk(generate_key("P-256"), "k")]
    url = jwks_server.url(path)
    with pytest.raises(JwksError) as info:
        asyncio.run(JwksKeys(settings_for(url)).start())
    assert url in str(info.value) and reason in str(info.value)


def test_refused_connection_names_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/jwks.json"
    with pytest.raises(JwksError) as info:
        asyncio.run(JwksKeys(settings_for(url)).start())
    assert url in str(info.value) and "ConnectionRefusedError" in str(info.value)


def test_slow_endpoint_times_out(jwks_server: JwksServer) -> None:
    url = jwks_server.url("/slow")
    with pytest.raises(JwksError) as info:
        asyncio.run(JwksKeys(settings_for(url), fetch_timeout_s=0.2).start())
    assert url in str(info.value) and "timed out" in str(info.value)
