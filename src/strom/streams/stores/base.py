"""What the stores have in common: a name, serdes, a bytes engine, and the lifecycle a task
drives (init, flush, close), with each change written to the store's changelog topic when
logging is on; and what their builders have in common: making the engine of one task's store
and the serdes it gets when it was given none."""

from __future__ import annotations

from collections.abc import Callable
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
