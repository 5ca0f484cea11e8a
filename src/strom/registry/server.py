"""The registry's server: the state kept from `_schemas`, the primary's writes, the election
and the forwarding of writes from followers (the HTTP routes are in strom.registry.rest).

Every instance reads `_schemas` from the beginning (strom.registry.kafka_io.SchemasReader) and
applies each record to its RegistryState on the event loop, so the state is only touched on
the loop. The instance the election makes primary opens the transactional writer (fencing any
older primary), reads `_schemas` to its end, and then serves writes one at a time: plan the
records from the state, append them in one transaction, wait until its own reader has read
past them (read-your-writes), answer. Followers forward writes to the primary's advertised URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from strom.registry.errors import RegistryError
from strom.registry.kafka_io import (
    Election,
    FencedError,
    RecordBatch,
    SchemasReader,
    SchemasWriter,
    StoreError,
    check_credentials,
    ensure_topic,
)
from strom.registry.records import Record
from strom.registry.state import RegistryState

log = logging.getLogger("strom.registry")

R = TypeVar("R")

# Confluent's server-side error codes
STORE_ERROR: Final = 50001
OPERATION_TIMEOUT: Final = 50002
FORWARDING_ERROR: Final = 50003
UNKNOWN_LEADER: Final = 50004
LOGIN_CACHE_S: Final = 60.0
FORWARDED_HEADER: Final = "X-Strom-Registry-Forwarded"
OFFSET_HEADER: Final = "X-Strom-Registry-Offset"  # the primary's read position after a write


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How the registry reaches the cluster, where it keeps its schemas, who may use it."""

    bootstrap: str
    client_settings: dict[str, str] = field(default_factory=dict)
    topic: str = "_schemas"
    group_id: str = "schema-registry"
    advertised_url: str | None = None  # default: the listener's http(s)://host:port
    users: dict[str, str] | None = None  # HTTP basic auth: username -> password
    sasl_login: bool = False  # HTTP basic auth checked as SASL credentials by the cluster
    tls_cert: Path | None = None  # PEM certificate chain: serve HTTPS
    tls_key: Path | None = None
    tls_ca: Path | None = None  # trusted when forwarding to a primary over HTTPS
    session_timeout_ms: int = 10000
    leader_eligibility: bool = True  # False: never primary (Confluent's leader.eligibility)
    request_timeout: float = 30.0

    @property
    def auth_required(self) -> bool:
        return self.users is not None or self.sasl_login

    @property
    def election_topic(self) -> str:
        return f"{self.topic}_election"

    @property
    def transactional_id(self) -> str:
        return f"{self.group_id}-writer"

    def client(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap, **self.client_settings}

    def server_ssl(self) -> ssl.SSLContext | None:
        if self.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context

    def client_ssl(self) -> ssl.SSLContext | bool:
        if self.tls_ca is None:
            return True
        return ssl.create_default_context(cafile=str(self.tls_ca))


