"""The built-in serdes write what Kafka's serializers write, and refuse what they cannot."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.streams import JsonSerde, Serdes, SerializationError


@given(st.integers(-(2**31), 2**31 - 1))
def test_integer_round_trip_big_endian(value: int) -> None:
    data = Serdes.Integer().serialize("t", value)
    assert data == value.to_bytes(4, "big", signed=True)
    assert Serdes.Integer().deserialize("t", data) == value


@given(st.integers(-(2**63), 2**63 - 1))
def test_long_round_trip_big_endian(value: int) -> None:
    data = Serdes.Long().serialize("t", value)
    assert data == value.to_bytes(8, "big", signed=True)
    assert Serdes.Long().deserialize("t", data) == value


@given(st.floats(allow_nan=False))
def test_double_round_trip(value: float) -> None:
    assert Serdes.Double().deserialize("t", Serdes.Double().serialize("t", value)) == value


def test_none_passes_both_ways_and_bad_input_is_refused() -> None:
    for serde in (Serdes.String(), Serdes.Long(), Serdes.Bytes(), Serdes.Json()):
        assert serde.serialize("t", None) is None
        assert serde.deserialize("t", None) is None
    with pytest.raises(SerializationError, match="4 bytes, not 3"):
        Serdes.Integer().deserialize("t", b"abc")
    with pytest.raises(SerializationError, match="got str"):
        Serdes.Long().serialize("t", "1")
    with pytest.raises(SerializationError, match="got bool"):
        Serdes.Long().serialize("t", True)
    with pytest.raises(SerializationError, match="not a integer"):
        Serdes.Integer().serialize("t", 2**40)
    with pytest.raises(SerializationError, match="UTF-8"):
        Serdes.String().deserialize("t", b"\xff")
    with pytest.raises(SerializationError, match="not JSON"):
        Serdes.Json().deserialize("t", b"{")
    assert math.isnan(Serdes.Double().deserialize("t", Serdes.Double().serialize(
        "t", float("nan"))))


@dataclasses.dataclass
class Order:
    id: int
    item: str


def test_json_serde_with_a_dataclass() -> None:
    serde = JsonSerde(Order)
    data = serde.serialize("orders", Order(1, "pen"))
    assert data == b'{"id":1,"item":"pen"}'
    assert serde.deserialize("orders", data) == Order(1, "pen")
    with pytest.raises(SerializationError, match="JSON for Order"):
        serde.deserialize("orders", b'{"id":1}')
    with pytest.raises(TypeError, match="dataclass or a pydantic"):
        JsonSerde(int)


@pytest.mark.parametrize("name", ["long", "LongSerde", "org.apache.kafka.common.serialization"
                                  ".Serdes$LongSerde", "Serdes.LongSerde"])
def test_default_serdes_by_name_and_by_kafkas_class_names(name: str) -> None:
    from strom.streams import StreamsConfig

    config = StreamsConfig({"default.value.serde": name}, require_bootstrap=False)
    assert config.default_value_serde is Serdes.Long()
