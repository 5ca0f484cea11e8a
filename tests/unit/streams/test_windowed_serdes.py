"""Windowed key serdes write Kafka's formats (time windows: key then 8-byte start; sessions:
key, 8-byte end, 8-byte start) and read back what they wrote."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.streams import Serdes, SerializationError, Window, Windowed, WindowedSerdes

S = Serdes.String()
TIMES = st.integers(0, 2**62)


@given(st.text(), TIMES, st.integers(1, 2**40))
def test_time_windowed_round_trip(key: str, start: int, size: int) -> None:
    serde = WindowedSerdes.time_windowed(S, size)
    data = serde.serialize("t", Windowed(key, Window(start, start + size)))
    assert data == key.encode() + start.to_bytes(8, "big")
    assert serde.deserialize("t", data) == Windowed(key, Window(start, start + size))


@given(st.binary(), TIMES, TIMES)
def test_session_windowed_round_trip(key: bytes, one: int, two: int) -> None:
    window = Window(min(one, two), max(one, two))
    serde = WindowedSerdes.session_windowed(Serdes.Bytes())
    data = serde.serialize("t", Windowed(key, window))
    assert data == key + window.end.to_bytes(8, "big") + window.start.to_bytes(8, "big")
    assert serde.deserialize("t", data) == Windowed(key, window)


def test_bad_input_is_refused() -> None:
    time_windowed = WindowedSerdes.time_windowed(S, 10)
    assert time_windowed.serialize("t", None) is None
    assert time_windowed.deserialize("t", None) is None
    with pytest.raises(SerializationError, match="not a Windowed key"):
        time_windowed.serialize("t", "k")  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="needs a key"):
        time_windowed.serialize("t", Windowed(None, Window(0, 10)))
    with pytest.raises(SerializationError, match="at least 8 bytes"):
        time_windowed.deserialize("t", b"abc")
    with pytest.raises(SerializationError, match="at least 16 bytes"):
        WindowedSerdes.session_windowed(S).deserialize("t", b"k" + bytes(8))
    with pytest.raises(SerializationError, match="start <= end"):  # end before start
        WindowedSerdes.session_windowed(S).deserialize("t", b"k" + bytes(8) + (1).to_bytes(
            8, "big"))
