"""An aiohttp server on an event loop of its own, in a daemon thread: how the web console and
the schema registry run inside another program (tests, `strom serve --console/--registry`),
whose own loop they must not share."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiohttp import web

T = TypeVar("T")


@dataclass(slots=True)
class LoopThread(Generic[T]):
    """What `start` returned, and the loop and thread serving it."""

    value: T
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    def stop(self, runner: web.AppRunner, cleanup_timeout_s: float) -> None:
        """Cleans `runner` up on the loop, then stops the loop and joins the thread."""
        if not self.thread.is_alive() or self.loop.is_closed():
            return  # stopped already
        future = asyncio.run_coroutine_threadsafe(runner.cleanup(), self.loop)
        with contextlib.suppress(Exception):
            future.result(timeout=cleanup_timeout_s)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def start_loop_thread(start: Callable[[], Coroutine[Any, Any, T]], name: str,
                      timeout_s: float) -> LoopThread[T]:
    """Runs `start()` on a new event loop in a daemon thread named `name` and keeps the loop
    running; returns once `start()` returned, raising what it raised."""
    loop = asyncio.new_event_loop()
    outcome: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            outcome["value"] = loop.run_until_complete(start())
        except BaseException as exc:
            outcome["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not started.wait(timeout_s):
        raise TimeoutError(f"{name} did not start within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return LoopThread(outcome["value"], loop, thread)
