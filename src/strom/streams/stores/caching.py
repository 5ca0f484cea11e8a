"""Record caches in front of the DSL's aggregation stores (Kafka Streams' ThreadCache,
NamedCache, CachingKeyValueStore, CachingWindowStore and their flush listeners).

Each stream thread has one `ThreadCache`, a budget of bytes (statestore.cache.max.bytes over
num.stream.threads) shared by one `NamedCache` per (task, caching store). A caching store's
writes go to its cache as *dirty* entries: nothing is written to the engine or the
changelog, nothing is forwarded. Reads see the cache merged over the engine (a
`CachedEngine` stands in for the store's engine, so every read path of the store sees it,
interactive queries from other threads too). When the task commits (and before a task is
closed cleanly) the cache is flushed: each dirty entry, in the order it was last written
(Kafka's dirty-key order), is written to the engine and the changelog once and handed to the
store's flush listener as (key, new, old, timestamp, headers), `old` being what the engine
held before; the DSL aggregation processors forward it downstream as `Change(new, old)` with
the record context (headers, topic/partition/offset) of the record that last updated the
entry. When a put takes the thread's cache over its budget, the least-recently-used entries
of that store's cache are evicted, and evicting a dirty entry first flushes all the dirty
entries of that cache (as Kafka's NamedCache.evict does). A task closed without committing
drops its caches (what was not flushed was not committed either).

An entry's size is its serialized key and value plus `ENTRY_OVERHEAD` bytes.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Final

from strom.streams.record import Headers, RecordMetadata
from strom.streams.stores.api import BytesEngine, StoreContext
from strom.streams.stores.kv import TimestampedKeyValueStore
from strom.streams.stores.window import (
    TimestampedWindowStore,
    split_window_store_key,
    window_store_key,
)

ENTRY_OVERHEAD: Final = 64

# (key, new value, old value, timestamp, headers): a flushed update, as objects
FlushListener = Callable[[Any, Any, Any, int, Headers], None]


class CacheEntry:
    __slots__ = ("dirty", "headers", "metadata", "stored", "timestamp")

    def __init__(self, stored: bytes | None, timestamp: int, dirty: bool, headers: Headers,
                 metadata: RecordMetadata | None) -> None:
        self.stored = stored  # as the engine keeps it (None: deleted)
        self.timestamp = timestamp
        self.dirty = dirty
        self.headers = headers
        self.metadata = metadata

    def size(self, key: bytes) -> int:
        return len(key) + (0 if self.stored is None else len(self.stored)) + ENTRY_OVERHEAD


# the dirty entries of a cache, flushed: (engine key, entry) in dirty order
Flush = Callable[[list[tuple[bytes, CacheEntry]]], None]


class NamedCache:
    """One store's cache in a task: entries in LRU order (least recently used first) and
    the dirty keys in the order they were last written."""

    def __init__(self, name: str, owner: ThreadCache, flush: Flush) -> None:
        self.name = name
        self.owner = owner
        self._flush = flush
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self._sorted: list[bytes] = []  # the entries' keys in order, for range reads
        self._dirty: dict[bytes, None] = {}
        self.size = 0
        self.lock = threading.RLock()  # reads may come from other threads (queries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def dirty_count(self) -> int:
        return len(self._dirty)

    def get(self, key: bytes) -> CacheEntry | None:
        with self.lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.owner.hits += 1
            else:
                self.owner.misses += 1
            return entry

    def put(self, key: bytes, entry: CacheEntry) -> None:
        with self.lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._resize(-previous.size(key))
            else:
                bisect.insort(self._sorted, key)
            self._entries[key] = entry
            self._resize(entry.size(key))
            if entry.dirty:
                self._dirty.pop(key, None)
                self._dirty[key] = None
        self.owner.maybe_evict(self)

    def _resize(self, delta: int) -> None:
        self.size += delta
        self.owner.size += delta

    def between(self, low: bytes | None, high: bytes | None) -> list[tuple[bytes, CacheEntry]]:
        """The entries with low <= key <= high (None: unbounded), by key (a snapshot)."""
        with self.lock:
            keys = self._sorted
            first = 0 if low is None else bisect.bisect_left(keys, low)
            last = len(keys) if high is None else bisect.bisect_right(keys, high)
            return [(k, self._entries[k]) for k in keys[first:last]]

    def flush(self) -> None:
        """Hands the dirty entries to the store (which writes and forwards them)."""
        with self.lock:
            if not self._dirty:
                return
            flushed = [(key, self._entries[key]) for key in self._dirty]
            self._dirty.clear()
            for _, entry in flushed:
                entry.dirty = False
        self.owner.flushes += 1
        self._flush(flushed)

    def evict(self) -> None:
        """Removes the least recently used entry, flushing the dirty ones first if it is
        dirty."""
        with self.lock:
            if not self._entries:
                return
            key, entry = next(iter(self._entries.items()))
        if entry.dirty:
            self.flush()
        with self.lock:
            entry = self._entries.pop(key)
            del self._sorted[bisect.bisect_left(self._sorted, key)]
            self._resize(-entry.size(key))
        self.owner.evictions += 1

    def clear(self) -> None:
        """Drops every entry, flushed or not."""
        with self.lock:
            self.owner.size -= self.size
            self.size = 0
            self._entries.clear()
            self._sorted.clear()
            self._dirty.clear()


class ThreadCache:
    """One stream thread's record cache: a budget shared by its tasks' caching stores."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self.flushes = 0
        self.evictions = 0
        self._caches: dict[str, NamedCache] = {}

    @staticmethod
    def for_thread(max_bytes: int, threads: int) -> ThreadCache | None:
        """The cache of one of `threads` stream threads sharing `max_bytes`
        (statestore.cache.max.bytes); None when that leaves it nothing (caching is off)."""
        budget = max_bytes // max(threads, 1)
        return ThreadCache(budget) if budget > 0 else None

    def named(self, name: str, flush: Flush) -> NamedCache:
        cache = self._caches.get(name)
        if cache is not None:
            cache.clear()
        cache = self._caches[name] = NamedCache(name, self, flush)
        return cache

    def remove(self, cache: NamedCache) -> None:
        cache.clear()
        if self._caches.get(cache.name) is cache:
            del self._caches[cache.name]

    def maybe_evict(self, cache: NamedCache) -> None:
        """Evicts from the cache just written to while the thread's cache is over budget
        (as Kafka's ThreadCache does: another store's cache is not touched)."""
        while self.size > self.max_bytes and len(cache):
            cache.evict()

    @property
    def entries(self) -> int:
        return sum(len(c) for c in list(self._caches.values()))

    def snapshot(self) -> dict[str, Any]:
        reads = self.hits + self.misses
        return {"record-cache-size-bytes": self.size,
                "record-cache-max-bytes": self.max_bytes,
                "record-cache-entries": self.entries,
                "record-cache-hit-ratio": self.hits / reads if reads else 0.0,
                "record-cache-flush-total": self.flushes,
                "record-cache-evict-total": self.evictions}


