"""Windowed aggregations in the DSL (Kafka Streams' TimeWindowedKStream and
SessionWindowedKStream), made by `KGroupedStream.windowed_by(windows)`.

    (builder.stream("clicks", Consumed(Serdes.String(), Serdes.String()))
        .group_by_key()
        .windowed_by(TimeWindows.of_size_and_grace(timedelta(minutes=5), timedelta(minutes=1)))
        .emit_strategy(EmitStrategy.on_window_close())
        .count(Materialized("clicks-per-5-minutes"))
        .to_stream()
        .to("click-counts", Produced(
            WindowedSerdes.time_windowed(Serdes.String(), timedelta(minutes=5)),
            Serdes.Long())))

The result is a table keyed by `Windowed(key, window)`, materialized in a window store (a
session store for session windows) kept for size + grace (sliding windows: twice the time
difference + grace; sessions: gap + grace) unless `Materialized(retention=...)` says longer.
When the grouped key serde is known, the table's key serde is the windowed one, so `to()`
needs no serde for the key. Late records, closing and emitting: `windowed_aggregate`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from strom.streams.aggregate import Aggregator, Initializer, Reducer, reduce_aggregator
from strom.streams.dsl import KGroupedStream, KTable, Materialized
from strom.streams.serdes import LONG, Serde
from strom.streams.session_aggregate import Merger, SessionWindowAggregateProcessor
from strom.streams.sliding_aggregate import SlidingWindowAggregateProcessor
from strom.streams.stores.api import StoreBuilder
from strom.streams.stores.session import SessionStoreBuilder
from strom.streams.stores.window import WindowStoreBuilder
from strom.streams.windowed_aggregate import (
    TimeWindowAggregateProcessor,
    WindowedAggregateProcessor,
)
from strom.streams.windowed_serdes import SessionWindowedSerde, TimeWindowedSerde
from strom.streams.windows import (
    EmitStrategy,
    SessionWindows,
    SlidingWindows,
    TimeWindows,
    Windows,
    to_ms,
)

if TYPE_CHECKING:
    from strom.streams.dsl import KStream


def windowed_by(grouped: KGroupedStream, windows: Windows
                ) -> TimeWindowedKStream | SessionWindowedKStream:
    if isinstance(windows, SessionWindows):
        return SessionWindowedKStream(grouped, windows)
    if isinstance(windows, TimeWindows | SlidingWindows):
        return TimeWindowedKStream(grouped, windows)
    raise TypeError(f"windowed_by takes TimeWindows, SlidingWindows or SessionWindows, not "
                    f"{type(windows).__name__}")


class WindowedSupplier:
    """Makes a windowed aggregation's processor for each task; tells `suppress` when a
    window is final: once its end <= stream time - `final_after_ms`."""

    def __init__(self, factory: Callable[[], WindowedAggregateProcessor], final_after_ms: int
                 ) -> None:
        self.factory = factory
        self.final_after_ms = final_after_ms

    def __call__(self) -> WindowedAggregateProcessor:
        return self.factory()


def _count(key: Any, value: Any, count: int) -> int:
    return count + 1


def _add(key: Any, one: int, two: int) -> int:
    return one + two


class _Windowed:
    """Adds a windowed aggregation to the topology: the repartition if the key changed, the
    processor and its store; names as Kafka names them."""

    def __init__(self, grouped: KGroupedStream, emit: EmitStrategy) -> None:
        self.grouped = grouped
        self.emit = emit

    def _add(self, prefix: str, materialized: Materialized | None,
             value_serde: Serde[Any] | None) -> tuple[str, str, Serde[Any] | None,
                                                      Serde[Any] | None, KStream]:
        """(store name, processor name, key serde, value serde, input stream)."""
        grouped = self.grouped
        builder = grouped.stream.builder
        materialized = materialized or Materialized()
        store = materialized.name or builder.new_name(f"{prefix}-STATE-STORE-")
        stream = grouped.stream
        if grouped.repartition:
            stream = stream._through_topic(grouped.name or store, grouped.key_serde,
                                           grouped.value_serde, None)
        name = builder.new_name(f"{prefix}-")
        return (store, name, materialized.key_serde or grouped.key_serde,
                materialized.value_serde or value_serde, stream)

    def _table(self, store_builder: StoreBuilder, name: str, supplier: WindowedSupplier,
               stream: KStream, key_serde: Serde[Any] | None, value_serde: Serde[Any] | None
               ) -> KTable:
        topology = self.grouped.stream.builder.topology
        topology.add_processor(name, supplier, stream.node)
        topology.add_state_store(store_builder, name)
        return KTable(self.grouped.stream.builder, name, key_serde, value_serde,
                      store_builder.name)


def _retention(materialized: Materialized | None, minimum: int, what: str) -> int:
    if materialized is None or materialized.retention is None:
        return minimum
    retention = to_ms(materialized.retention, "retention")
    if retention < minimum:
        raise ValueError(f"the retention of store {materialized.name or '(unnamed)'} must be "
                         f"no smaller than {what} ({minimum} ms), not {retention} ms")
    return retention


class TimeWindowedKStream(_Windowed):
    """A grouped stream in time windows (tumbling, hopping) or sliding windows."""

    def __init__(self, grouped: KGroupedStream, windows: TimeWindows | SlidingWindows,
                 emit: EmitStrategy | None = None) -> None:
        super().__init__(grouped, emit or EmitStrategy.on_window_update())
        self.windows = windows

    def emit_strategy(self, strategy: EmitStrategy) -> TimeWindowedKStream:
        return TimeWindowedKStream(self.grouped, self.windows, strategy)

    def count(self, materialized: Materialized | None = None) -> KTable:
        """Records per key and window (records with a None key or value are not counted)."""
        return self._aggregate("KSTREAM-AGGREGATE", lambda: 0, _count, materialized, LONG)

    def reduce(self, reducer: Reducer, materialized: Materialized | None = None) -> KTable:
        return self._aggregate("KSTREAM-REDUCE", lambda: None, reduce_aggregator(reducer),
                               materialized, self.grouped.value_serde)

    def aggregate(self, initializer: Initializer, aggregator: Aggregator,
                  materialized: Materialized | None = None) -> KTable:
        return self._aggregate("KSTREAM-AGGREGATE", initializer, aggregator, materialized,
                               None)

    def _aggregate(self, prefix: str, initializer: Initializer, aggregator: Aggregator,
                   materialized: Materialized | None, value_serde: Serde[Any] | None
                   ) -> KTable:
        windows, emit = self.windows, self.emit
        store, name, key_serde, value_serde, stream = self._add(prefix, materialized,
                                                                value_serde)
        factory: Callable[[], WindowedAggregateProcessor]
        if isinstance(windows, TimeWindows):
            size, minimum = windows.size_ms, windows.size_ms + windows.grace_ms
            what = "the window size plus the grace"
            factory = partial(TimeWindowAggregateProcessor, store, windows, emit,
                               initializer, aggregator)
        else:
            size = windows.time_difference_ms
            minimum, what = 2 * size + windows.grace_ms, "twice the time difference plus grace"
            factory = partial(SlidingWindowAggregateProcessor, store, windows, emit,
                               initializer, aggregator)
        options = materialized or Materialized()
        store_builder = WindowStoreBuilder(
            store, _retention(materialized, minimum, what), size, key_serde, value_serde,
            timestamped=True, logging=options.logging,
            changelog_config=dict(options.changelog_config), engine=options.engine,
            # the record cache: time windows emitting on update (Kafka also caches sliding
            # windows and emit-final stores; not here)
            caching=options.caching and isinstance(windows, TimeWindows) and not emit.on_close)
        # A sliding window's end is included: final once it is before stream time - grace.
        final_after = windows.grace_ms + (0 if isinstance(windows, TimeWindows) else 1)
        return self._table(store_builder, name, WindowedSupplier(factory, final_after),
                           stream, TimeWindowedSerde(key_serde, size) if key_serde else None,
                           value_serde)


class SessionWindowedKStream(_Windowed):
    """A grouped stream in session windows."""

    def __init__(self, grouped: KGroupedStream, windows: SessionWindows,
                 emit: EmitStrategy | None = None) -> None:
        super().__init__(grouped, emit or EmitStrategy.on_window_update())
        self.windows = windows

    def emit_strategy(self, strategy: EmitStrategy) -> SessionWindowedKStream:
        return SessionWindowedKStream(self.grouped, self.windows, strategy)

    def count(self, materialized: Materialized | None = None) -> KTable:
        """Records per key and session (records with a None key or value are not counted)."""
        return self._aggregate("KSTREAM-AGGREGATE", lambda: 0, _count, _add, materialized,
                               LONG)

    def reduce(self, reducer: Reducer, materialized: Materialized | None = None) -> KTable:
        aggregator = reduce_aggregator(reducer)

        def merger(key: Any, one: Any, two: Any) -> Any:
            return aggregator(key, two, one)
        return self._aggregate("KSTREAM-REDUCE", lambda: None, aggregator, merger,
                               materialized, self.grouped.value_serde)

    def aggregate(self, initializer: Initializer, aggregator: Aggregator,
                  session_merger: Merger, materialized: Materialized | None = None) -> KTable:
        """`session_merger(key, aggregate, aggregate)` combines two sessions' aggregates when
        a record merges them."""
        return self._aggregate("KSTREAM-AGGREGATE", initializer, aggregator, session_merger,
                               materialized, None)

    def _aggregate(self, prefix: str, initializer: Initializer, aggregator: Aggregator,
                   merger: Merger, materialized: Materialized | None,
                   value_serde: Serde[Any] | None) -> KTable:
        windows, emit = self.windows, self.emit
        store, name, key_serde, value_serde, stream = self._add(prefix, materialized,
                                                                value_serde)
        supplier = WindowedSupplier(
            partial(SessionWindowAggregateProcessor, store, windows, emit, initializer,
                    aggregator, merger), windows.grace_ms + windows.inactivity_gap_ms + 1)
        options = materialized or Materialized()
        retention = _retention(materialized, windows.inactivity_gap_ms + windows.grace_ms,
                               "the inactivity gap plus the grace")
        store_builder = SessionStoreBuilder(
            store, retention, key_serde, value_serde, logging=options.logging,
            changelog_config=dict(options.changelog_config), engine=options.engine)
        return self._table(store_builder, name, supplier, stream,
                           SessionWindowedSerde(key_serde) if key_serde else None,
                           value_serde)
