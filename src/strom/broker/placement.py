"""Produce requests on one connection may overlap (server/connection.py): the next one starts
once every append of the previous one has its place in its partition, so that appends keep
the order the client sent them in while the commits or fsyncs of several requests are awaited
together. The connection gives a Produce handler a callback through REQUEST_PLACED; the
handler calls it once all its appends are placed, or it has finished."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

REQUEST_PLACED: ContextVar[Callable[[], None] | None] = ContextVar("request_placed",
                                                                  default=None)


class Placements:
    """Counts a request's appends as they are placed; calls `done` after the last."""

    __slots__ = ("_done", "_left")

    def __init__(self, count: int, done: Callable[[], None]) -> None:
        self._left = count
        self._done = done
        if count == 0:
            done()

    def one(self) -> Callable[[], None]:
        """The callback of one append (calling it again does nothing)."""
        called = False

        def placed() -> None:
            nonlocal called
            if not called:
                called = True
                self._left -= 1
                if self._left == 0:
                    self._done()

        return placed
