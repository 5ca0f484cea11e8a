"""The RocksDB engine behind persistent stores, and default.dsl.store choosing it."""

from __future__ import annotations

from pathlib import Path

from strom.streams import Consumed, Produced, Serdes, StreamsBuilder, TopologyTestDriver
from strom.streams.stores.rocksdb import RocksDBEngine

S, L = Serdes.String(), Serdes.Long()


def test_engine_orders_keys_bytewise_and_survives_a_reopen(tmp_path: Path) -> None:
    engine = RocksDBEngine(tmp_path / "db")
    for key in (b"b", b"a", b"d", b"c", b"\x00", b"\xff"):
        engine.put(key, key * 2)
    engine.delete(b"c")
    engine.delete(b"missing")
    assert [k for k, _ in engine.range(None, None)] == [b"\x00", b"a", b"b", b"d", b"\xff"]
    assert list(engine.range(b"a", b"c")) == [(b"a", b"aa"), (b"b", b"bb")]
    assert [k for k, _ in engine.range(b"a", b"d", reverse=True)] == [b"d", b"b", b"a"]
    assert engine.get(b"c") is None and engine.get(b"d") == b"dd"
    engine.flush()
    engine.close()
    reopened = RocksDBEngine(tmp_path / "db")
    assert reopened.get(b"\xff") == b"\xff\xff"
    assert reopened.count() > 0  # RocksDB's estimate
    reopened.close()


def test_the_driver_runs_rocksdb_stores_when_asked() -> None:
    b = StreamsBuilder()
    b.stream("in", consumed=Consumed(S, S)).group_by_key().count().to_stream() \
        .to("out", Produced(S, L))
    with TopologyTestDriver(b.build(), {"application.id": "app",
                                        "default.dsl.store": "rocksDB"}) as driver:
        source = driver.create_input_topic("in", S, S)
        for key in "abca":
            source.pipe_input(key, "v", 1)
        store = driver.tasks[0].stores[next(iter(driver.tasks[0].stores))]
        assert store.persistent
        assert driver.create_output_topic("out", S, L).read_key_values_to_map() == {
            "a": 2, "b": 1, "c": 1}


def test_a_join_window_store_on_rocksdb_survives_a_reopen(tmp_path: Path) -> None:
    """default.dsl.store=rocksDB puts a stream-stream join's window stores on disk too: a
    store opened again over the same directory has its records, its stream time (expiry goes
    on from it) and its sequence numbers (a new record of a key and timestamp already held is
    kept beside the old one)."""
    from strom.streams.stores.rocksdb import rocksdb_engine
    from strom.streams.stream_join import JoinWindowStoreBuilder

    class Log:
        partition = 0
        task_id = "0_0"

        def changelog_topic(self, store: str) -> str:
            return f"{store}-changelog"

        def log_change(self, topic: str, key: bytes, value: bytes | None, ts: int) -> None:
            pass

    builder = JoinWindowStoreBuilder("w", S, S, retention_ms=100)
    first = builder.build(str(tmp_path), default_engine=rocksdb_engine)
    assert first.persistent
    first.init(Log())
    for key, timestamp in (("a", 120), ("a", 10), ("a", 21), ("b", 50)):
        first.put(key, f"{key}@{timestamp}", timestamp)  # a@10 is too old already
    first.flush()
    first.close()
    again = builder.build(str(tmp_path), default_engine=rocksdb_engine)
    again.init(Log())
    assert again.observed_stream_time == 120
    assert list(again.fetch("a", 0, 200)) == [(21, "a@21"), (120, "a@120")]
    assert again.put("a", "a@120 again", 120)  # the first record's sequence number is taken
    assert list(again.fetch("a", 0, 200)) == [(21, "a@21"), (120, "a@120"),
                                              (120, "a@120 again")]
    assert again.put("b", "late", 19) is False
    again.put("c", "c@160", 160)  # stream time 160: a@21 and b@50 expire
    assert [(k, t) for k, t, _ in again.all()] == [("a", 120), ("a", 120), ("c", 160)]
    again.close()
    memory = builder.build(str(tmp_path / "m"))  # default.dsl.store=in_memory
    assert not memory.persistent
