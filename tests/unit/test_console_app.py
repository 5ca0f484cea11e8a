"""The console's HTTP layer with aiohttp's test client, no cluster needed: login, sessions,
CSRF, read-only refusals, local assets, the message renderings and the SVG chart."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient, TestServer

from strom.console import ConsoleSettings, build_app
from strom.console.html import chart
from strom.console.kafka import render

NOWHERE = "127.0.0.1:1"  # nothing listens: no test here may reach the cluster


def run(settings: ConsoleSettings, test: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(build_app(settings, poll=False))) as client:
            await test(client)

    asyncio.run(main())


def test_login_with_the_password() -> None:
    async def test(client: TestClient) -> None:
        first = await client.get("/topics", allow_redirects=False)
        assert first.status == 302 and first.headers["Location"].startswith("/login")
        login_page = await client.get("/login")
        assert login_page.status == 200 and 'type="password"' in await login_page.text()
        bad = await client.post("/login", data={"password": "nope"}, allow_redirects=False)
        assert bad.status == 401
        assert "strom_console" not in bad.cookies
        good = await client.post("/login", data={"password": "pw", "next": "/groups"},
                                 allow_redirects=False)
        assert good.status == 302 and good.headers["Location"] == "/groups"
        cookie = good.cookies["strom_console"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"

    run(ConsoleSettings(NOWHERE, password="pw"), test)


def test_an_outside_redirect_after_login_is_refused() -> None:
    async def test(client: TestClient) -> None:
        reply = await client.post("/login", data={"password": "pw",
                                                  "next": "//evil.example/"},
                                  allow_redirects=False)
        assert reply.headers["Location"] == "/"

    run(ConsoleSettings(NOWHERE, password="pw"), test)


def test_a_forged_cookie_is_no_session() -> None:
    async def test(client: TestClient) -> None:
        client.session.cookie_jar.update_cookies({"strom_console": "abc.def"})
        reply = await client.get("/topics", allow_redirects=False)
        assert reply.status == 302

    run(ConsoleSettings(NOWHERE, password="pw"), test)


def test_posts_need_the_csrf_token() -> None:
    async def test(client: TestClient) -> None:
        await client.post("/login", data={"password": "pw"}, allow_redirects=False)
        for path in ("/topics", "/topics/t/delete", "/topics/t/config", "/topics/t/produce",
                     "/groups/g/reset", "/acls", "/users"):
            reply = await client.post(path, data={"name": "x"}, allow_redirects=False)
            assert reply.status == 403, path
            reply = await client.post(path, data={"name": "x", "csrf": "forged"},
                                      allow_redirects=False)
            assert reply.status == 403, path

    run(ConsoleSettings(NOWHERE, password="pw"), test)


def test_read_only_refuses_posts_even_with_the_token() -> None:
    async def test(client: TestClient) -> None:
        page = await (await client.get("/login")).text()
        assert "csrf" not in page  # no forms to change anything
        reply = await client.post("/topics", data={"name": "x"}, allow_redirects=False)
        assert reply.status == 403 and "read-only" in await reply.text()

    run(ConsoleSettings(NOWHERE, read_only=True), test)


def test_assets_are_served_locally() -> None:
    async def test(client: TestClient) -> None:
        script = await client.get("/static/console.js")
        assert script.status == 200 and "data-live" in await script.text()
        style = await client.get("/static/console.css")
        assert style.status == 200
        login = await (await client.get("/login")).text()
        assert not re.search(r'(src|href)="(https?:)?//', login)

    run(ConsoleSettings(NOWHERE, password="pw"), test)


def test_renderings() -> None:
    assert render(b'{"a":[1]}', "auto") == '{\n  "a": [\n    1\n  ]\n}'
    assert render(b'{"a":[1]}', "text") == '{"a":[1]}'
    assert render(b"\x00\xff", "hex") == "00 ff"
    assert render(b"\xff", "auto") == "\\xff"
    assert render(None, "auto") == ""


def test_chart() -> None:
    assert "collecting" in chart({"lag": [(0, 1)]}, "lag")
    svg = chart({"lag": [(0, 0), (1000, 10)]}, "lag")
    assert "<polyline" in svg and "<svg" in svg
