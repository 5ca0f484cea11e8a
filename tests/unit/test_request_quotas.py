"""The quota step of the request pipeline: request_percentage counts the time a handler runs,
not the time it waits; a throttled Fetch is answered empty, its bytes taken back, and a Fetch
asks for no more than the consumer's quota allows over its window (as Kafka does)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from strom.broker.handlers.fetch import fetch_response
from strom.broker.quotas import QuotaRuntime
from strom.broker.state import RequestContext
from strom.config.broker import BrokerConfig
from strom.protocol.messages import ErrorCode, ResponseBuilder, decode_response
from strom.security.quotas import CONSUMER_BYTE_RATE, QuotaConfig
from strom.security.session import Session
from strom.server.dispatch import BusyTime, throttled
from strom.storage.memory import MemoryEngine

FETCH_VERSION = 12


def test_busy_time_leaves_out_the_waits() -> None:
    async def handler() -> str:
        await asyncio.sleep(0.3)
        spin_until = time.perf_counter() + 0.05
        while time.perf_counter() < spin_until:
            pass
        await asyncio.sleep(0)
        return "answer"

    async def main() -> tuple[str, float, float]:
        started = time.perf_counter()
        timed = BusyTime(handler())
        result = await timed
        return result, timed.busy_s, time.perf_counter() - started

    result, busy_s, wall_s = asyncio.run(main())
    assert result == "answer"
    assert wall_s >= 0.35
    assert 0.05 <= busy_s < 0.2


def test_busy_time_passes_errors_and_cancellation_through() -> None:
    seen: list[str] = []

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("bad")

    async def waiting() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    async def main() -> None:
        with pytest.raises(ValueError, match="bad"):
            await BusyTime(failing())
        task = asyncio.ensure_future(_await(BusyTime(waiting())))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled inside"]


async def _await(awaitable: BusyTime) -> Any:
    return await awaitable


def runtime(rate: float) -> QuotaRuntime:
    config = BrokerConfig()
    config.set("quota.window.num", "3")
    config.set("quota.window.size.seconds", "1")
    quotas = QuotaRuntime(config, MemoryEngine(config))
    quotas.quotas = QuotaConfig({(("client-id", "reader"),): {CONSUMER_BYTE_RATE: rate}})
    return quotas


def fetch_answer(size: int) -> Any:
    b = ResponseBuilder(1, FETCH_VERSION)
    part = b.make("PartitionData", partition_index=0, error_code=ErrorCode.none,
                  high_watermark=10, last_stable_offset=10, log_start_offset=0,
                  aborted_transactions=(), preferred_read_replica=-1, records=b"x" * size)
    topic = b.make("FetchableTopicResponse", topic="t", partitions=(part,))
    return fetch_response(b, ErrorCode.none, (topic,))


def context(session: Session) -> RequestContext:
    return RequestContext("reader", "127.0.0.1", FETCH_VERSION, 7, session)


def test_a_fetch_asks_no_more_than_the_quota_allows_over_its_window() -> None:
    quotas = runtime(1000.0)
    session = Session.plaintext("127.0.0.1")
    assert quotas.fetch_window_bytes(session, "reader") == 2000  # 1000/s over (3 - 1) s
    assert quotas.fetch_window_bytes(session, "other") is None


def test_a_throttled_fetch_is_answered_empty_and_its_bytes_taken_back() -> None:
    quotas = runtime(1000.0)
    session = Session.plaintext("127.0.0.1")
    ctx = context(session)
    first = throttled(quotas, ctx, 100, fetch_answer(1500), 0.0)
    assert first is not None
    answer = decode_response(1, FETCH_VERSION, first[4:])
    assert answer.throttle_time.total_seconds() == 0 and len(answer.responses) == 1
    assert session.mute_until == 0
    second = throttled(quotas, ctx, 100, fetch_answer(1500), 0.0)
    assert second is not None
    answer = decode_response(1, FETCH_VERSION, second[4:])
    assert answer.throttle_time.total_seconds() > 0
    assert answer.error_code == ErrorCode.none and answer.responses == ()
    assert session.mute_until > time.monotonic()
    # Only the answer that was sent counts: the rate is the first answer's bytes over 2 s.
    rate = quotas._sensors[(CONSUMER_BYTE_RATE, None, "reader")].rate(time.monotonic())
    assert rate == pytest.approx(len(first) / 2.0, rel=0.05)
