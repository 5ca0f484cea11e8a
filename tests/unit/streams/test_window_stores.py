"""Window and session stores: Kafka's store and changelog key formats, range scans that keep
one key's windows apart from a longer key's, exact retention expiry at the boundary, stores of
duplicates, and restoration from changelog records (also those a windowed aggregation wrote)."""

from __future__ import annotations

from typing import Any

from strom.streams import (
    EmitStrategy,
    Materialized,
    SessionStoreBuilder,
    SessionWindows,
    TimeWindows,
    Window,
    Windowed,
    WindowStoreBuilder,
)
from strom.streams.stores.session import SessionStore
from strom.streams.stores.window import TimestampedWindowStore, WindowStore
from tests.unit.streams.windowing import L, S, windowed


class Context:
    """The task side of a store: collects its changelog records."""

    task_id = "0_0"
    partition = 0

    def __init__(self) -> None:
        self.logged: list[tuple[str, bytes, bytes | None, int]] = []

    def log_change(self, topic: str, key: bytes, value: bytes | None, timestamp: int) -> None:
        self.logged.append((topic, key, value, timestamp))

    def changelog_topic(self, store_name: str) -> str:
        return f"app-{store_name}-changelog"


def long(n: int) -> bytes:
    return n.to_bytes(8, "big", signed=True)


def window_store(retention: int = 100, size: int = 10, **options: Any
                 ) -> tuple[WindowStore, Context]:
    store = WindowStoreBuilder("w", retention, size, S, L, **options).build("")
    context = Context()
    store.init(context)
    return store, context


def test_window_store_key_and_changelog_are_kafkas() -> None:
    store, context = window_store()
    store.put("a", 5, 20, timestamp=25)
    key = b"a" + long(20) + (0).to_bytes(4, "big")
    assert context.logged == [("app-w-changelog", key, long(5), 25)]
    assert list(store.engine.range(None, None)) == [(key, long(5))]
    store.put("a", None, 20)
    assert context.logged[-1][1:3] == (key, None)
    assert store.fetch("a", 20) is None
    timestamped, context = window_store(timestamped=True)
    assert isinstance(timestamped, TimestampedWindowStore)
    timestamped.put("a", 5, 20, timestamp=25)
    assert context.logged == [("app-w-changelog", key, long(5), 25)]  # the plain value
    assert list(timestamped.engine.range(None, None)) == [(key, long(25) + long(5))]
    assert timestamped.fetch_with_timestamp("a", 20) == (5, 25)


def test_ranges_keep_a_keys_windows_apart_from_a_longer_keys() -> None:
    store, _ = window_store()
    for key, start in (("a", 0), ("a", 10), ("a", 20), ("ab", 10), ("b", 10)):
        store.put(key, start, start)
    assert list(store.fetch_range("a", 5, 20)) == [(10, 10), (20, 20)]
    assert list(store.fetch_range("a", 0, 30, reverse=True)) == [(20, 20), (10, 10), (0, 0)]
    assert [(w.key, w.window, v) for w, v in store.fetch_key_range("a", "ab", 10, 10)] == [
        ("a", Window(10, 20), 10), ("ab", Window(10, 20), 10)]
    assert [(w.key, w.window.start) for w, _ in store.fetch_all(10, 20)] == [
        ("a", 10), ("ab", 10), ("b", 10), ("a", 20)]  # by start, then key
    assert store.approximate_num_entries() == 5


def test_windows_older_than_stream_time_minus_retention_expire() -> None:
    store, context = window_store(retention=20)
    for start in (0, 10, 20, 30):
        store.put("a", start, start)
    # The store's stream time is 30: starts from 10 on live, 0 has expired.
    assert [start for start, _ in store.fetch_range("a", 0, 100)] == [10, 20, 30]
    assert store.fetch("a", 0) is None
    assert store.approximate_num_entries() == 3
    store.put("a", 9, 9)  # older than 30 - 20: dropped, not logged
    assert store.expired == 1 and len(context.logged) == 4
    store.put("a", 10, 10)  # exactly 30 - 20: kept
    assert store.fetch("a", 10) == 10
    store.put("b", 31, 31)  # now 10 is older than 31 - 20
    assert store.fetch("a", 10) is None
    assert [w.window.start for w, _ in store.all()] == [20, 30, 31]


def test_a_store_of_duplicates_numbers_each_put() -> None:
    store, context = window_store(retain_duplicates=True)
    store.put("a", 1, 10)
    store.put("a", 2, 10)
    store.put("a", None, 10)  # ignored
    assert list(store.fetch_range("a", 0, 100)) == [(10, 1), (10, 2)]
    assert [key[-4:] for _, key, _, _ in context.logged] == [
        (1).to_bytes(4, "big"), (2).to_bytes(4, "big")]
    builder = WindowStoreBuilder("w", 100, 10, retain_duplicates=True)
    assert builder.changelog_config == {"cleanup.policy": "delete",
                                        "retention.ms": str(100 + 86_400_000)}


