"""The record cache in front of the DSL's aggregation stores (statestore.cache.max.bytes,
strom.streams.stores.caching): updates of a key deduplicated until a flush (a commit), then
written to the store and its changelog once and forwarded as Change(latest, value before);
eviction when the budget is exceeded; reads that see the cache; turning it off."""

from __future__ import annotations

import threading
from typing import Any

from strom.streams import (
    Consumed,
    Grouped,
    Materialized,
    Produced,
    Serdes,
    StreamsBuilder,
    TimeWindows,
    TopologyTestDriver,
)
from strom.streams.aggregate import Change
from strom.streams.processor import Processor
from strom.streams.record import Record, RecordMetadata
from strom.streams.stores.caching import (
    ENTRY_OVERHEAD,
    CachingKeyValueStore,
    CachingWindowStore,
    ThreadCache,
)
from strom.streams.stores.kv import KeyValueStoreBuilder
from strom.streams.stores.window import WindowStoreBuilder
from strom.streams.windows import EmitStrategy, Window, Windowed

S, L = Serdes.String(), Serdes.Long()


class FakeTask:
    """What a store needs of its task (a StoreContext), with a thread cache."""

    task_id = "0_0"
    partition = 0

    def __init__(self, cache: ThreadCache | None) -> None:
        self.record_cache = cache
        self.record_metadata: RecordMetadata | None = None
        self.logged: list[tuple[str, bytes, bytes | None, int]] = []

    def changelog_topic(self, store_name: str) -> str:
        return f"app-{store_name}-changelog"

    def log_change(self, topic: str, key: bytes, value: bytes | None, timestamp: int) -> None:
        self.logged.append((topic, key, value, timestamp))


Where = tuple[str, int, int] | None
Flushed = list[tuple[Any, Any, Any, int, Any, Where]]


def where(metadata: RecordMetadata | None) -> Where:
    return None if metadata is None else (metadata.topic, metadata.partition, metadata.offset)


def kv_store(max_bytes: int = 1 << 20) -> tuple[CachingKeyValueStore, FakeTask, Flushed]:
    task = FakeTask(ThreadCache(max_bytes))
    store = KeyValueStoreBuilder("agg", S, L, timestamped=True, caching=True).build("")
    assert isinstance(store, CachingKeyValueStore)
    store.init(task)
    flushed: Flushed = []
    store.flush_listener = lambda k, new, old, ts, headers: flushed.append(
        (k, new, old, ts, headers, where(task.record_metadata)))
    return store, task, flushed


def test_updates_of_a_key_are_one_forward_with_the_value_before_the_cache() -> None:
    store, task, flushed = kv_store()
    store.put("a", 1, 10)
    store.flush_cache()
    flushed.clear()
    task.logged.clear()
    for n, ts in ((2, 11), (3, 12), (4, 13)):
        task.record_metadata = RecordMetadata("in", 0, ts)
        store.put("a", n, ts, headers=(("h", str(n).encode()),))
    assert flushed == [] and task.logged == []  # nothing written or forwarded yet
    task.record_metadata = None
    store.flush_cache()
    # Change(latest, what the store held before), with the last update's record context
    assert flushed == [("a", 4, 1, 13, (("h", b"4"),), ("in", 0, 13))]
    assert task.record_metadata is None  # put back after forwarding
    assert task.logged == [("app-agg-changelog", b"a", L.serialize("", 4), 13)]
    store.flush_cache()  # nothing dirty: nothing more
    assert len(flushed) == 1 and len(task.logged) == 1


def test_flush_order_is_the_order_keys_were_last_written() -> None:
    store, task, flushed = kv_store()
    store.put("a", 1, 1)
    store.put("b", 1, 2)
    store.put("c", 1, 3)
    store.put("a", 2, 4)
    store.flush_cache()
    # Kafka's dirty-key order: a key written again moves to the end
    assert [(k, new, old) for k, new, old, *_ in flushed] == [
        ("b", 1, None), ("c", 1, None), ("a", 2, None)]
    assert [key for _, key, _, _ in task.logged] == [b"b", b"c", b"a"]


