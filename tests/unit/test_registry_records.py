"""strom.registry.records: the `_schemas` records in Confluent's format."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.registry.records import (
    ClearSubjectKey,
    ClearSubjectValue,
    ConfigKey,
    ConfigValue,
    DeleteSubjectKey,
    DeleteSubjectValue,
    Key,
    ModeKey,
    ModeValue,
    NoopKey,
    Record,
    RecordFormatError,
    SchemaKey,
    SchemaValue,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from strom.registry.schemas import SchemaReference, SchemaType


@pytest.mark.parametrize(("key", "data"), [
    (SchemaKey("test", 1), b'{"keytype":"SCHEMA","subject":"test","version":1,"magic":1}'),
    (ConfigKey(None), b'{"keytype":"CONFIG","subject":null,"magic":0}'),
    (ConfigKey("s"), b'{"keytype":"CONFIG","subject":"s","magic":0}'),
    (ModeKey(None), b'{"keytype":"MODE","subject":null,"magic":0}'),
    (DeleteSubjectKey("s"), b'{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}'),
    (ClearSubjectKey("s"), b'{"keytype":"CLEAR_SUBJECT","subject":"s","magic":0}'),
    (NoopKey(), b'{"keytype":"NOOP","magic":0}'),
])
def test_keys_as_confluent_writes_them(key: Key, data: bytes) -> None:
    assert encode_key(key) == data
    assert decode_key(data) == key


def test_schema_values() -> None:
    avro = SchemaValue("s", 2, 7, '"string"')
    assert encode_value(avro) == b'{"subject":"s","version":2,"id":7,"schema":"\\"string\\"",' \
                                 b'"deleted":false}'
    ref = SchemaReference("other.proto", "other", 3)
    proto = SchemaValue("p", 1, 8, 'syntax = "proto3";', SchemaType.PROTOBUF, (ref,), True)
    data = encode_value(proto)
    assert data is not None
    assert json.loads(data) == {
        "subject": "p", "version": 1, "id": 8, "schemaType": "PROTOBUF",
        "references": [{"name": "other.proto", "subject": "other", "version": 3}],
        "schema": 'syntax = "proto3";', "deleted": True,
    }
    assert decode_value(SchemaKey("p", 1), data) == proto
    assert decode_value(SchemaKey("s", 2), encode_value(avro)) == avro


def test_values_written_by_confluent_and_karapace() -> None:
    key = decode_key(b'{"magic":1,"keytype":"SCHEMA","subject":"orders-value","version":1}')
    value = decode_value(key, b'{"subject":"orders-value","version":1,"id":1,"schema":'
                              b'"{\\"type\\":\\"string\\"}","schemaType":"JSON",'
                              b'"references":[],"deleted":false,"metadata":null}')
    assert value == SchemaValue("orders-value", 1, 1, '{"type":"string"}', SchemaType.JSON)
    config = decode_value(ConfigKey(None), b'{"compatibilityLevel":"FULL","normalize":true}')
    assert config == ConfigValue("FULL")
    assert isinstance(config, ConfigValue) and config.extra == {"normalize": True}
    assert encode_value(config) == b'{"normalize":true,"compatibilityLevel":"FULL"}'
    assert decode_value(ConfigKey("x"), b'{"compatibility":"NONE"}') == ConfigValue("NONE")
    assert decode_value(ModeKey(None), b'{"mode":"IMPORT"}') == ModeValue("IMPORT")
    assert decode_value(DeleteSubjectKey("s"), b'{"subject":"s","version":3}') == (
        DeleteSubjectValue("s", 3))
    assert decode_value(ClearSubjectKey("s"), b'{"subject":"s"}') == ClearSubjectValue("s")
    assert decode_value(NoopKey(), b"{}") is None
    assert decode_value(SchemaKey("s", 1), None) is None
    assert encode_value(None) is None


@pytest.mark.parametrize("data", [
    b"not json", b"[1]", b'{"keytype":"OTHER","magic":0}', b'{"keytype":"SCHEMA","subject":"s"}',
    b'{"keytype":"SCHEMA","subject":3,"version":1,"magic":1}',
    b'{"keytype":"SCHEMA","subject":"s","version":true,"magic":1}', b"\xff\xfe",
])
def test_bad_keys(data: bytes) -> None:
    with pytest.raises(RecordFormatError):
        decode_key(data)


@pytest.mark.parametrize(("key", "data"), [
    (SchemaKey("s", 1), b'{"subject":"s","version":1,"id":1}'),
    (SchemaKey("s", 1), b'{"subject":"s","version":1,"id":1,"schema":"x","schemaType":"XML"}'),
    (SchemaKey("s", 1), b'{"subject":"s","version":1,"id":1,"schema":"x","references":{}}'),
    (SchemaKey("s", 1), b'{"subject":"s","version":1,"id":1,"schema":"x","references":[1]}'),
    (ConfigKey(None), b'{"mode":"x"}'),
    (ModeKey(None), b'{}'),
    (DeleteSubjectKey("s"), b'{"subject":"s"}'),
    (ClearSubjectKey("s"), b"3"),
])
def test_bad_values(key: Key, data: bytes) -> None:
    with pytest.raises(RecordFormatError):
        decode_value(key, data)


TEXT = st.text(min_size=1, max_size=12)
VERSIONS = st.integers(1, 2**31 - 1)
REFS = st.lists(st.builds(SchemaReference, TEXT, TEXT, VERSIONS), max_size=3).map(tuple)
KEYS = st.one_of(
    st.builds(SchemaKey, TEXT, VERSIONS), st.builds(ConfigKey, st.none() | TEXT),
    st.builds(ModeKey, st.none() | TEXT), st.builds(DeleteSubjectKey, TEXT),
    st.builds(ClearSubjectKey, TEXT), st.just(NoopKey()),
)


@given(KEYS)
def test_keys_round_trip(key: Key) -> None:
    assert decode_key(encode_key(key)) == key


@given(TEXT, VERSIONS, st.integers(1, 2**31 - 1), st.text(max_size=40),
       st.sampled_from(SchemaType), REFS, st.booleans())
def test_schema_values_round_trip(subject: str, version: int, schema_id: int, schema: str,
                                  schema_type: SchemaType,
                                  references: tuple[SchemaReference, ...],
                                  deleted: bool) -> None:
    value = SchemaValue(subject, version, schema_id, schema, schema_type, references, deleted)
    key = SchemaKey(subject, version)
    record = Record(key, value)
    key_bytes, value_bytes = record.encode()
    assert decode_key(key_bytes) == key
    assert decode_value(key, value_bytes) == value


def test_delete_and_clear_subject_values_round_trip() -> None:
    delete = DeleteSubjectValue("s", 4)
    clear = ClearSubjectValue("s")
    assert encode_value(delete) == b'{"subject":"s","version":4}'
    assert encode_value(clear) == b'{"subject":"s"}'
    assert decode_value(DeleteSubjectKey("s"), encode_value(delete)) == delete
    assert decode_value(ClearSubjectKey("s"), encode_value(clear)) == clear
    assert encode_value(ModeValue("READONLY")) == b'{"mode":"READONLY"}'
