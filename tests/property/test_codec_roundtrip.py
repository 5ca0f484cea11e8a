"""Every served API version round-trips through kio's writer and strom's safe decoder, and the
safe decoder agrees with kio's native reader on well-formed bytes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.serial import entity_reader, entity_writer

from strom.broker.registry import load_handlers
from strom.protocol.messages import request_type, response_type
from strom.protocol.safe_decoder import decode_exact
from tests.schema_strategies import entities

SERVED = sorted(
    (spec.key, version)
    for spec in load_handlers().values()
    for version in range(spec.min_version, spec.max_version + 1)
)


def _schemas() -> list[Any]:
    out = []
    for key, version in SERVED:
        req = request_type(key, version)
        assert req is not None, f"no request schema for API {key} v{version}"
        out.append(pytest.param(req, id=f"{req.__name__}-v{version}"))
        resp = response_type(key, version)
        out.append(pytest.param(resp, id=f"{resp.__name__}-v{version}"))
    return out


def encode(entity: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


@pytest.mark.parametrize("schema", _schemas())
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(schema: type[Any], data: st.DataObject) -> None:
    entity = data.draw(entities(schema))
    raw = encode(entity)
    decoded = decode_exact(schema, raw)
    assert decoded == entity
    # kio's native reader is trusted only with bytes that kio itself wrote.
    native, size = entity_reader(schema)(raw, 0)
    assert size == len(raw)
    assert native == decoded