def test_reads_see_dirty_entries_and_deletes() -> None:
    store, task, _ = kv_store()
    store.put("a", 1, 5)
    assert store.get("a") == 1 and store.get_with_timestamp("a") == (1, 5)
    assert store.engine.get(b"a") is not None and store._inner.get(b"a") is None
    store.flush_cache()
    store.delete("a")  # a tombstone in the cache hides the stored value
    assert store.get("a") is None and list(store.all()) == []
    assert store._inner.get(b"a") is not None
    store.flush_cache()
    assert store._inner.get(b"a") is None
    assert task.logged[-1][2] is None  # the delete is logged as a tombstone


def test_range_and_all_merge_the_cache_over_the_store() -> None:
    store, _, _ = kv_store()
    for key, n in (("a", 1), ("c", 3), ("e", 5), ("g", 7)):
        store.put(key, n, 1)
    store.flush_cache()
    store.put("b", 2, 2)  # new, only in the cache
    store.put("c", 30, 2)  # updated in the cache
    store.delete("e")  # deleted in the cache
    store.put("h", 8, 2)  # after every stored key
    assert list(store.all()) == [("a", 1), ("b", 2), ("c", 30), ("g", 7), ("h", 8)]
    assert list(store.range("b", "g")) == [("b", 2), ("c", 30), ("g", 7)]
    assert list(store.range("b", "g", reverse=True)) == [("g", 7), ("c", 30), ("b", 2)]
    assert list(store.range(None, "a")) == [("a", 1)]


def test_eviction_flushes_dirty_entries_in_lru_order_when_over_budget() -> None:
    entry = len(b"k1") + 8 + 8 + ENTRY_OVERHEAD  # key, timestamp, long value, overhead
    store, task, flushed = kv_store(max_bytes=3 * entry)
    store.put("k1", 1, 1)
    store.put("k2", 2, 2)
    store.put("k3", 3, 3)
    assert flushed == []
    store.get("k1")  # reading makes k1 recently used: k2 is the eldest
    store.put("k4", 4, 4)  # over budget: evicting dirty k2 flushes every dirty entry
    assert [(k, new) for k, new, *_ in flushed] == [("k1", 1), ("k2", 2), ("k3", 3), ("k4", 4)]
    assert store.get("k2") == 2  # evicted, read from the store
    assert task.record_cache is not None and task.record_cache.evictions == 1
    assert task.record_cache.size <= 3 * entry
    flushed.clear()
    store.put("k5", 5, 5)  # evicts k3, clean: nothing forwarded
    assert flushed == [] and task.record_cache.evictions == 2
    assert store.get("k3") == 3
    store.flush_cache()
    assert [(k, new) for k, new, *_ in flushed] == [("k5", 5)]


def test_a_store_closed_without_a_flush_drops_its_cache() -> None:
    store, task, flushed = kv_store()
    store.put("a", 1, 1)
    cache = task.record_cache
    assert cache is not None and cache.size > 0
    store.close()
    assert cache.size == 0 and flushed == [] and task.logged == []


def test_no_thread_cache_means_writing_through() -> None:
    task = FakeTask(None)
    store = KeyValueStoreBuilder("agg", S, L, timestamped=True, caching=True).build("")
    assert isinstance(store, CachingKeyValueStore)
    store.init(task)
    assert not store.caching
    store.put("a", 1, 1)
    assert len(task.logged) == 1


def test_queries_from_another_thread_while_updating() -> None:
    store, _, _ = kv_store(max_bytes=40 * (ENTRY_OVERHEAD + 20))
    errors: list[BaseException] = []
    done = threading.Event()

    def query() -> None:
        try:
            while not done.is_set():
                list(store.all())
                store.get("k7")
        except BaseException as exc:  # pragma: no cover - the failure reported below
            errors.append(exc)

    reader = threading.Thread(target=query)
    reader.start()
    try:
        for n in range(20_000):
            store.put(f"k{n % 97}", n, n)
            if n % 1000 == 0:
                store.flush_cache()
    finally:
        done.set()
        reader.join()
    assert errors == []


def test_window_store_cache_merges_and_flushes_windowed_changes() -> None:
    task = FakeTask(ThreadCache(1 << 20))
    store = WindowStoreBuilder("w", 100, 10, S, L, timestamped=True, caching=True).build("")
    assert isinstance(store, CachingWindowStore)
    store.init(task)
    flushed: list[tuple[Any, Any, Any, int]] = []
    store.flush_listener = lambda k, new, old, ts, h: flushed.append((k, new, old, ts))
    store.put("a", 1, 0, 3)
    store.flush_cache()
    store.put("a", 2, 0, 4)
    store.put("a", 3, 0, 5)
    store.put("b", 1, 10, 12)
    assert store.fetch("a", 0) == 3
    assert store.fetch_with_timestamp("a", 0) == (3, 5)
    assert [(w.key, w.window.start, v) for w, v in store.all()] == [
        ("a", 0, 3), ("b", 10, 1)]
    assert list(store.fetch_range("a", 0, 100)) == [(0, 3)]
    task.logged.clear()
    store.flush_cache()
    assert flushed[1:] == [(Windowed("a", Window(0, 10)), 3, 1, 5),
                           (Windowed("b", Window(10, 20)), 1, None, 12)]
    assert len(task.logged) == 2


