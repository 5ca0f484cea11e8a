"""The frame every workload client runs in: a thread with a name the history uses, a stop
flag, a record of the call it is in and since when (so a supervisor can see a client stuck in
librdkafka past any timeout, which happens: confluentinc/librdkafka#5511, #5456, and replace
it), and the shared context (history recorder, bootstrap servers, counters).

A worker is one client instance: its history name is `slot.generation` (e.g. `idem0.2`), so a
replacement is a different producer as far as the checker is concerned (an idempotent
producer's order holds per instance, not across instances). An abandoned worker records
nothing more: leaving an answer out only weakens what the checker may conclude, while an
answer recorded after its replacement's would put the history out of order.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from strom.testing.history import Event, Note
from strom.testing.history_jsonl import HistoryRecorder

SOCKET_TIMEOUT_MS: Final = 10_000
# librdkafka's own log lines (connection refused while a broker is down, and so on) go here
# rather than to stderr; fault_run writes them to clients.log in its work directory.
CLIENT_LOG: Final = logging.getLogger("strom.testing.clients")


class WorkloadCounters:
    """Named counts the workload keeps as it goes (progress lines); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass
class WorkloadContext:
    """What every worker shares."""

    recorder: HistoryRecorder
    bootstrap_servers: str
    client_settings: Mapping[str, Any] = field(default_factory=dict)
    counters: WorkloadCounters = field(default_factory=WorkloadCounters)

    def client_config(self, client_id: str, **settings: Any) -> dict[str, Any]:
        """librdkafka settings: the common ones, `settings`, then the context's overrides.
        `client_id` is the history's name of the client, so that librdkafka's log lines
        (`ctp0.1#producer-7`) and the brokers' requests say which worker they belong to."""
        return {"bootstrap.servers": self.bootstrap_servers, "client.id": client_id,
                "socket.timeout.ms": SOCKET_TIMEOUT_MS, "reconnect.backoff.max.ms": 1000,
                "logger": CLIENT_LOG, **settings, **self.client_settings}


class Worker(ABC):
    """A workload client on its own thread; subclasses implement `run()` (loop while
    `running`) and `close()` (release the client, called on the way out)."""

    def __init__(self, ctx: WorkloadContext, slot: str, generation: int) -> None:
        self.ctx = ctx
        self.slot = slot
        self.generation = generation
        self.name = f"{slot}.{generation}"
        self.abandoned = False
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._busy: tuple[str, float] | None = None
        self._thread = threading.Thread(target=self._main, name=f"workload-{self.name}",
                                        daemon=True)

    # -- control, from any thread ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> bool:
        """Waits for the thread to end; True if it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def running(self) -> bool:
        """Whether the worker should go on (not stopped, not abandoned)."""
        return not self._stop.is_set() and not self.abandoned

    def stuck(self) -> tuple[str, float] | None:
        """The call the worker is in and for how many seconds, or None between calls."""
        busy = self._busy
        return None if busy is None else (busy[0], time.monotonic() - busy[1])

    def abandon(self) -> None:
        """Gives the worker up (it is stuck): it records nothing more; `on_abandon` records
        what its call leaves unsettled."""
        self.on_abandon()
        self.abandoned = True
        self._stop.set()

    # -- for subclasses --------------------------------------------------------------------

    @abstractmethod
    def run(self) -> None:
        """The client's loop: runs while `running`."""

    @abstractmethod
    def close(self) -> None:
        """Releases the worker's clients (after run, also when it failed)."""

    def on_abandon(self) -> None:
        """Notes the call the worker is stuck in; subclasses also record what that call
        leaves unsettled (e.g. a transaction's commit)."""
        stuck = self.stuck()
        self.record(Note(text=f"workload: {self.name} abandoned in "
                              f"{stuck[0] if stuck else 'no call'}"))

    def record(self, event: Event) -> None:
        if not self.abandoned:
            self.ctx.recorder.record(event)

    @contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """Marks the worker as inside `what` (a client call that may hang)."""
        self._busy = (what, time.monotonic())
        try:
            yield
        finally:
            self._busy = None

    def sleep(self, seconds: float) -> None:
        """Sleeps, waking at once when the worker is stopped."""
        if seconds > 0:
            self._stop.wait(seconds)

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # reported through the history and `error`
            self.error = exc
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.record(Note(text=f"workload: {self.name} failed: {exc!r} at "
                                  f"{where.filename}:{where.lineno}"))
        finally:
            if not self.abandoned:
                self._close()

    def _close(self) -> None:
        try:
            self.close()
        except Exception as exc:  # reported like a failure of run()
            self.error = self.error or exc
            self.record(Note(text=f"workload: {self.name} failed to close: {exc!r}"))


class Pacer:
    """Spaces calls `1 / rate` seconds apart on average (catching up after a stall, at most
    `burst` calls at once)."""

    def __init__(self, rate_per_s: float, burst: int = 100) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate must be positive, not {rate_per_s}")
        self.interval_s = 1.0 / rate_per_s
        self.burst = burst
        self._next = time.monotonic()

    def delay_s(self) -> float:
        """Seconds to wait before the next call (0: go now); books the call."""
        now = time.monotonic()
        self._next = max(self._next, now - self.burst * self.interval_s)
        wait = self._next - now
        self._next += self.interval_s
        return max(0.0, wait)
