"""Hypothesis strategies that build any kio schema entity with random field values."""

from __future__ import annotations

import dataclasses
import datetime
import typing
from functools import cache
from typing import Any

from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _scalar(kafka_type: str) -> st.SearchStrategy[Any]:
    if kafka_type in _INT_RANGES:
        lo, hi = _INT_RANGES[kafka_type]
        return st.integers(lo, hi)
    simple: dict[str, st.SearchStrategy[Any]] = {
        "bool": st.booleans(),
        "float64": st.floats(allow_nan=False),
        "string": st.text(max_size=20),
        "bytes": st.binary(max_size=40),
        "records": st.binary(max_size=40),
        "uuid": st.uuids().filter(lambda u: u.int != 0),
        "error_code": st.sampled_from(list(ErrorCode)),
        "timedelta_i32": st.integers(0, 2**31 - 1).map(
            lambda ms: datetime.timedelta(milliseconds=ms)),
        "timedelta_i64": st.integers(0, 2**40).map(
            lambda ms: datetime.timedelta(milliseconds=ms)),
        "datetime_i64": st.integers(0, 2**41).map(
            lambda ms: _EPOCH + datetime.timedelta(milliseconds=ms)),
    }
    return simple[kafka_type]


def _field(field: dataclasses.Field[Any], hint: Any) -> st.SearchStrategy[Any]:
    kind = classify_field(field)
    optional = is_optional(field) and get_field_tag(field) is None
    inner: st.SearchStrategy[Any]
    if isinstance(kind, PrimitiveField):
        inner = _scalar(get_schema_field_type(field))
    elif isinstance(kind, PrimitiveTupleField):
        inner = st.lists(_scalar(get_schema_field_type(field)), max_size=3).map(tuple)
    elif isinstance(kind, EntityField):
        inner = st.deferred(lambda: entities(kind.type_))
    else:
        assert isinstance(kind, EntityTupleField)
        inner = st.lists(st.deferred(lambda: entities(kind.type_)), max_size=2).map(tuple)
    if optional and get_schema_field_type_or_none(field) != "uuid":
        return st.none() | inner
    return inner


def get_schema_field_type_or_none(field: dataclasses.Field[Any]) -> str | None:
    value = field.metadata.get("kafka_type")
    return value if isinstance(value, str) else None


@cache
def entities(entity_type: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(entity_type)
    fields = {f.name: _field(f, hints[f.name]) for f in dataclasses.fields(entity_type)}
    return st.builds(entity_type, **fields)