# -- the DSL on the test driver ------------------------------------------------------------


class Spy(Processor):
    """Records what a table node forwards: key, Change, timestamp, headers, metadata."""

    seen: list[tuple[Any, Any, int, Any, RecordMetadata | None]]

    def process(self, record: Record) -> None:
        self.seen.append((record.key, record.value, record.timestamp, record.headers,
                          self.context.record_metadata))


def word_count(materialized: Materialized | None = None) -> tuple[StreamsBuilder, list[Any]]:
    """Words per key (each line's words counted for the line's key), with no repartition: one
    line's updates of its key are deduplicated by the cache (the driver flushes it after
    each record, as Kafka's commits after each)."""
    b = StreamsBuilder()
    table = (b.stream("in", consumed=Consumed(S, S))
             .flat_map_values(lambda line: line.split())
             .group_by_key(Grouped(S, S))
             .count(materialized or Materialized("counts")))
    seen: list[Any] = []

    def spy() -> Spy:
        processor = Spy()
        processor.seen = seen
        return processor

    b.topology.add_processor("spy", spy, table.node)
    table.to_stream().to("out", Produced(S, L))
    return b, seen


def pipe_lines(b: StreamsBuilder, lines: list[tuple[str, str]],
               config: dict[str, Any] | None = None
               ) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
    """(what `out` got, what the counts' changelog got)."""
    with TopologyTestDriver(b.build(), {"application.id": "app", **(config or {})}) as d:
        source = d.create_input_topic("in", S, S)
        for n, (key, line) in enumerate(lines):
            source.pipe_input(key, line, 100 + n, headers=(("line", str(n).encode()),))
        return (d.create_output_topic("out", S, L).read_key_values_to_list(),
                d.create_output_topic("app-counts-changelog", S, L).read_key_values_to_list())


def test_the_driver_flushes_after_each_record_one_result_per_key_and_input() -> None:
    b, seen = word_count()
    out, changelog = pipe_lines(b, [("a", "x y z"), ("b", "x"), ("a", "x x")])
    assert out == [("a", 3), ("b", 1), ("a", 5)]
    assert changelog == out  # the changelog: once per key per flush
    # Change(latest, value before the record), as forwarded by the aggregation's node, with
    # the timestamp, headers and input record of the last update
    assert [(k, c, ts, h, where(m)) for k, c, ts, h, m in seen] == [
        ("a", Change(3, None), 100, (("line", b"0"),), ("in", 0, 0)),
        ("b", Change(1, None), 101, (("line", b"1"),), ("in", 0, 1)),
        ("a", Change(5, 3), 102, (("line", b"2"),), ("in", 0, 2))]


def test_cache_size_zero_forwards_every_update() -> None:
    for config in ({"statestore.cache.max.bytes": 0}, {"cache.max.bytes.buffering": "0"}):
        b, _ = word_count()
        out, changelog = pipe_lines(b, [("a", "x y"), ("b", "x")], config)
        assert out == [("a", 1), ("a", 2), ("b", 1)]
        assert changelog == out


def test_materialized_with_caching_disabled_forwards_every_update() -> None:
    b, seen = word_count(Materialized("counts").with_caching_disabled())
    out, changelog = pipe_lines(b, [("a", "x y"), ("b", "x")])
    assert out == [("a", 1), ("a", 2), ("b", 1)] == changelog
    assert [change for _, change, *_ in seen] == [Change(1, None), Change(2, 1),
                                                  Change(1, None)]
    assert Materialized("x").with_caching_disabled().with_caching_enabled().caching


def test_stores_of_the_processor_api_are_not_cached() -> None:
    store = KeyValueStoreBuilder("p", S, L, timestamped=True).build("")
    assert not isinstance(store, CachingKeyValueStore)


