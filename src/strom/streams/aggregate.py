"""The processors behind tables and aggregations. Table nodes forward `Change(new, old)`
values, so that downstream table operations (filters, joins, re-grouping) can take back what
an update replaced."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from strom.streams.processor import Processor, ProcessorContext, typed_store
from strom.streams.record import Headers, Record
from strom.streams.stores.caching import CachingKeyValueStore, FlushListener
from strom.streams.stores.kv import TimestampedKeyValueStore

log = logging.getLogger(__name__)

Initializer = Callable[[], Any]
Aggregator = Callable[[Any, Any, Any], Any]  # (key, value, aggregate) -> aggregate
Reducer = Callable[[Any, Any], Any]  # (aggregate, value) -> aggregate


class Change:
    """A table update: the new value and the one it replaced (None: none)."""

    __slots__ = ("new", "old")

    def __init__(self, new: Any, old: Any) -> None:
        self.new = new
        self.old = old

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Change) and (self.new, self.old) == (other.new, other.old)

    def __hash__(self) -> int:
        return hash((self.new, self.old))

    def __repr__(self) -> str:
        return f"Change(new={self.new!r}, old={self.old!r})"


class StreamAggregateProcessor(Processor):
    """count / reduce / aggregate of a grouped stream: records with a None key or value are
    dropped (as Kafka does); the result's timestamp is the latest of the inputs'."""

    def __init__(self, store_name: str, initializer: Initializer | None,
                 aggregator: Aggregator) -> None:
        self.store_name = store_name
        self.initializer = initializer
        self.aggregator = aggregator
        self.dropped = 0

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.store = typed_store(context, self.store_name, TimestampedKeyValueStore)
        self.cached = cached_store(self.store, self._flushed)

    def _flushed(self, key: Any, new: Any, old: Any, timestamp: int, headers: Headers) -> None:
        self.context.forward(Record(key, Change(new, old), timestamp, headers))

    def process(self, record: Record) -> None:
        key, value = record.key, record.value
        if key is None or value is None:
            self.dropped += 1
            return
        found = self.store.get_with_timestamp(key)
        if found is None:
            old, timestamp = None, record.timestamp
            current = self.initializer() if self.initializer is not None else None
        else:
            old, timestamp = found[0], max(found[1], record.timestamp)
            current = old
        new = value if current is None and self.initializer is None else self.aggregator(
            key, value, current)
        if self.cached is not None:  # forwarded when the cache is flushed
            self.cached.put(key, new, timestamp, headers=record.headers)
            return
        self.store.put(key, new, timestamp)
        self.context.forward(Record(key, Change(new, old), timestamp, record.headers))


def cached_store(store: object, listener: FlushListener) -> CachingKeyValueStore | None:
    """The store if it has a record cache (its flushes then go to `listener`), else None."""
    if isinstance(store, CachingKeyValueStore) and store.caching:
        store.flush_listener = listener
        return store
    return None


def reduce_aggregator(reducer: Reducer) -> Aggregator:
    """A reduce: the first value as it is, then reducer(aggregate, value)."""
    def aggregate(key: Any, value: Any, current: Any) -> Any:
        return value if current is None else reducer(current, value)
    return aggregate


class MaterializingProcessor(Processor):
    """A table processor that keeps the table's values in a store when one is named."""

    def __init__(self, store_name: str | None) -> None:
        self.store_name = store_name
        self.store: TimestampedKeyValueStore | None = None

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        if self.store_name is not None:
            self.store = typed_store(context, self.store_name, TimestampedKeyValueStore)


class TableSourceProcessor(MaterializingProcessor):
    """A topic read as a table: each record an update of its key (None value: deleted),
    materialized in a store when one is named; forwards the change."""

    def process(self, record: Record) -> None:
        if record.key is None:
            return
        old = None
        if self.store is not None:
            found = self.store.get_with_timestamp(record.key)
            if found is not None:
                old = found[0]
                if record.timestamp < found[1]:
                    log.debug("table update of %r older than the stored one", record.key)
            self.store.put(record.key, record.value, record.timestamp)
        self.context.forward(Record(record.key, Change(record.value, old), record.timestamp,
                                    record.headers))


class TableFilterProcessor(Processor):
    def __init__(self, predicate: Callable[[Any, Any], bool], keep: bool = True) -> None:
        self.predicate = predicate
        self.keep = keep

    def _passes(self, key: Any, value: Any) -> Any:
        if value is None:
            return None
        return value if bool(self.predicate(key, value)) is self.keep else None

    def process(self, record: Record) -> None:
        change = record.value
        new, old = self._passes(record.key, change.new), self._passes(record.key, change.old)
        if new is None and old is None:
            return
        self.context.forward(record.with_value(Change(new, old)))


class TableMapValuesProcessor(Processor):
    def __init__(self, mapper: Callable[[Any, Any], Any]) -> None:
        self.mapper = mapper

    def process(self, record: Record) -> None:
        change, key = record.value, record.key
        new = None if change.new is None else self.mapper(key, change.new)
        old = None if change.old is None else self.mapper(key, change.old)
        self.context.forward(record.with_value(Change(new, old)))


class TableToStreamProcessor(Processor):
    def process(self, record: Record) -> None:
        self.context.forward(record.with_value(record.value.new))
