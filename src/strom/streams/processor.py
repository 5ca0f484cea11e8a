"""The processor API (Kafka Streams' Processor API): a `Processor` gets each record of its
parents in `process`, may keep state in the stores it was connected to, forwards records to
its children through its context, and may schedule punctuators on stream time or wall-clock
time.

    class Deduplicate(Processor):
        def init(self, context):
            super().init(context)
            self.seen = context.get_state_store("seen")

        def process(self, record):
            if self.seen.get(record.key) is None:
                self.seen.put(record.key, record.timestamp)
                self.context.forward(record)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from strom.streams.record import Record, RecordMetadata

if TYPE_CHECKING:
    from strom.streams.serdes import Serde
    from strom.streams.stores.api import StateStore


class PunctuationType(enum.Enum):
    STREAM_TIME = "stream-time"  # fires as records move the task's stream time on
    WALL_CLOCK_TIME = "wall-clock-time"  # fires as the clock moves on, records or not


Punctuator = Callable[[int], None]  # called with the punctuation's time (ms)


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class ProcessorContext(Protocol):
    """What a processor may ask of its task."""

    @property
    def application_id(self) -> str: ...

    @property
    def task_id(self) -> str: ...

    @property
    def record_metadata(self) -> RecordMetadata | None:
        """The topic, partition and offset of the input record being processed (None in a
        punctuator)."""

    @property
    def stream_time(self) -> int:
        """The largest timestamp the task has seen (-1 before the first record)."""

    @property
    def key_serde(self) -> Serde[Any]:
        """The application's default key serde (default.key.serde)."""

    @property
    def value_serde(self) -> Serde[Any]:
        """The application's default value serde (default.value.serde)."""

    def current_system_time_ms(self) -> int: ...

    def forward(self, record: Record, child: str | None = None) -> None:
        """Hands `record` to every child (or the one named)."""

    def schedule(self, interval_ms: int, kind: PunctuationType,
                 punctuator: Punctuator) -> Cancellable: ...

    def get_state_store(self, name: str) -> StateStore:
        """A store the processor was connected to, or a global store."""

    def commit(self) -> None:
        """Asks for a commit soon (after the current record)."""

    def add_processor_metadata(self, key: str, value: int) -> None:
        """Keeps `value` under `key` in the task's processor metadata, committed with the
        task's input offsets (atomically with its outputs under exactly-once) and given back
        to the task's processors when the task is created again (after a restart or on
        another instance). Keep keys few and short (the offset metadata limit is 4 KB)."""

    def processor_metadata(self, key: str) -> int | None:
        """The value kept under `key` (as last committed, when read in `init` of a task
        created again), or None."""


StoreT = TypeVar("StoreT")


def typed_store(context: ProcessorContext, name: str, kind: type[StoreT]) -> StoreT:
    """The store `name` the processor was connected to, which the DSL made a `kind`."""
    store = context.get_state_store(name)
    assert isinstance(store, kind)
    return store


class Processor:
    """Override `process` (and `init` / `close` if needed)."""

    context: ProcessorContext

    def init(self, context: ProcessorContext) -> None:
        self.context = context

    def process(self, record: Record) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None


ProcessorSupplier = Callable[[], Processor]


class FunctionProcessor(Processor):
    """A processor from a function of (record, context), for the DSL's `process`."""

    def __init__(self, function: Callable[[Record, ProcessorContext], Any]) -> None:
        self.function = function

    def process(self, record: Record) -> None:
        self.function(record, self.context)