class CachedEngine:
    """A store's engine as its reads see it: the cache over the engine (a deleted entry in
    the cache hides the engine's). Writes (restoration, expiry, flushes) go to the engine."""

    def __init__(self, inner: BytesEngine, cache: NamedCache) -> None:
        self.inner = inner
        self.cache = cache

    def get(self, key: bytes) -> bytes | None:
        entry = self.cache.get(key)
        if entry is not None:
            return entry.stored
        return self.inner.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.inner.put(key, value)

    def delete(self, key: bytes) -> None:
        self.inner.delete(key)

    def range(self, start: bytes | None, end: bytes | None, reverse: bool = False
              ) -> Iterator[tuple[bytes, bytes]]:
        cached = self.cache.between(start, end)
        if reverse:
            cached.reverse()
        stored = self.inner.range(start, end, reverse)
        before: Callable[[bytes, bytes], bool] = (
            (lambda a, b: a > b) if reverse else (lambda a, b: a < b))
        index = 0
        for key, value in stored:
            while index < len(cached) and before(cached[index][0], key):
                ckey, entry = cached[index]
                index += 1
                if entry.stored is not None:
                    yield ckey, entry.stored
            if index < len(cached) and cached[index][0] == key:
                entry = cached[index][1]
                index += 1
                if entry.stored is not None:
                    yield key, entry.stored
                continue
            yield key, value
        for ckey, entry in cached[index:]:
            if entry.stored is not None:
                yield ckey, entry.stored

    def count(self) -> int:
        return self.inner.count()

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


