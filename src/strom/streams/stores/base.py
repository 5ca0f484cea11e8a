"""What the stores have in common: a name, serdes, a bytes engine, and the lifecycle a task
drives (init, flush, close), with each change written to the store's changelog topic when
logging is on; and what their builders have in common: making the engine of one task's store
and the serdes it gets when it was given none."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from strom.streams.serdes import BYTES, Serde
from strom.streams.stores.api import (
    BytesEngine,
    EngineFactory,
    StoreContext,
    make_engine,
    serialized,
)
from strom.streams.stores.memory import MemoryEngine


class EngineStore:
    """A store's name, serdes and engine, and the part of the store lifecycle that does not
    depend on what it keeps (its subclasses add reads, writes and `restore`)."""

    def __init__(self, name: str, key_serde: Serde[Any], value_serde: Serde[Any],
                 engine: BytesEngine, *, logging: bool = True, persistent: bool = False) -> None:
        self._name = name
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.engine = engine
        self.logging = logging
        self._persistent = persistent
        self._context: StoreContext | None = None
        self._changelog = ""

    @property
    def name(self) -> str:
        return self._name

    @property
    def persistent(self) -> bool:
        return self._persistent

    def init(self, context: StoreContext) -> None:
        self._context = context
        self._changelog = context.changelog_topic(self._name) if self.logging else ""

    def _key(self, key: Any) -> bytes:
        return serialized(self.key_serde, self._name, key)

    def _log(self, key: bytes, value: bytes | None, timestamp: int) -> None:
        """Writes one change to the changelog (if the store logs and has been initialized)."""
        if self._changelog and self._context is not None:
            self._context.log_change(self._changelog, key, value, timestamp)

    def approximate_num_entries(self) -> int:
        return self.engine.count()

    def flush(self) -> None:
        self.engine.flush()

    def close(self) -> None:
        self.engine.close()


StoreT = TypeVar("StoreT", bound=EngineStore)


class EngineStoreBuilder(Generic[StoreT]):
    """Makes one store per task: in memory unless `engine` (or the application's default
    engine) makes a persistent one; a serde not given is the application's default."""

    def __init__(self, name: str, key_serde: Serde[Any] | None, value_serde: Serde[Any] | None,
                 *, logging: bool, changelog_config: dict[str, str],
                 engine: Callable[[str], BytesEngine] | None) -> None:
        self.name = name
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.logging = logging
        self.changelog_config = changelog_config
        self.engine = engine

    @property
    def persistent(self) -> bool:
        return self.engine is not None

    def build(self, task_directory: str, default_key_serde: Serde[Any] = BYTES,
              default_value_serde: Serde[Any] = BYTES,
              default_engine: EngineFactory | None = None) -> StoreT:
        """The store of one task; a serde not given is the application's default."""
        engine = make_engine(self.engine, default_engine, task_directory, self.name)
        return self._make(self.key_serde or default_key_serde,
                          self.value_serde or default_value_serde, engine,
                          persistent=not isinstance(engine, MemoryEngine))

    def _make(self, key_serde: Serde[Any], value_serde: Serde[Any], engine: BytesEngine, *,
              persistent: bool) -> StoreT:
        raise NotImplementedError


class RetainedStore(EngineStore):
    """A store whose entries each have a time (a window's start, a session's end) and expire
    once it is older than the store's stream time (the largest such time put or restored)
    minus the retention: expired entries are removed, reads no longer see them, and a put for
    one is dropped (counted in `expired`). Engine keys are indexed by their time, for scans in
    time order and expiry."""

    def __init__(self, name: str, key_serde: Serde[Any], value_serde: Serde[Any],
                 engine: BytesEngine, *, retention_ms: int, logging: bool = True,
                 persistent: bool = False) -> None:
        super().__init__(name, key_serde, value_serde, engine, logging=logging,
                         persistent=persistent)
        self.retention_ms = retention_ms
        self.observed_stream_time = -1
        self.expired = 0  # puts dropped because their entry had expired
        self._times: list[int] = []  # the entries' times, sorted
        self._by_time: dict[int, set[bytes]] = {}  # time -> engine keys

    def init(self, context: StoreContext) -> None:
        super().init(context)
        for raw, _ in self.engine.range(None, None):  # a persistent engine's entries
            time = self._seen(raw)
            self._index(raw, time)
            self.observed_stream_time = max(self.observed_stream_time, time)
        self._expire()

    def _seen(self, raw: bytes) -> int:
        """The time of an engine key the store comes across (in its engine at init, or in
        its changelog when restoring)."""
        raise NotImplementedError

    @property
    def _min_live(self) -> int:
        """The oldest time that has not expired."""
        return max(0, self.observed_stream_time - self.retention_ms)

    def _encode(self, value: bytes, timestamp: int) -> bytes:
        """A value as the engine keeps it (a timestamped store adds its timestamp)."""
        return value

    def _keys_by_time(self, time_from: int, time_to: int, reverse: bool = False
                      ) -> Iterator[tuple[int, bytes]]:
        """(time, engine key) of the live entries with time in [from, to], by time then key."""
        low = bisect.bisect_left(self._times, max(time_from, self._min_live))
        high = bisect.bisect_right(self._times, time_to)
        times = self._times[low:high]
        for time in reversed(times) if reverse else times:
            for raw in sorted(self._by_time.get(time, ()), reverse=reverse):
                yield time, raw

    def _accepts(self, time: int) -> bool:
        """Moves the stream time on to `time`; False (and counted in `expired`) if an entry
        at `time` has expired, and a put for it is to be dropped."""
        self._observe(time)
        if time < self._min_live:
            self.expired += 1
            return False
        return True

    def restore(self, key: bytes, value: bytes | None, timestamp: int = -1) -> None:
        time = self._seen(key)
        self._observe(time)
        if time >= self._min_live:
            self._apply(key, time, value, timestamp)

    def _apply(self, raw: bytes, time: int, data: bytes | None, timestamp: int) -> None:
        if data is None:
            self.engine.delete(raw)
            keys = self._by_time.get(time)
            if keys is not None:
                keys.discard(raw)
        else:
            self.engine.put(raw, self._encode(data, timestamp))
            self._index(raw, time)

    def _index(self, raw: bytes, time: int) -> None:
        keys = self._by_time.get(time)
        if keys is None:
            keys = self._by_time[time] = set()
            bisect.insort(self._times, time)
        keys.add(raw)

    def _observe(self, time: int) -> None:
        if time > self.observed_stream_time:
            self.observed_stream_time = time
            self._expire()

    def _expire(self) -> None:
        cut = bisect.bisect_left(self._times, self._min_live)
        for time in self._times[:cut]:
            for raw in self._by_time.pop(time, ()):
                self.engine.delete(raw)
        del self._times[:cut]
