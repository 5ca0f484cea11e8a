"""The event-loop lag probe: how late the loop runs a callback it was asked to run after a
sleep (a handler that blocks the loop delays every connection by as much)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

PROBE_INTERVAL_S: Final = 0.5


async def probe_loop_lag(observe: Callable[[float], None],
                         interval_s: float = PROBE_INTERVAL_S) -> None:
    """Sleeps `interval_s` again and again and calls `observe` with how much later than asked
    each sleep ended, in seconds; runs until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        observe(max(0.0, loop.time() - asked))
