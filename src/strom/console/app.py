"""The console's aiohttp application: pages, live fragments, auth, CSRF and the poller.

Pages are rendered on the server; each live region of a page names a fragment URL in its
`data-live` attribute and static/console.js replaces the region with a fresh fragment every
few seconds, so pages update without reloads. Blocking Kafka calls run in a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode

import click
from aiohttp import web
from confluent_kafka import KafkaException

from strom.cli.common import ClientOptions, CliError, fail
from strom.console import kafka
from strom.console.pages import Pages
from strom.console.quotas import QuotaPages
from strom.console.security import SecurityPages
from strom.console.session import SESSION_KEY, Session
from strom.coordinator.group.lag_health import Commit, GroupHealth, HealthRules, LagHistory
from strom.loop_thread import LoopThread, start_loop_thread

STATIC: Final = Path(__file__).parent / "static"
COOKIE: Final = "strom_console"
HISTORY: Final = 360  # samples kept per chart (30 minutes at the default 5 s)
PUBLIC: Final = ("/login", "/static/")
SESSION_IDLE_S: Final = 12 * 3600.0  # a login unused this long must log in again
MAX_SESSIONS: Final = 10_000

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """How the console reaches the cluster and who may use it."""

    bootstrap: str
    client_settings: dict[str, str] = field(default_factory=dict)
    password: str | None = None  # a login form for this password
    sasl: bool = False  # the login's username/password are the Kafka clients' SASL credentials
    read_only: bool = False
    poll_interval: float = 5.0
    request_timeout: float = 5.0

    @property
    def login_required(self) -> bool:
        return self.password is not None or self.sasl


def growth(previous: Mapping[tuple[str, int], int],
           current: Mapping[tuple[str, int], int]) -> int:
    """How much the partitions grew between two samples: the sum of each partition's increase
    (a partition new since the last sample grew from 0; one that shrank, by retention or
    deletion, or that went away, did not grow)."""
    return sum(max(0, value - previous.get(key, 0)) for key, value in current.items())


@dataclass(slots=True)
class Rate:
    """A per-second rate over time from successive samples of per-partition totals: end
    offsets (messages in/s) or sizes on storage (bytes in/s)."""

    points: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    last: tuple[float, Mapping[tuple[str, int], int]] | None = None

    def record(self, now_ms: float, totals: Mapping[tuple[str, int], int]) -> None:
        if self.last is not None:
            then, previous = self.last
            if now_ms <= then:
                return
            self.points.append((now_ms, growth(previous, totals) * 1000 / (now_ms - then)))
        self.last = (now_ms, dict(totals))


@dataclass(slots=True)
class History:
    """What the poller keeps: lag per group partition, commit windows, throughput."""

    lag: dict[str, dict[tuple[str, int], deque[tuple[float, float]]]] = field(
        default_factory=dict)
    health: LagHistory = field(default_factory=lambda: LagHistory(HealthRules()))
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    messages: Rate = field(default_factory=Rate)  # messages in/s, from end offsets
    bytes: Rate = field(default_factory=Rate)  # bytes in/s, from sizes on storage

    def group_health(self, group: str) -> GroupHealth:
        return self.health.evaluate(group, self.ends, int(time.time() * 1000))


class Console:
    """The application's state: settings, sessions, the poller's history."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.secret = secrets.token_bytes(32)
        self.sessions: dict[str, Session] = {}
        self.history = History()
        self.poll_client: ClientOptions | None = (
            None if settings.sasl else self.client_options({}))
        self.pages = Pages(self)

    def client_options(self, extra: dict[str, str]) -> ClientOptions:
        return ClientOptions(self.settings.bootstrap, {**self.settings.client_settings, **extra},
                             self.settings.request_timeout)

    # --- sessions -------------------------------------------------------------------------

    def sign(self, sid: str) -> str:
        mac = hmac.new(self.secret, sid.encode(), hashlib.sha256).hexdigest()
        return f"{sid}.{mac}"

    def session_of(self, request: web.Request) -> Session | None:
        sid, _, mac = request.cookies.get(COOKIE, "").partition(".")
        if not sid or not hmac.compare_digest(self.sign(sid), f"{sid}.{mac}"):
            return None
        session = self.sessions.get(sid)
        if session is not None and session.expired(SESSION_IDLE_S):
            del self.sessions[sid]
            return None
        return session

    def new_session(self, response: web.StreamResponse, request: web.Request,
                    session: Session) -> None:
        sid = secrets.token_urlsafe(24)
        if len(self.sessions) >= MAX_SESSIONS:  # the least recently created goes
            self.sessions.pop(next(iter(self.sessions)))
        self.sessions[sid] = session
        response.set_cookie(COOKIE, self.sign(sid), httponly=True, samesite="Strict",
                            secure=request.secure, path="/")

    async def call(self, func: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    # --- the poller -----------------------------------------------------------------------

    def sample(self, client: ClientOptions) -> None:
        """One sample: every group's committed offsets and lag, and the cluster's rates:
        messages in/s from the growth of the end offsets, bytes in/s from the growth of the
        partitions' sizes on storage (DescribeLogDirs; none where the cluster does not tell)."""
        admin = kafka.admin_for(client)
        now = time.time() * 1000
        ends = kafka.end_offsets_all(admin, client)
        self.history.messages.record(now, ends)
        sizes = kafka.sizes_on_storage(client)
        if sizes:
            self.history.bytes.record(now, sizes)
        self.history.ends = ends
        for row in kafka.list_groups(admin, client):
            committed = kafka.committed_offsets(admin, client, row.group_id)
            series = self.history.lag.setdefault(row.group_id, {})
            for tp, offset in committed.items():
                end = ends.get(tp)
                if end is None:
                    continue
                series.setdefault(tp, deque(maxlen=HISTORY)).append(
                    (now, float(end - (offset or 0))))
                if offset is not None:
                    self.history.health.record(row.group_id, tp[0], tp[1],
                                               Commit(offset, int(now), end))
            self.history.health.keep(row.group_id, [tp for tp, o in committed.items()
                                                    if o is not None])

    async def poll_forever(self) -> None:
        while True:
            client = self.poll_client
            if client is not None:
                with contextlib.suppress(click.ClickException, Exception):
                    await self.call(self.sample, client)
            await asyncio.sleep(self.settings.poll_interval)


# --- middleware ---------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def console_of(request: web.Request) -> Console:
    value: Console = request.app[CONSOLE_KEY]
    return value


async def check_post(console: Console, request: web.Request, session: Session) -> None:
    """A change: refused when read-only, and without the session's CSRF token."""
    if console.settings.read_only and request.path != "/logout":
        raise web.HTTPForbidden(text="the console is read-only")
    form = await request.post()
    if not hmac.compare_digest(str(form.get("csrf", "")), session.csrf):
        raise web.HTTPForbidden(text="missing or wrong CSRF token (reload the page)")


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions (a login when required), CSRF on every POST, read-only refusals."""
    console = console_of(request)
    if request.path.startswith(PUBLIC):
        return await handler(request)
    session = console.session_of(request)
    fresh = None
    if session is None:
        if console.settings.login_required:
            if request.method == "GET":
                raise web.HTTPFound("/login?" + urlencode({"next": request.path_qs}))
            raise web.HTTPForbidden(text="log in first")
        session = fresh = Session("anonymous", console.client_options({}))
    request[SESSION_KEY] = session
    if request.method == "POST":
        await check_post(console, request, session)
    try:
        response = await handler(request)
    except click.ClickException as exc:
        response = console.pages.error(request, exc.message)
    except KafkaException as exc:  # a client call the helpers do not translate
        response = console.pages.error(request, fail(exc, session.client).message)
    if fresh is not None:
        console.new_session(response, request, fresh)
    return response


CONSOLE_KEY: Final = web.AppKey("console", Console)


# --- auth handlers ------------------------------------------------------------------------

async def login_page(request: web.Request) -> web.StreamResponse:
    return console_of(request).pages.login(request, "")


async def login(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    user = str(form.get("username", "")).strip() or "admin"
    password = str(form.get("password", ""))
    target = str(form.get("next", "/")) or "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    if console.settings.sasl:
        client = console.client_options({"sasl.username": user, "sasl.password": password})
        try:
            await console.call(kafka.cluster_info, kafka.admin_for(client), client)
        except click.ClickException:
            await asyncio.sleep(0.5)
            return console.pages.login(request, "the cluster refused these credentials",
                                       status=401)
        console.poll_client = client
    else:
        expected = console.settings.password or ""
        if not hmac.compare_digest(password.encode(), expected.encode()):
            await asyncio.sleep(0.5)
            return console.pages.login(request, "wrong password", status=401)
        client = console.client_options({})
    response = web.HTTPFound(target)
    console.new_session(response, request, Session(user, client))
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    sid = request.cookies.get(COOKIE, "").partition(".")[0]
    console.sessions.pop(sid, None)
    response = web.HTTPFound("/login" if console.settings.login_required else "/")
    response.del_cookie(COOKIE, path="/")
    raise response


def redirect(path: str, message: str = "", error: bool = False) -> web.HTTPFound:
    if message:
        path += "?" + urlencode({"error" if error else "msg": message})
    return web.HTTPFound(path)


def session_client(request: web.Request) -> ClientOptions:
    return request[SESSION_KEY].client


def topic_url(name: str) -> str:
    return "/topics/" + quote(name, safe="")


def group_url(name: str) -> str:
    return "/groups/" + quote(name, safe="")


# --- mutating handlers --------------------------------------------------------------------

async def create_topic(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    client = session_client(request)
    form = await request.post()
    name = str(form.get("name", "")).strip()
    try:
        partitions = int(str(form.get("partitions", "1")))
        replication = int(str(form.get("replication", "1")))
    except ValueError:
        raise CliError("partitions and replication factor must be numbers") from None
    config = {}
    for line in str(form.get("config", "")).splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            config[key.strip()] = value.strip()
    if not name:
        raise CliError("a topic needs a name")
    await console.call(kafka.create_topic, kafka.admin_for(client), client, name, partitions,
                       replication, config)
    raise redirect("/topics", f"created topic {name}")


async def delete_topic(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    client = session_client(request)
    name = request.match_info["topic"]
    await console.call(kafka.delete_topic, kafka.admin_for(client), client, name)
    raise redirect("/topics", f"deleted topic {name}")


async def alter_config(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    client = session_client(request)
    name = request.match_info["topic"]
    form = await request.post()
    key = str(form.get("key", "")).strip()
    value: str | None = str(form.get("value", ""))
    if form.get("reset"):
        value = None
    if not key:
        raise CliError("which config? (a key is required)")
    await console.call(kafka.alter_config, kafka.admin_for(client), client, name, key, value)
    raise redirect(topic_url(name), f"{key} of {name} is now "
                   f"{'its default' if value is None else value}")


async def produce(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    client = session_client(request)
    name = request.match_info["topic"]
    form = await request.post()
    partition_text = str(form.get("partition", "")).strip()
    key = str(form.get("key", ""))
    headers = []
    for line in str(form.get("headers", "")).splitlines():
        hkey, sep, hvalue = line.partition("=")
        if sep and hkey.strip():
            headers.append((hkey.strip(), hvalue))
    try:
        partition = int(partition_text) if partition_text else None
    except ValueError:
        raise CliError(f"{partition_text!r} is not a partition number") from None
    p, offset = await console.call(kafka.produce, client, name, partition, key or None,
                                   str(form.get("value", "")), headers)
    raise redirect(topic_url(name), f"produced to partition {p} at offset {offset}")


def parse_target(form: Any) -> kafka.Target:
    kind = str(form.get("to", "earliest"))
    text = str(form.get("value", "")).strip()
    if kind in ("earliest", "latest"):
        return kafka.Target(kind)
    if kind == "offset" and text.isdigit():
        return kafka.Target("offset", int(text))
    if kind == "shift":
        with contextlib.suppress(ValueError):
            return kafka.Target("shift", int(text))
    if kind == "timestamp":
        ms = parse_time(text)
        if ms is not None:
            return kafka.Target("timestamp", ms)
    raise CliError(f"{text!r} is not a valid value for a reset to {kind}")


def parse_time(text: str) -> int | None:
    """Milliseconds since the epoch, or an ISO 8601 date-time (local time without a zone)."""
    from datetime import datetime

    if text.isdigit():
        return int(text)
    try:
        return max(0, int(datetime.fromisoformat(text).timestamp() * 1000))
    except ValueError:
        return None


async def reset_offsets(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    client = session_client(request)
    group = request.match_info["group"]
    form = await request.post()
    target = parse_target(form)
    topic = str(form.get("topic", "")).strip() or None
    admin = kafka.admin_for(client)
    resets = await console.call(kafka.reset_plan, admin, client, group, target, topic)
    if form.get("apply") != "1":
        state = await console.call(kafka.group_state, admin, client, group)
        return console.pages.reset_preview(request, group, resets, form,
                                           kafka.state_name(state))
    await console.call(kafka.reset_apply, admin, client, group, resets)
    raise redirect(group_url(group), f"committed {len(resets)} offset(s) for group {group}")


# --- the application ----------------------------------------------------------------------

def build_app(settings: ConsoleSettings, poll: bool = True) -> web.Application:
    console = Console(settings)
    app = web.Application(middlewares=[security], client_max_size=4 * 1024 * 1024)
    app[CONSOLE_KEY] = console
    pages = console.pages
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", pages.home)
    app.router.add_get("/cluster", pages.cluster)
    app.router.add_get("/cluster/live", pages.cluster_live)
    app.router.add_get("/topics", pages.topics)
    app.router.add_get("/topics/live", pages.topics_live)
    app.router.add_post("/topics", create_topic)
    app.router.add_get("/topics/{topic}", pages.topic)
    app.router.add_get("/topics/{topic}/live", pages.topic_live)
    app.router.add_get("/topics/{topic}/messages", pages.messages_json)
    app.router.add_post("/topics/{topic}/delete", delete_topic)
    app.router.add_post("/topics/{topic}/config", alter_config)
    app.router.add_post("/topics/{topic}/produce", produce)
    app.router.add_get("/groups", pages.groups)
    app.router.add_get("/groups/live", pages.groups_live)
    app.router.add_get("/groups/{group}", pages.group)
    app.router.add_get("/groups/{group}/live", pages.group_live)
    app.router.add_get("/groups/{group}/lag", pages.group_json)
    app.router.add_post("/groups/{group}/reset", reset_offsets)
    security_pages = SecurityPages(pages)
    app.router.add_get("/acls", security_pages.acls)
    app.router.add_post("/acls", security_pages.add_acl)
    app.router.add_post("/acls/delete", security_pages.delete_acl)
    app.router.add_get("/users", security_pages.users)
    app.router.add_post("/users", security_pages.set_user)
    app.router.add_post("/users/delete", security_pages.delete_user)
    quota_pages = QuotaPages(pages)
    app.router.add_get("/quotas", quota_pages.quotas)
    app.router.add_post("/quotas", quota_pages.set_quota)
    app.router.add_post("/quotas/delete", quota_pages.delete_quota)
    app.router.add_static("/static/", STATIC, append_version=False)
    if poll:
        async def poller(app: web.Application) -> Any:
            task = asyncio.create_task(console.poll_forever())
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(poller)
    return app


@dataclass(slots=True)
class RunningConsole:
    """A console served by a thread of its own (tests, `strom serve --console`)."""

    url: str
    port: int
    _served: LoopThread[tuple[web.AppRunner, int]]

    def stop(self) -> None:
        self._served.stop(self._served.value[0], cleanup_timeout_s=10)


def start_in_thread(settings: ConsoleSettings, host: str = "127.0.0.1",
                    port: int = 0) -> RunningConsole:
    """Starts the console on its own event loop in a daemon thread; returns once it listens."""

    async def start() -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(build_app(settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        return runner, runner.addresses[0][1]

    served = start_loop_thread(start, "strom-console", timeout_s=30)
    bound = served.value[1]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    return RunningConsole(f"http://{shown}:{bound}", bound, served)
