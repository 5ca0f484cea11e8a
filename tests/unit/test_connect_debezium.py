"""Debezium's ExtractNewRecordState SMT (strom.connect.transforms.debezium): change event
envelopes {before, after, source, op, ts_ms} to the row state, with Debezium's delete and
tombstone handling and add.fields; and its registration under Debezium's class name."""

from __future__ import annotations

from typing import Any

import pytest

from strom.connect import plugins
from strom.connect.data import (
    INT32_SCHEMA,
    INT64_SCHEMA,
    OPTIONAL_INT64_SCHEMA,
    OPTIONAL_STRING_SCHEMA,
    STRING_SCHEMA,
    Schema,
    SchemaBuilder,
    Struct,
)
from strom.connect.errors import ConfigException
from strom.connect.records import SinkRecord
from strom.connect.transforms.debezium import ExtractNewRecordState

ROW = (SchemaBuilder.struct().name("db.public.t.Value").optional()
       .field("id", INT32_SCHEMA).field("name", OPTIONAL_STRING_SCHEMA).build())
SOURCE = (SchemaBuilder.struct().name("io.debezium.connector.postgresql.Source")
          .field("db", STRING_SCHEMA).field("table", STRING_SCHEMA)
          .field("lsn", OPTIONAL_INT64_SCHEMA).field("ts_ms", INT64_SCHEMA).build())
ENVELOPE = (SchemaBuilder.struct().name("db.public.t.Envelope")
            .field("before", ROW).field("after", ROW).field("source", SOURCE)
            .field("op", STRING_SCHEMA).field("ts_ms", OPTIONAL_INT64_SCHEMA).build())
KEY = SchemaBuilder.struct().name("db.public.t.Key").field("id", INT32_SCHEMA).build()


def row(id_: int, name: str | None) -> Struct:
    return Struct(ROW).put("id", id_).put("name", name)


def envelope(op: str, before: Struct | None, after: Struct | None) -> Struct:
    source = (Struct(SOURCE).put("db", "db").put("table", "t").put("lsn", 1234)
              .put("ts_ms", 1_700_000_000_000))
    return (Struct(ENVELOPE).put("before", before).put("after", after).put("source", source)
            .put("op", op).put("ts_ms", 1_700_000_000_123))


def record(value: Any, schema: Schema | None = ENVELOPE, key_id: int = 1) -> SinkRecord:
    return SinkRecord(topic="db.public.t", kafka_partition=0, key_schema=KEY,
                      key=Struct(KEY).put("id", key_id), value_schema=schema, value=value,
                      kafka_offset=7)


def smt(**configs: str) -> ExtractNewRecordState:
    transform = ExtractNewRecordState()
    transform.configure(configs)
    return transform


def test_registered_under_debeziums_class_name_and_alias() -> None:
    assert plugins.transformation("io.debezium.transforms.ExtractNewRecordState") \
        is ExtractNewRecordState
    assert plugins.transformation("ExtractNewRecordState") is ExtractNewRecordState
    assert "io.debezium.transforms.ExtractNewRecordState" in plugins.full_names("transformation")


@pytest.mark.parametrize("op", ["c", "r", "u"])
def test_create_read_update_become_the_after_state(op: str) -> None:
    before = row(1, "old") if op == "u" else None
    out = smt().apply(record(envelope(op, before, row(1, "new"))))
    assert out is not None
    assert out.value_schema == ROW
    assert out.value == row(1, "new")
    assert out.key == Struct(KEY).put("id", 1)  # the key is untouched
    assert out.kafka_offset == 7 and out.topic == "db.public.t"


def test_deletes_and_tombstones_are_dropped_by_default() -> None:
    transform = smt()
    assert transform.apply(record(envelope("d", row(1, "x"), None))) is None
    assert transform.apply(record(None, None)) is None


def test_drop_tombstones_false_keeps_tombstones() -> None:
    tombstone = record(None, None)
    assert smt(**{"drop.tombstones": "false"}).apply(tombstone) is tombstone


def test_delete_handling_none_keeps_deletes_with_a_null_value() -> None:
    out = smt(**{"delete.handling.mode": "none"}).apply(
        record(envelope("d", row(1, "x"), None)))
    assert out is not None and out.value is None
    assert out.key == Struct(KEY).put("id", 1)


