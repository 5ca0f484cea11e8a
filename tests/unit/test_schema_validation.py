"""Validation on produce (strom.broker.schema_validation, schema_catalog): the wire header,
ids and subjects per strategy, soft deletes, tombstones, the decode check, refreshes, and the
read_committed reading of `_schemas`."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Sequence
from typing import Any

import pytest

from strom.broker.schema_catalog import RawRecord, SchemaCatalog, committed_records
from strom.broker.schema_validation import MAX_CACHED_VERDICTS, SchemaValidator, sides
from strom.config.topic import TOPIC_CONFIGS, ConfigError, LogConfig, validate_topic_configs
from strom.protocol import compression
from strom.protocol.control_batch import ABORT, COMMIT
from strom.protocol.record_builder import build_batch
from strom.protocol.record_errors import RecordsError
from strom.protocol.record_walk import record_heads, record_heads_py
from strom.protocol.records import validate_produce_records
from strom.registry import wire
from strom.registry.records import (
    DeleteSubjectKey,
    DeleteSubjectValue,
    Record,
    SchemaKey,
    SchemaValue,
)
from strom.registry.schemas.base import SchemaReference, SchemaType

AVRO = json.dumps({"type": "record", "name": "User", "namespace": "com.acme",
                   "fields": [{"name": "name", "type": "string"}]})
JSON_SCHEMA = json.dumps({"title": "Order", "type": "object",
                          "properties": {"n": {"type": "integer"}}, "required": ["n"]})
PROTO = ('syntax = "proto3";\npackage shop;\n'
         'message A { int32 x = 1; }\nmessage B { string s = 1; }\n')


def schema_record(subject: str, version: int, schema_id: int, schema: str,
                  kind: SchemaType = SchemaType.AVRO, deleted: bool = False,
                  references: tuple[SchemaReference, ...] = ()) -> RawRecord:
    return Record(SchemaKey(subject, version), SchemaValue(
        subject, version, schema_id, schema, kind, references, deleted)).encode()


BASE_RECORDS = [
    schema_record("orders-value", 1, 1, AVRO),
    schema_record("com.acme.User", 1, 1, AVRO),
    schema_record("orders-com.acme.User", 1, 1, AVRO),
    schema_record("other-value", 1, 2, JSON_SCHEMA, SchemaType.JSON),
    schema_record("Order", 1, 2, JSON_SCHEMA, SchemaType.JSON),
    schema_record("orders-value", 2, 3, PROTO, SchemaType.PROTOBUF),
    schema_record("shop.B", 1, 3, PROTO, SchemaType.PROTOBUF),
    schema_record("orders-key", 1, 4, '"string"'),
]


class ListSource:
    """`_schemas` as a list that tests append to; counts reads."""

    def __init__(self, records: Sequence[RawRecord]) -> None:
        self.records = list(records)
        self.reads = 0

    async def read(self, start: int) -> tuple[list[RawRecord], int, bool]:
        self.reads += 1
        return self.records[start:], len(self.records), False


def config(**overrides: str) -> LogConfig:
    values = {k.name: k.default for k in TOPIC_CONFIGS.values()}
    values.update(overrides)
    return LogConfig.from_effective(values)


VALUE_ON = {"confluent.value.schema.validation": "true"}


def batch(values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None,
          codec: int = compression.NONE) -> Any:
    keys = keys or [None] * len(values)
    data = build_batch([(k, v, (), 1000) for k, v in zip(keys, values, strict=True)],
                       compression=codec)
    return validate_produce_records(
        data, max_message_bytes=2**30, timestamp_type="CreateTime", now_ms=1000,
        timestamp_before_max_ms=2**63 - 1, timestamp_after_max_ms=2**63 - 1,
        max_decompressed_bytes=2**30)


def avro_user(name: str) -> bytes:
    data = name.encode()
    return wire.encode_varint(len(data)) + data


def check(records: Sequence[RawRecord], values: Sequence[bytes | None], topic: str = "orders",
          keys: Sequence[bytes | None] | None = None, codec: int = compression.NONE,
          **configs: str) -> RecordsError | None:
    validator = SchemaValidator(SchemaCatalog(ListSource(records)))
    cfg = config(**(configs or VALUE_ON))
    return asyncio.run(validator.check(topic, cfg, batch(values, keys, codec), 2**30))


def messages(error: RecordsError | None) -> dict[int, str]:
    assert error is not None
    assert error.error_code == 87
    return dict(error.record_errors)


GOOD = wire.frame(1, avro_user("ann"))


def test_good_records_pass_and_tombstones_too() -> None:
    assert check(BASE_RECORDS, [GOOD, GOOD, None, wire.frame(1, b"anything")]) is None


def test_compressed_batches_are_checked() -> None:
    assert check(BASE_RECORDS, [GOOD] * 50, codec=compression.GZIP) is None
    errors = messages(check(BASE_RECORDS, [GOOD] * 10 + [b"plain"], codec=compression.ZSTD))
    assert list(errors) == [10]


def test_wire_header_errors() -> None:
    errors = messages(check(BASE_RECORDS, [GOOD, b"no magic byte", b"", b"\x00\x00\x00",
                                           b"\x01\x00\x00\x00\x01x"]))
    assert sorted(errors) == [1, 2, 3, 4]
    assert all("wire format" in m for m in errors.values())


def test_one_bad_record_refuses_the_batch_with_its_index() -> None:
    error = check(BASE_RECORDS, [GOOD] * 5 + [wire.frame(99, b"x")] + [GOOD] * 5)
    assert messages(error) == {5: "Schema id 99 of the record's value is not registered"}
    assert error is not None and "1 record errors" in error.message


def test_id_under_another_subject() -> None:
    errors = messages(check(BASE_RECORDS, [wire.frame(2, b"{}")]))
    assert errors[0] == ("Schema id 2 of the record's value is not registered under subject "
                         "'orders-value' (TopicNameStrategy)")
    assert check(BASE_RECORDS, [wire.frame(2, b"{}")], topic="other") is None


def test_strategy_short_and_class_names() -> None:
    for name in ("RecordNameStrategy",
                 "io.confluent.kafka.serializers.subject.RecordNameStrategy"):
        cfg = {**VALUE_ON, "confluent.value.subject.name.strategy": name}
        assert check(BASE_RECORDS, [GOOD, wire.frame(2, b"{}")], topic="x", **cfg) is None
    cfg = {**VALUE_ON, "confluent.value.subject.name.strategy": "TopicRecordNameStrategy"}
    assert check(BASE_RECORDS, [GOOD], topic="orders", **cfg) is None
    errors = messages(check(BASE_RECORDS, [GOOD], topic="x", **cfg))
    assert "'x-com.acme.User' (TopicRecordNameStrategy)" in errors[0]
    with pytest.raises(ConfigError):
        validate_topic_configs({"confluent.value.subject.name.strategy": "Nope"})


def test_record_name_needs_a_named_schema() -> None:
    cfg = {"confluent.key.schema.validation": "true",
           "confluent.key.subject.name.strategy": "RecordNameStrategy"}
    errors = messages(check(BASE_RECORDS, [b"v"], keys=[wire.frame(4, b"\x02a")], **cfg))
    assert "has no record name for RecordNameStrategy" in errors[0]


def test_key_validation() -> None:
    cfg = {"confluent.key.schema.validation": "true"}
    assert check(BASE_RECORDS, [b"v", b"v"], keys=[wire.frame(4, b"\x02a"), None],
                 **cfg) is None
    errors = messages(check(BASE_RECORDS, [b"v"], keys=[b"plain"], **cfg))
    assert "record's key is not in the schema registry's wire format" in errors[0]


def test_protobuf_message_indexes_and_record_names() -> None:
    b_value = wire.frame(3, b"", [1])  # shop.B
    a_value = wire.frame(3, b"", [0])
    cfg = {**VALUE_ON, "confluent.value.subject.name.strategy": "RecordNameStrategy"}
    assert check(BASE_RECORDS, [b_value], topic="x", **cfg) is None
    errors = messages(check(BASE_RECORDS, [a_value, wire.frame(3, b"", [7]),
                                           wire.encode_header(3) + b"\xff"], topic="x", **cfg))
    assert "'shop.A' (RecordNameStrategy)" in errors[0]
    assert "no record name" in errors[1]
    assert "invalid Protobuf message indexes" in errors[2]
    assert check(BASE_RECORDS, [a_value, b_value]) is None  # TopicNameStrategy: the id only


def test_soft_deleted_versions_are_not_registered() -> None:
    records = [*BASE_RECORDS, schema_record("orders-value", 1, 1, AVRO, deleted=True)]
    errors = messages(check(records, [GOOD]))
    assert "not registered under subject 'orders-value'" in errors[0]
    records = [*BASE_RECORDS, Record(DeleteSubjectKey("orders-value"),
                                     DeleteSubjectValue("orders-value", 2)).encode()]
    assert 0 in messages(check(records, [GOOD]))
    records = [*BASE_RECORDS, (Record(SchemaKey("orders-value", 1), None).encode()[0], None)]
    assert 0 in messages(check(records, [GOOD]))


def test_decode_check() -> None:
    cfg = {**VALUE_ON, "strom.schema.validation.decode": "true"}
    bad_avro = wire.frame(1, b"\x10ab")  # a string of 8 bytes with 2 present
    trailing = wire.frame(1, avro_user("ann") + b"zz")
    errors = messages(check(BASE_RECORDS, [GOOD, bad_avro, trailing], **cfg))
    assert sorted(errors) == [1, 2]
    assert "does not decode with schema id 1 (AVRO)" in errors[1]
    assert "bytes left" in errors[2]
    errors = messages(check(BASE_RECORDS, [wire.frame(2, b'{"n": 1}'), wire.frame(2, b'{"n":"x"}'),
                                           wire.frame(2, b"not json")], topic="other", **cfg))
    assert sorted(errors) == [1, 2]
    assert "(JSON)" in errors[1] and "not JSON" in errors[2]
    proto_good = wire.frame(3, b"\x0a\x02hi", [1])  # B{s="hi"}
    proto_bad = wire.frame(3, b"\x0a\x09hi", [1])  # length past the end
    errors = messages(check(BASE_RECORDS, [proto_good, proto_bad], **cfg))
    assert list(errors) == [1] and "(PROTOBUF)" in errors[1]


def test_unknown_id_refreshes_once_and_picks_up_new_schemas() -> None:
    async def body() -> None:
        source = ListSource(BASE_RECORDS)
        now = [1000.0]
        catalog = SchemaCatalog(source, clock=lambda: now[0])
        validator = SchemaValidator(catalog)
        cfg = config(**VALUE_ON)
        new = wire.frame(7, avro_user("x"))
        error = await validator.check("orders", cfg, batch([new] * 100), 2**30)
        assert error is not None and len(error.record_errors) == 100
        assert source.reads == 2  # the load, then one refresh for the miss (not per record)
        source.records.append(schema_record("orders-value", 3, 7, AVRO))
        now[0] += 0.05  # the miss is believed for RECHECK_AFTER_S
        assert await validator.check("orders", cfg, batch([new]), 2**30) is not None
        assert source.reads == 2
        now[0] += 0.06
        assert await validator.check("orders", cfg, batch([new]), 2**30) is None
        assert source.reads == 3
    asyncio.run(body())


def test_misses_refresh_at_a_bounded_rate() -> None:
    async def body() -> None:
        source = ListSource(BASE_RECORDS)
        validator = SchemaValidator(SchemaCatalog(source))
        cfg = config(**VALUE_ON)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(5):
            await validator.check("orders", cfg, batch([wire.frame(100 + i, b"")]), 2**30)
        assert source.reads <= 6
        assert loop.time() - start >= 0.35  # 4 refreshes spaced by MIN_REFRESH_INTERVAL_S
    asyncio.run(body())


def test_validation_off_costs_one_attribute() -> None:
    assert config().schema_validation is False
    assert config(**{"confluent.key.schema.validation": "true"}).schema_validation is True


def test_record_heads_c_and_python_agree() -> None:
    data = build_batch([(b"k1", b"\x00\x00\x00\x00\x01rest", (), 1), (None, b"ab", (), 1),
                        (b"k1", None, ((b"h", b"v"),), 1), (b"", b"", (), 1)])
    for value in (True, False):
        assert record_heads(data, 61, 4, value, 5) == record_heads_py(data, 61, 4, value, 5)
    assert record_heads(data, 61, 4, True, 5) == {b"\x00\x00\x00\x00\x01", b"ab", None, b""}
    with pytest.raises(RecordsError):
        record_heads(data[:-3], 61, 4, True, 5)


def test_committed_records_skip_aborted_transactions_and_markers() -> None:
    from strom.protocol.control_batch import build_control_batch

    def control_batch(base: int, pid: int, epoch: int, kind: int) -> bytes:
        raw = bytearray(build_control_batch(pid, epoch, kind == COMMIT, 1))
        struct.pack_into(">q", raw, 0, base)
        return bytes(raw)

    def data_batch(base: int, values: list[bytes], pid: int = -1) -> bytes:
        raw = bytearray(build_batch([(b"k", v, (), 1) for v in values], base_offset=base,
                                    producer_id=pid, producer_epoch=0 if pid >= 0 else -1,
                                    base_sequence=0 if pid >= 0 else -1,
                                    transactional=pid >= 0))
        return bytes(raw)

    log = (data_batch(0, [b"a"]) + data_batch(1, [b"t1", b"t2"], pid=7)
           + data_batch(3, [b"u"], pid=8)
           + control_batch(4, 7, 0, ABORT) + control_batch(5, 8, 0, COMMIT)
           + data_batch(6, [b"b"]))
    got = [(o, v) for o, (_, v) in committed_records(log, 0, [(7, 1)])]
    assert got == [(0, b"a"), (3, b"u"), (6, b"b")]
    assert [o for o, _ in committed_records(log, 3, [(7, 1)])] == [3, 6]


def test_decode_check_with_references_and_well_known_types() -> None:
    base = 'syntax = "proto3";\npackage lib;\nmessage Money { int64 cents = 1; }\n'
    main = ('syntax = "proto3";\npackage shop;\nimport "lib/money.proto";\n'
            'import "google/protobuf/timestamp.proto";\n'
            'message Sale { lib.Money price = 1; google.protobuf.Timestamp at = 2; }\n')
    records = [schema_record("lib/money.proto", 1, 20, base, SchemaType.PROTOBUF),
               schema_record("sales-value", 1, 21, main, SchemaType.PROTOBUF,
                             references=(SchemaReference("lib/money.proto",
                                                         "lib/money.proto", 1),))]
    cfg = {**VALUE_ON, "strom.schema.validation.decode": "true"}
    sale = b"\x0a\x02\x08\x05\x12\x02\x08\x01"  # price{cents=5} at{seconds=1}
    assert check(records, [wire.frame(21, sale, [0])], topic="sales", **cfg) is None
    errors = messages(check(records, [wire.frame(21, b"\x0a\x05\x08", [0])], topic="sales",
                            **cfg))
    assert "does not decode with schema id 21 (PROTOBUF)" in errors[0]
    missing = records[1:]  # the reference is not registered: the schema cannot be used
    errors = messages(check(missing, [wire.frame(21, sale, [0])], topic="sales", **cfg))
    assert "cannot be used to decode" in errors[0]


def test_verdict_cache_is_bounded() -> None:
    async def body() -> None:
        validator = SchemaValidator(SchemaCatalog(ListSource(BASE_RECORDS)))
        await validator.catalog.ensure_loaded()
        side = sides(config(**VALUE_ON))[0]
        for i in range(MAX_CACHED_VERDICTS + 10):
            await validator._verdict("orders", side, b"x" + i.to_bytes(4, "big"))
        assert len(validator._verdicts) <= MAX_CACHED_VERDICTS
    asyncio.run(body())


def test_peer_source_fetches_from_the_leader_when_the_engine_cannot_read() -> None:
    from types import SimpleNamespace

    from strom.broker.schema_catalog import LogSource, PeerSource
    from strom.storage.api import NotLeader, StorageUnavailable

    def not_here() -> Any:
        raise NotLeader("led elsewhere")

    first = build_batch([(k, v, (), 1) for k, v in BASE_RECORDS[:3]])
    second = bytearray(build_batch([(k, v, (), 1) for k, v in BASE_RECORDS[3:]]))
    struct.pack_into(">q", second, 0, 3)
    log = first + bytes(second)
    asked: list[tuple[int, int]] = []

    async def fetch(node: int, offset: int) -> Any:
        asked.append((node, offset))
        data = log[len(first):] if offset == 3 else log[:len(first) + 20]  # a partial batch
        part = SimpleNamespace(partition_index=0, error_code=0, records=data,
                               aborted_transactions=(), last_stable_offset=len(BASE_RECORDS),
                               log_start_offset=0)
        return SimpleNamespace(responses=[SimpleNamespace(topic="_schemas", partitions=[part])])

    async def body() -> None:
        source = PeerSource(LogSource(not_here), lambda: 2, fetch)
        records, next_offset, reset = await source.read(0)
        assert records == BASE_RECORDS and next_offset == len(BASE_RECORDS) and not reset
        assert asked == [(2, 0), (2, 3)]
        with pytest.raises(StorageUnavailable):
            await PeerSource(LogSource(not_here), lambda: None, fetch).read(0)
    asyncio.run(body())