class CachingStore:
    """What the caching stores share: attaching to the thread's cache at init (none: the
    store writes through, as an ordinary one), flushing, and forwarding what was flushed
    with the record context of the record that last updated it."""

    engine: BytesEngine
    _context: StoreContext | None
    name: str

    def _attach(self, context: StoreContext) -> None:
        inner = getattr(self, "_inner", None)
        if inner is None:
            inner = self._inner = self.engine
        old = getattr(self, "_cache", None)
        if old is not None:
            old.owner.remove(old)
        thread_cache: ThreadCache | None = getattr(context, "record_cache", None)
        self._cache: NamedCache | None = None
        self.engine = inner
        if thread_cache is not None:
            self._cache = thread_cache.named(f"{context.task_id}-{self.name}", self._flushed)
            self.engine = CachedEngine(inner, self._cache)
        if not hasattr(self, "flush_listener"):
            self.flush_listener: FlushListener | None = None

    @property
    def caching(self) -> bool:
        """Whether writes go to a record cache (the thread has one)."""
        return getattr(self, "_cache", None) is not None

    @property
    def dirty(self) -> bool:
        """Whether the cache holds updates not yet flushed."""
        cache = getattr(self, "_cache", None)
        return cache is not None and cache.dirty_count > 0

    def flush_cache(self) -> None:
        """Writes the dirty entries to the engine and the changelog and forwards them."""
        cache = getattr(self, "_cache", None)
        if cache is not None:
            cache.flush()

    def _record_context(self) -> RecordMetadata | None:
        return getattr(self._context, "record_metadata", None)

    def _forward(self, entry: CacheEntry, key: Any, new: Any, old: Any) -> None:
        listener = self.flush_listener
        if listener is None or (new is None and old is None):
            return
        context = self._context
        if context is None or not hasattr(context, "record_metadata"):
            listener(key, new, old, entry.timestamp, entry.headers)
            return
        saved = context.record_metadata
        context.record_metadata = entry.metadata
        try:
            listener(key, new, old, entry.timestamp, entry.headers)
        finally:
            context.record_metadata = saved

    def _flushed(self, entries: list[tuple[bytes, CacheEntry]]) -> None:
        raise NotImplementedError

    def _drop_cache(self) -> None:
        cache = getattr(self, "_cache", None)
        if cache is not None:
            cache.owner.remove(cache)
            self._cache = None
            self.engine = self._inner


class CachingKeyValueStore(CachingStore, TimestampedKeyValueStore):
    """A timestamped key-value store with a record cache (the DSL's aggregation stores)."""

    _inner: BytesEngine

    def init(self, context: StoreContext) -> None:
        super().init(context)
        self._attach(context)

    def put(self, key: Any, value: Any, timestamp: int = -1, *, headers: Headers = ()
            ) -> None:
        """Stores `value` (None deletes the key): into the cache, when there is one, with
        the headers to forward it with when it is flushed."""
        self._headers = headers
        try:
            super().put(key, value, timestamp)
        finally:
            self._headers = ()

    def _write(self, key: bytes, value: bytes | None, timestamp: int) -> None:
        cache = self._cache
        if cache is None:
            super()._write(key, value, timestamp)
            return
        stored = None if value is None else self._encode(value, timestamp)
        cache.put(key, CacheEntry(stored, timestamp, True, getattr(self, "_headers", ()),
                                  self._record_context()))

    def _flushed(self, entries: list[tuple[bytes, CacheEntry]]) -> None:
        name, values = self._name, self.value_serde
        for raw, entry in entries:
            before = self._inner.get(raw)
            plain = None if entry.stored is None else self._plain(entry.stored)
            if entry.stored is None:
                self._inner.delete(raw)
            else:
                self._inner.put(raw, entry.stored)
            self._log(raw, plain, entry.timestamp)
            if self.flush_listener is not None:
                self._forward(entry, self.key_serde.deserialize(name, raw),
                              None if plain is None else values.deserialize(name, plain),
                              None if before is None else values.deserialize(
                                  name, self._plain(before)))

    def close(self) -> None:
        self._drop_cache()
        super().close()


class CachingWindowStore(CachingStore, TimestampedWindowStore):
    """A timestamped window store with a record cache (time-window aggregations that emit
    on update). A store keeping duplicates is not cached."""

    _inner: BytesEngine

    def init(self, context: StoreContext) -> None:
        super().init(context)
        self._attach(context)

    def put(self, key: Any, value: Any, window_start: int, timestamp: int = -1, *,
            headers: Headers = ()) -> None:
        cache = self._cache
        if cache is None or self.retain_duplicates:
            super().put(key, value, window_start, timestamp)
            return
        if not self._accepts(window_start):
            return
        raw = window_store_key(self._key(key), window_start, 0)
        data = None if value is None else self.value_serde.serialize(self._name, value)
        stored = None
        if data is not None:
            stored = self._encode(data, timestamp)
            self._index(raw, window_start)  # reads by time find it (in the cache)
        cache.put(raw, CacheEntry(stored, timestamp, True, headers, self._record_context()))

    def _flushed(self, entries: list[tuple[bytes, CacheEntry]]) -> None:
        name, values = self._name, self.value_serde
        for raw, entry in entries:
            before = self._inner.get(raw)
            plain = None if entry.stored is None else self._decode(entry.stored)[0]
            key, start, _ = split_window_store_key(raw)
            if start >= self._min_live:  # else it expired while cached: not kept
                if plain is None:
                    self._inner.delete(raw)
                else:
                    self._inner.put(raw, entry.stored)  # type: ignore[arg-type]
                self._log(raw, plain, entry.timestamp)
            if self.flush_listener is not None:
                self._forward(entry, self._windowed(key, start),
                              None if plain is None else values.deserialize(name, plain),
                              None if before is None else values.deserialize(
                                  name, self._decode(before)[0]))

    def close(self) -> None:
        self._drop_cache()
        super().close()
