"""BrokerServer.stop's cancel_all: a task that swallows a cancellation still stops."""

from __future__ import annotations

import asyncio
import contextlib

from strom.server.app import cancel_all


async def _swallows_one_cancel(stopped: list[str]) -> None:
    # What Python 3.11's wait_for does when the cancel races its inner future:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)
    try:
        await asyncio.sleep(30)
    finally:
        stopped.append("stopped")


def test_cancel_all_cancels_again_a_task_that_swallowed_the_cancel() -> None:
    async def main() -> list[str]:
        stopped: list[str] = []
        task = asyncio.create_task(_swallows_one_cancel(stopped))
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_all([task], patience_s=5), 5)
        assert task.done()
        return stopped

    assert asyncio.run(main()) == ["stopped"]