def test_a_window_store_restores_from_its_changelog_records() -> None:
    store, context = window_store(retention=20, timestamped=True)
    for key, start, ts in (("a", 0, 3), ("a", 10, 12), ("b", 10, 15), ("a", 10, 17)):
        store.put(key, start, start, timestamp=ts)
    store.put("b", None, 10)
    restored, _ = window_store(retention=20, timestamped=True)
    for _, raw, value, timestamp in context.logged:
        restored.restore(raw, value, timestamp)
    assert isinstance(restored, TimestampedWindowStore)
    assert list(restored.fetch_all_with_timestamps(0, 100)) == [
        (Windowed("a", Window(0, 10)), 0, 3), (Windowed("a", Window(10, 20)), 10, 17)]
    restored.restore(b"a" + long(40) + bytes(4), long(40), 41)  # moves its stream time
    assert restored.fetch("a", 10) is None


def test_an_aggregations_changelog_restores_its_store() -> None:
    windows = TimeWindows.of_size_and_grace(10, 5)
    with windowed(lambda g: g.windowed_by(windows).count(Materialized("counts"))) as h:
        for key, ts in (("a", 1), ("b", 4), ("a", 12), ("a", 3), ("b", 30)):
            h.pipe(key, "x", ts)
        changelog = list(h.driver.outputs["app-counts-changelog"])
        assert [(w.key, w.value, w.timestamp) for w in changelog][:2] == [
            (b"a" + long(0) + bytes(4), long(1), 1), (b"b" + long(0) + bytes(4), long(1), 4)]
        live = list(h.store().fetch_all_with_timestamps(0, 100))
        store = h.driver.topology.stores["counts"].build("", S, L)
        store.init(Context())
        for written in changelog:
            assert written.key is not None
            store.restore(written.key, written.value, written.timestamp)
        assert isinstance(store, TimestampedWindowStore)
        assert list(store.fetch_all_with_timestamps(0, 100)) == live
        # Retention 15 from the latest window start, 30: only b's window is left.
        assert [(w.key, w.window.start) for w, _, _ in live] == [("b", 30)]


def session_store(retention: int = 100) -> tuple[SessionStore, Context]:
    store = SessionStoreBuilder("s", retention, S, L).build("")
    context = Context()
    store.init(context)
    return store, context


def test_session_store_key_is_key_end_start_and_finds_sessions() -> None:
    store, context = session_store()
    store.put(Windowed("a", Window(0, 5)), 2, timestamp=5)
    assert context.logged == [("app-s-changelog", b"a" + long(5) + long(0), long(2), 5)]
    store.put(Windowed("a", Window(20, 30)), 3)
    store.put(Windowed("ab", Window(6, 6)), 1)
    store.put(Windowed("b", Window(5, 5)), 1)
    found = [(w.key, w.window, v) for w, v in store.find_sessions("a", 4, 25)]
    assert found == [("a", Window(0, 5), 2), ("a", Window(20, 30), 3)]
    assert [w.window for w, _ in store.find_sessions("a", 6, 25)] == [Window(20, 30)]
    assert [w.window for w, _ in store.find_sessions("a", 0, 19)] == [Window(0, 5)]
    assert store.fetch_session("a", 20, 30) == 3
    assert [(w.key, w.window.end) for w, _ in store.find_sessions_by_end(5, 6)] == [
        ("a", 5), ("b", 5), ("ab", 6)]
    store.remove(Windowed("a", Window(0, 5)))
    assert [w.window for w, _ in store.fetch("a")] == [Window(20, 30)]


def test_sessions_expire_and_restore() -> None:
    store, context = session_store(retention=10)
    store.put(Windowed("a", Window(0, 5)), 1)
    store.put(Windowed("a", Window(9, 15)), 2)  # stream time 15: ends from 5 on live
    assert store.fetch_session("a", 0, 5) == 1
    store.put(Windowed("b", Window(16, 16)), 3)  # 5 is older than 16 - 10
    assert store.fetch_session("a", 0, 5) is None
    store.put(Windowed("a", Window(0, 5)), 4)
    assert store.expired == 1
    restored, _ = session_store(retention=10)
    for _, key, value, timestamp in context.logged:
        restored.restore(key, value, timestamp)
    assert [(w.key, w.window, v) for w, v in restored.all()] == [
        ("a", Window(9, 15), 2), ("b", Window(16, 16), 3)]


def test_a_session_aggregations_changelog_has_its_tombstones() -> None:
    windows = SessionWindows.of_inactivity_gap_with_no_grace(10)
    with windowed(lambda g: g.windowed_by(windows).emit_strategy(
            EmitStrategy.on_window_close()).count(Materialized("s"))) as h:
        h.pipe("a", "x", 0)
        h.pipe("a", "x", 4)
        assert [(w.key, w.value, w.timestamp)
                for w in h.driver.outputs["app-s-changelog"]] == [
            (b"a" + long(0) + long(0), long(1), 0),
            (b"a" + long(0) + long(0), None, 4),
            (b"a" + long(4) + long(0), long(2), 4)]
