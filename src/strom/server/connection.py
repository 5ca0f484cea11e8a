"""One client connection: read frames with size limits and timeouts, answer in request order.

A reader task reads ahead up to `queued.max.requests.per.connection` frames while the
connection loop handles them one at a time, as Kafka mutes a channel while a request is in
flight, with one exception: consecutive Produce requests overlap. The next starts as soon as
every append of the one before has its place in its partition (strom.broker.placement), so
that the waits for their writes (a PostgreSQL commit, an fsync) overlap and the storage can
commit them together, while appends keep the client's order. A writer task sends the answers,
always in request order; any other request waits until the answers before it are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from strom.broker.errors import ApiError
from strom.broker.handlers.sasl import raw_token
from strom.broker.placement import REQUEST_PLACED
from strom.broker.state import Broker
from strom.observability.metrics import ApiMeters, BrokerMetrics
from strom.protocol.framing import FrameError, check_frame_size, peek_header
from strom.protocol.messages import API_VERSIONS_KEY, ErrorCode, encode_response, response_type
from strom.security.session import Session
from strom.server.dispatch import PRODUCE_KEY, CloseConnection, dispatch, error_body

log = logging.getLogger(__name__)

FRAME_READ_TIMEOUT_S: Final = 60.0
# Produce requests of one connection whose answers may be outstanding at once.
MAX_OVERLAPPING_PRODUCES: Final = 32
WRITE_TIMEOUT_S: Final = 60.0
# Bytes of requests read ahead of the one being handled (one larger frame is always allowed).
READ_AHEAD_BYTES: Final = 8 * 1024 * 1024
_EOF: Final = object()
_PRODUCE_KEY_BYTES: Final = PRODUCE_KEY.to_bytes(2, "big")
_API_VERSIONS_KEY_BYTES: Final = API_VERSIONS_KEY.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_frame_bytes: int
    max_frame_bytes_before_api_versions: int
    queued_requests: int
    idle_timeout_s: float


class Connection:
    def __init__(self, broker: Broker, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, limits: ConnectionLimits,
                 session: Session | None = None, metrics: BrokerMetrics | None = None) -> None:
        self.broker = broker
        # Metrics on: when each frame still queued was read, and the meters of each Produce
        # whose answer the writer task has yet to send (both in request order).
        self.metrics = metrics
        self._read_at: deque[float] = deque()
        self._produce_meters: deque[ApiMeters] = deque()
        self.reader = reader
        self.writer = writer
        self.limits = limits
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if session is None:
            session = Session.plaintext(peer[0] if isinstance(peer, tuple) else str(peer))
        self.session = session
        self.seen_api_versions = False
        self._queued_bytes = 0
        self._room = asyncio.Event()
        self._room.set()

    def frame_limit(self) -> int:
        """The small pre-authentication limit until the client authenticated (SASL
        listeners) or sent ApiVersions (the others), the full one after."""
        if self.session.protocol.uses_sasl:
            authenticated = self.session.authenticated
        else:
            authenticated = self.seen_api_versions
        if authenticated:
            return self.limits.max_frame_bytes
        return self.limits.max_frame_bytes_before_api_versions

    async def read_frame(self) -> bytes | None:
        try:
            prefix = await asyncio.wait_for(self.reader.readexactly(4),
                                            self.limits.idle_timeout_s)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise FrameError("connection closed inside a frame size") from None
            return None
        except TimeoutError:
            raise FrameError("idle connection timed out") from None
        size = int.from_bytes(prefix, "big", signed=True)
        check_frame_size(size, self.frame_limit())
        try:
            return await asyncio.wait_for(self.reader.readexactly(size), FRAME_READ_TIMEOUT_S)
        except asyncio.IncompleteReadError:
            raise FrameError("connection closed inside a frame") from None
        except TimeoutError:
            raise FrameError("timed out reading a frame") from None

    async def read_ahead(self, queue: asyncio.Queue[object]) -> None:
        """Reads frames ahead of the handler, at most `queued_requests` frames and, beyond the
        first, READ_AHEAD_BYTES of them, so a client cannot make the broker buffer without
        bound while one slow request (a long-polling fetch) is in flight."""
        try:
            while True:
                await self._room.wait()
                frame = await self.read_frame()
                if frame is None:
                    break
                if not self.seen_api_versions and frame[:2] == _API_VERSIONS_KEY_BYTES:
                    self.seen_api_versions = True
                self._queued_bytes += len(frame)
                if self.metrics is not None:
                    self._read_at.append(time.perf_counter())
                if self._queued_bytes >= READ_AHEAD_BYTES:
                    self._room.clear()
                await queue.put(frame)
        except (FrameError, OSError) as exc:  # OSError: a reset, a TLS record error (SSLError)
            log.info("closing connection from %s: %s", self.peer, exc)
        except Exception:  # never leave the connection waiting for a reader that died
            log.exception("reading from %s failed; closing the connection", self.peer)
        except asyncio.CancelledError:
            # Never block here: a cancelled reader with a full queue would hang forever.
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_EOF)
            raise
        await queue.put(_EOF)

    def taken(self, frame: bytes) -> None:
        """The handler took `frame` off the queue: its bytes no longer count as read ahead."""
        self._queued_bytes -= len(frame)
        if self._queued_bytes < READ_AHEAD_BYTES:
            self._room.set()

    async def run(self) -> None:
        queue: asyncio.Queue[object] = asyncio.Queue(self.limits.queued_requests)
        reader_task = asyncio.create_task(self.read_ahead(queue))
        answers: asyncio.Queue[asyncio.Task[bytes | None]] = asyncio.Queue()
        writer_task = asyncio.create_task(self.write_answers(answers))
        try:
            while True:
                frame = await queue.get()
                if frame is _EOF or writer_task.done():
                    break
                assert isinstance(frame, bytes)
                self.taken(frame)
                read_at = self._read_at.popleft() if self.metrics is not None else 0.0
                muted_s = self.session.mute_until - time.monotonic()
                if muted_s > 0:  # a quota throttle: the client waits before its next request
                    await asyncio.sleep(muted_s)
                if frame[:2] == _PRODUCE_KEY_BYTES and not self.session.raw_tokens:
                    await self.start_produce(frame, answers, writer_task, read_at)
                    continue
                await answers.join()  # the answers before this one are sent
                if writer_task.done():
                    break
                await self.answer_in_turn(frame, read_at)
            if not writer_task.done():
                await answers.join()
        except CloseConnection as exc:
            log.warning("closing connection from %s: %s", self.peer, exc)
        except OSError as exc:  # a reset, a timeout, a TLS error
            log.info("connection from %s ended: %s", self.peer, exc)
        finally:
            reader_task.cancel()
            writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer_task
            while not answers.empty():
                answers.get_nowait().cancel()
            self.writer.close()
            with contextlib.suppress(OSError):  # a reset, a timeout, the TLS error it ended on
                await asyncio.wait_for(self.writer.wait_closed(), 5)

    async def answer_in_turn(self, frame: bytes, read_at: float = 0.0) -> None:
        """Answers a request that is not a Produce, all answers before it being sent; closes
        the connection after the answer if the session says so (failed authentication)."""
        meters = None
        if self.session.raw_tokens:
            response = await self.raw_token(frame)
        elif self.metrics is None:
            response = await self.answer(frame)
        else:
            meters = self.metrics.api_of(frame)
            response = await self.answer(frame, None, meters, read_at)
        if response is not None:
            started = time.perf_counter()
            self.writer.write(response)
            await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT_S)
            if meters is not None:
                meters.sent(len(response), time.perf_counter() - started)
        if self.session.close_after_response is not None:
            raise CloseConnection(self.session.close_after_response)

    async def start_produce(self, frame: bytes,
                            answers: asyncio.Queue[asyncio.Task[bytes | None]],
                            writer_task: asyncio.Task[None], read_at: float = 0.0) -> None:
        """Starts answering a Produce request; returns once its appends are placed (or it
        finished), with at most MAX_OVERLAPPING_PRODUCES answers outstanding."""
        while answers.qsize() >= MAX_OVERLAPPING_PRODUCES and not writer_task.done():
            await asyncio.sleep(0.0005)
        if writer_task.done():
            return  # closing
        placed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(_: object = None) -> None:
            if not placed.done():
                placed.set_result(None)

        if self.metrics is None:
            task = asyncio.create_task(self.answer(frame, done))
        else:
            meters = self.metrics.api_of(frame)
            self._produce_meters.append(meters)
            task = asyncio.create_task(self.answer(frame, done, meters, read_at))
        task.add_done_callback(done)
        answers.put_nowait(task)
        await placed

    async def write_answers(self, answers: asyncio.Queue[asyncio.Task[bytes | None]]) -> None:
        """Sends each answer in request order; a failure closes the connection."""
        try:
            while True:
                task = await answers.get()
                meters = (self._produce_meters.popleft() if self.metrics is not None
                          else None)
                try:
                    response = await task
                    if response is not None:
                        started = time.perf_counter()
                        self.writer.write(response)
                        await asyncio.wait_for(self.writer.drain(), WRITE_TIMEOUT_S)
                        if meters is not None:
                            meters.sent(len(response), time.perf_counter() - started)
                finally:
                    answers.task_done()
        except CloseConnection as exc:
            log.warning("closing connection from %s: %s", self.peer, exc)
        except OSError as exc:  # a reset, a timeout, a TLS error
            log.info("connection from %s ended: %s", self.peer, exc)
        self._drain_after_failure(answers)

    def _drain_after_failure(self, answers: asyncio.Queue[asyncio.Task[bytes | None]]) -> None:
        """The connection is closing: what is still queued is never answered (its appends
        go on); the reader sees the close and the loop ends."""
        self.writer.close()
        self._produce_meters.clear()
        while not answers.empty():
            answers.get_nowait()
            answers.task_done()

    async def raw_token(self, frame: bytes) -> bytes | None:
        """A SASL token after a SaslHandshake v0; its answer framed the same way."""
        answer = await raw_token(self.broker, self.session, frame)
        if answer is None:
            return None
        return len(answer).to_bytes(4, "big") + answer

    async def answer(self, frame: bytes, placed: Callable[[], None] | None = None,
                     meters: ApiMeters | None = None, read_at: float = 0.0) -> bytes | None:
        if placed is not None:
            REQUEST_PLACED.set(placed)  # this task's own context
        if meters is not None:
            return await self.answer_metered(frame, meters, read_at)
        return await self.dispatch_frame(frame, meters)

    async def answer_metered(self, frame: bytes, meters: ApiMeters, read_at: float
                             ) -> bytes | None:
        """`answer` with its counts and times: queued since `read_at`, then handled."""
        started = time.perf_counter()
        try:
            return await self.dispatch_frame(frame, meters)
        finally:
            meters.handled(len(frame) + 4, started - read_at, time.perf_counter() - started)

    async def dispatch_frame(self, frame: bytes, meters: ApiMeters | None) -> bytes | None:
        """The answer to `frame`, or an error answer (or CloseConnection) if handling failed;
        error codes counted in `meters`."""
        try:
            return await dispatch(self.broker, memoryview(frame), self.session, meters)
        except FrameError as exc:
            raise CloseConnection(str(exc)) from None
        except CloseConnection:
            raise
        except Exception as exc:
            api_key, version, correlation_id = peek_header(frame)
            code = ErrorCode.unknown_server_error
            if isinstance(exc, ApiError):  # the whole request's answer (a coordinator's
                code = exc.code            # write failed: NOT_COORDINATOR), logged where raised
                log.debug("API %d v%d from %s: %s", api_key, version, self.peer, exc)
            else:
                log.exception("error handling API %d v%d from %s", api_key, version, self.peer)
            if meters is not None:
                meters.error(code)
            if api_key == PRODUCE_KEY:
                # An acks=0 producer expects no answer; Kafka closes the connection instead.
                raise CloseConnection("Produce failed") from None
            try:
                cls = response_type(api_key, version)
                return encode_response(api_key, version, correlation_id,
                                       error_body(cls, code))
            except Exception:
                log.exception("cannot encode an error answer for API %d v%d", api_key, version)
                raise CloseConnection("no error answer") from None
