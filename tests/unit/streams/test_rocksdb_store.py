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