def test_a_tumbling_count_emitting_on_update_is_cached() -> None:
    def run(materialized: Materialized) -> list[tuple[Any, Any, int]]:
        b = StreamsBuilder()
        (b.stream("in", consumed=Consumed(S, S))
         .flat_map_values(lambda line: line.split())
         .group_by_key(Grouped(S, S))
         .windowed_by(TimeWindows.of_size_with_no_grace(10))
         .count(materialized)
         .to_stream().map(lambda w, n: (f"{w.key}@{w.window.start}", n))
         .to("out", Produced(S, L)))
        with TopologyTestDriver(b.build(), {"application.id": "app"}) as d:
            source = d.create_input_topic("in", S, S)
            source.pipe_input("x", "w w w", 3)
            source.pipe_input("y", "w", 4)
            source.pipe_input("x", "w", 12)
            source.pipe_input("x", "w w", 15)
            # the changelog gets what is forwarded: once per window and flush
            assert d.create_output_topic("app-w-changelog", S, L).queue_size == len(
                d.outputs["out"])
            return [(r.key, r.value, r.timestamp)
                    for r in d.create_output_topic("out", S, L).read_records_to_list()]

    assert run(Materialized("w")) == [
        ("x@0", 3, 3), ("y@0", 1, 4), ("x@10", 1, 12), ("x@10", 3, 15)]
    assert [r[:2] for r in run(Materialized("w").with_caching_disabled())] == [
        ("x@0", 1), ("x@0", 2), ("x@0", 3), ("y@0", 1), ("x@10", 1), ("x@10", 2),
        ("x@10", 3)]


def test_emit_on_window_close_is_not_cached() -> None:
    b = StreamsBuilder()
    (b.stream("in", consumed=Consumed(S, S)).group_by_key(Grouped(S, S))
     .windowed_by(TimeWindows.of_size_with_no_grace(10))
     .emit_strategy(EmitStrategy.on_window_close())
     .count(Materialized("w")))
    with TopologyTestDriver(b.build(), {"application.id": "app"}) as d:
        assert not isinstance(d.get_state_store("w"), CachingWindowStore)


def test_a_grouped_table_count_is_cached() -> None:
    b = StreamsBuilder()
    (b.table("in", consumed=Consumed(S, S))
     .group_by(lambda k, v: (v, k), Grouped(S, S))
     .count(Materialized("by-value"))
     .to_stream().to("out", Produced(S, L)))
    with TopologyTestDriver(b.build(), {"application.id": "app"}) as d:
        source = d.create_input_topic("in", S, S)
        source.pipe_input("u1", "red", 1)
        source.pipe_input("u2", "red", 2)
        source.pipe_input("u1", "blue", 3)
        # each repartitioned record is processed and committed on its own, as in Kafka's
        # driver: the subtraction and the addition come out separately
        assert d.create_output_topic("out", S, L).read_key_values_to_list() == [
            ("red", 1), ("red", 2), ("red", 1), ("blue", 1)]
        store: Any = d.get_state_store("by-value")
        assert isinstance(store, CachingKeyValueStore) and store.caching
        assert dict(store.all()) == {"red": 1, "blue": 1}


def test_a_flush_goes_on_until_no_store_downstream_is_dirty() -> None:
    """An aggregation of an aggregation in one task: what the first store's flush forwards
    updates the second's cache, which is flushed in the same commit, whatever the order the
    task keeps its stores in (else a commit would leave updates of committed inputs behind)."""
    b = StreamsBuilder()
    (b.stream("in", consumed=Consumed(S, S)).group_by_key(Grouped(S, S))
     .count(Materialized("up"))
     .to_stream().group_by_key(Grouped(S, L))
     .reduce(lambda total, n: total + n, Materialized("down", value_serde=L))
     .to_stream().to("out", Produced(S, L)))
    with TopologyTestDriver(b.build(), {"application.id": "app"}) as d:
        (task,) = d.tasks
        assert list(task.stores) == ["up", "down"]
        task.stores = dict(reversed(list(task.stores.items())))  # downstream first
        source = d.create_input_topic("in", S, S)
        out = d.create_output_topic("out", S, L)
        source.pipe_input("a", "x", 1)
        assert out.read_key_values_to_list() == [("a", 1)]
        source.pipe_input("a", "x", 2)
        assert out.read_key_values_to_list() == [("a", 3)]  # 1 + 2
        assert not any(getattr(s, "dirty", False) for s in task.stores.values())