class Registry:
    """One registry instance: state, reader, election, writer, forwarding."""

    def __init__(self, settings: RegistrySettings, url: str) -> None:
        self.settings = settings
        self.url = settings.advertised_url or url
        self.state = RegistryState()
        self.position = 0  # the next `_schemas` offset to read
        self.ready = asyncio.Event()  # read `_schemas` to its end once
        self.elected = False  # the election made this instance the primary
        self.primary_ready = asyncio.Event()  # ... and its writer is open and caught up
        self.writer: SchemasWriter | None = None
        self.write_lock = asyncio.Lock()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._executor = ThreadPoolExecutor(4, thread_name_prefix="strom-registry")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: SchemasReader | None = None
        self._election: Election | None = None
        self._promotion: asyncio.Task[None] | None = None
        self._primary_url: tuple[float, str | None] = (0.0, None)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._logins: dict[tuple[str, bytes], float] = {}  # SASL logins the cluster accepted

    # ---- life cycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        client = self.settings.client()
        await self.call(ensure_topic, client, self.settings.topic)
        await self.call(ensure_topic, client, self.settings.election_topic)
        self._reader = SchemasReader(client, self.settings.topic, self._delivered)
        self._reader.start()
        end = await self.call(self._reader.end_offset)
        await self.wait_position(end, timeout=max(60.0, self.settings.request_timeout))
        self.ready.set()
        log.info("registry read %s to offset %d: %d subjects", self.settings.topic,
                 self.position, len(self.state.subjects()))
        self._election = Election(client, self.settings.election_topic, self.settings.group_id,
                                  self.url, self._role_changed,
                                  self.settings.session_timeout_ms)
        if self.settings.leader_eligibility:
            self._election.start()

    async def stop(self) -> None:
        if self._promotion is not None:
            self._promotion.cancel()
        if self._election is not None and self.settings.leader_eligibility:
            await self.call(self._election.stop)
        if self.writer is not None:
            await self.call(self.writer.close)
        if self._reader is not None:
            await self.call(self._reader.stop)
        self._executor.shutdown(wait=False)

    async def call(self, fn: Callable[..., R], *args: Any) -> R:
        """A blocking Kafka call, in the registry's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # ---- reading `_schemas`

    def _delivered(self, batch: RecordBatch, position: int) -> None:
        """From the reader's thread: a batch to apply on the loop."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed
            self._loop.call_soon_threadsafe(self._apply, batch, position)

    def _apply(self, batch: RecordBatch, position: int) -> None:
        for key, value, offset in batch:
            if key is None:
                self.state.skipped_records += 1
            else:
                self.state.apply_encoded(key, value)
            self.position = max(self.position, offset + 1)
        self.position = max(self.position, position)
        still = []
        for target, future in self._waiters:
            if target <= self.position:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((target, future))
        self._waiters = still

    async def wait_position(self, target: int, timeout: float | None = None) -> None:
        """Wait until the reader has read up to `target` (exclusive); 50002 on timeout."""
        if self.position >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        try:
            await asyncio.wait_for(future, timeout or self.settings.request_timeout)
        except TimeoutError:
            raise RegistryError(OPERATION_TIMEOUT,
                                f"Timed out waiting to read {self.settings.topic} up to offset "
                                f"{target} (read up to {self.position})") from None

    # ---- the election

    def _role_changed(self, role: str) -> None:
        """From the election thread: "primary", "follower" (assigned nothing) or "paused"
        (partitions revoked for a rebalance)."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._set_role, role)

    def _set_role(self, role: str) -> None:
        self._primary_url = (0.0, None)
        if role == "paused":  # a rebalance: no writes until the next assignment
            self.primary_ready.clear()
            return
        self.elected = role == "primary"
        log.info("registry %s is %s", self.url, role)
        if self.elected:
            if self.writer is not None and not self.writer.fenced:
                self.primary_ready.set()  # still the primary, nobody held it in between
            elif self._promotion is None or self._promotion.done():
                self._promotion = asyncio.get_running_loop().create_task(self._promote())
            return
        self.primary_ready.clear()
        if self._promotion is not None:
            self._promotion.cancel()
        writer, self.writer = self.writer, None
        if writer is not None:
            self._spawn(self.call(writer.close))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def still_elected(self) -> bool:
        return self.elected

    async def _promote(self) -> None:
        """Open the writer (fencing the previous primary), then read `_schemas` to its end."""
        assert self._reader is not None
        while self.elected:
            writer = None
            try:
                writer = await self.call(SchemasWriter, self.settings.client(),
                                         self.settings.topic, self.settings.transactional_id,
                                         self.settings.request_timeout)
                end = await self.call(self._reader.end_offset)
                await self.wait_position(end)
            except (StoreError, RegistryError) as exc:
                log.warning("registry %s cannot become the primary yet: %s", self.url, exc)
                if writer is not None:
                    await self.call(writer.close)
                await asyncio.sleep(1.0)
                continue
            except asyncio.CancelledError:
                if writer is not None:
                    self._spawn(self.call(writer.close))
                raise
            if not self.still_elected():  # demoted while promoting
                await self.call(writer.close)
                return
            self.writer = writer
            self.primary_ready.set()
            log.info("registry %s is the primary (read %s to %d)", self.url,
                     self.settings.topic, self.position)
            return

    # ---- writes

    async def write(self, plan: Callable[[RegistryState], tuple[R, Sequence[Record]]],
                    forwarded: bool) -> tuple[R, int]:
        """Plan and write as the primary: the answer and the offset `_schemas` was read up to
        once written; followers raise NotPrimary (the caller forwards)."""
        await self._until_primary(forwarded)
        async with self.write_lock:  # one write at a time: each plans against the last one
            writer = await self._until_primary(forwarded)
            result, records = plan(self.state)
            if records:
                offset = await self._append(writer, records)
                await self.wait_position(offset + 1)
            return result, self.position

    async def _until_primary(self, forwarded: bool) -> SchemasWriter:
        """The writer, once this instance is the primary and caught up; NotPrimary (or 50004
        for a forwarded request: no second hop) when it is not the primary."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout
        while not self.primary_ready.is_set() or self.writer is None:
            if not self.still_elected():
                if forwarded:
                    raise RegistryError(UNKNOWN_LEADER, "Leader not known.")
                raise NotPrimary()
            if loop.time() > deadline:  # promoting, or a rebalance, for too long
                raise RegistryError(UNKNOWN_LEADER, "Leader not known.")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.primary_ready.wait(), 0.2)
        return self.writer

    async def _append(self, writer: SchemasWriter, records: Sequence[Record]) -> int:
        try:
            return await self.call(writer.write, [r.encode() for r in records])
        except FencedError as exc:
            self.primary_ready.clear()  # a newer primary fenced this writer
            if self.writer is writer:
                self.writer = None
                self._spawn(self.call(writer.close))
            if self.elected and (self._promotion is None or self._promotion.done()):
                self._promotion = asyncio.get_running_loop().create_task(self._promote())
            raise RegistryError(STORE_ERROR, f"Error while registering: {exc} (another "
                                             "instance is the primary now)") from None
        except StoreError as exc:
            raise RegistryError(STORE_ERROR,
                                f"Error in the backend data store: {exc}") from None

    async def sasl_login(self, user: str, password: str) -> bool:
        """Whether the cluster accepts `user` and `password` as SASL credentials (the
        settings' -X security.protocol and sasl.mechanism); a success is remembered a minute
        (by a digest of the password)."""
        key = (user, hashlib.sha256(password.encode()).digest())
        now = time.monotonic()
        if self._logins.get(key, 0.0) > now:
            return True
        client = {**self.settings.client(), "sasl.username": user, "sasl.password": password}
        accepted = await self.call(check_credentials, client)
        if accepted:
            if len(self._logins) > 10_000:
                self._logins.clear()
            self._logins[key] = now + LOGIN_CACHE_S
        return accepted

    async def primary_url(self, refresh: bool = False) -> str | None:
        """The primary's advertised URL (DescribeGroups, cached a second)."""
        assert self._election is not None
        checked, url = self._primary_url
        if refresh or time.monotonic() - checked > 1.0:
            try:
                url = await self.call(self._election.primary_url)
            except StoreError as exc:
                log.warning("registry: %s", exc)
                url = None
            self._primary_url = (time.monotonic(), url)
        return url


class NotPrimary(Exception):
    """This instance is not the primary: forward the write."""


def read_users(path: Path) -> dict[str, str]:
    """HTTP basic users from a file in the format of Jetty's PropertyFileLoginModule (what
    Confluent's `basic.auth.credentials.source=...` JAAS setup reads): `username: password`
    lines, optionally followed by `,role...` (roles are ignored), `#` comments."""
    users: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"{path}:{number}: expected 'username: password[,role...]'")
        users[name.strip()] = rest.strip().split(",", 1)[0].strip()
    return users