def test_delete_handling_rewrite_adds_deleted_field() -> None:
    transform = smt(**{"delete.handling.mode": "rewrite"})
    deleted = transform.apply(record(envelope("d", row(1, "x"), None)))
    assert deleted is not None
    assert deleted.value.get("id") == 1 and deleted.value.get("name") == "x"
    assert deleted.value.get("__deleted") == "true"
    created = transform.apply(record(envelope("c", None, row(2, "y"))))
    assert created is not None and created.value.get("__deleted") == "false"
    assert created.value_schema == deleted.value_schema
    field = created.value_schema.field("__deleted")
    assert field is not None and field.schema == OPTIONAL_STRING_SCHEMA


@pytest.mark.parametrize(("mode", "delete", "tombstone"), [
    ("drop", "dropped", "dropped"),
    ("tombstone", "dropped", "kept"),
    ("rewrite", "rewritten", "dropped"),
    ("rewrite-with-tombstone", "rewritten", "kept"),
    ("delete-to-tombstone", "tombstone", "dropped"),
])
def test_delete_tombstone_handling_mode(mode: str, delete: str, tombstone: str) -> None:
    transform = smt(**{"delete.tombstone.handling.mode": mode,
                       # the newer setting wins over the legacy ones
                       "delete.handling.mode": "none", "drop.tombstones": "false"})
    out = transform.apply(record(envelope("d", row(1, "x"), None)))
    if delete == "dropped":
        assert out is None
    elif delete == "rewritten":
        assert out is not None and out.value.get("__deleted") == "true"
    else:
        assert out is not None and out.value is None and out.value_schema is None
        assert out.key == Struct(KEY).put("id", 1)
    original = record(None, None)
    kept = transform.apply(original)
    assert (kept is original) if tombstone == "kept" else (kept is None)


def test_add_fields_from_the_envelope_and_the_source() -> None:
    transform = smt(**{"add.fields": "op,table,source.ts_ms,lsn,ts_ms"})
    out = transform.apply(record(envelope("u", row(1, "a"), row(1, "b"))))
    assert out is not None
    value = out.value
    assert value.get("name") == "b"
    assert value.get("__op") == "u"
    assert value.get("__table") == "t"
    assert value.get("__source_ts_ms") == 1_700_000_000_000
    assert value.get("__lsn") == 1234
    assert value.get("__ts_ms") == 1_700_000_000_123
    names = [f.name for f in out.value_schema.fields]
    assert names == ["id", "name", "__op", "__table", "__source_ts_ms", "__lsn", "__ts_ms"]
    added = [out.value_schema.field(n) for n in names[2:]]
    assert all(f is not None and f.schema.optional for f in added)


def test_add_headers() -> None:
    out = smt(**{"add.headers": "op,db"}).apply(record(envelope("c", None, row(1, "a"))))
    assert out is not None
    assert out.headers.last_with_name("__op").value == "c"  # type: ignore[union-attr]
    assert out.headers.last_with_name("__db").value == "db"  # type: ignore[union-attr]


def test_schemaless_envelopes() -> None:
    transform = smt(**{"delete.handling.mode": "rewrite", "add.fields": "op,table"})
    value = {"before": None, "after": {"id": 1, "name": "a"}, "op": "c",
             "source": {"table": "t", "db": "db"}, "ts_ms": 5}
    out = transform.apply(record(value, None))
    assert out is not None and out.value_schema is None
    assert out.value == {"id": 1, "name": "a", "__op": "c", "__table": "t",
                         "__deleted": "false"}
    deleted = transform.apply(record({"before": {"id": 1, "name": "a"}, "after": None,
                                      "op": "d", "source": {"table": "t"}}, None))
    assert deleted is not None and deleted.value["__deleted"] == "true"
    assert smt().apply(record({"before": {"id": 1}, "after": None, "op": "d"}, None)) is None


def test_truncate_is_dropped_and_other_records_pass() -> None:
    transform = smt()
    assert transform.apply(record({"op": "t", "before": None, "after": None}, None)) is None
    plain = record(row(1, "x"), ROW)
    assert transform.apply(plain) is plain
    heartbeat = record({"ts_ms": 1}, None)
    assert transform.apply(heartbeat) is heartbeat


def test_bad_modes_are_config_errors() -> None:
    with pytest.raises(ConfigException, match=r"delete\.handling\.mode"):
        smt(**{"delete.handling.mode": "sometimes"})
    with pytest.raises(ConfigException, match=r"delete\.tombstone\.handling\.mode"):
        smt(**{"delete.tombstone.handling.mode": "keep"})


def test_through_a_transformation_chain() -> None:
    from strom.connect.transforms import TransformationChain
    chain = TransformationChain.from_config({
        "transforms": "unwrap",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "transforms.unwrap.drop.tombstones": "false"})
    out = chain.apply(record(envelope("c", None, row(3, "z"))))
    assert out is not None and out.value == row(3, "z")
