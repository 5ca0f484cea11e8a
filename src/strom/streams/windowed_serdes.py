"""Serdes for windowed keys, writing Kafka's formats so that a Java application reads them:
a time window's key is the inner key's bytes then the window start (8 bytes, big-endian; the
end is start + size, which the reader must know); a session's is the inner key's bytes, the
session end, then its start (8 bytes each).

    windowed.to_stream().to("counts", Produced(
        WindowedSerdes.time_windowed(Serdes.String(), timedelta(minutes=5)), Serdes.Long()))
"""

from __future__ import annotations

import struct
from typing import Any, Final

from strom.streams.serdes import Serde, SerializationError
from strom.streams.windows import Duration, Window, Windowed, to_ms

_LONG: Final = struct.Struct(">q")
_TWO_LONGS: Final = struct.Struct(">qq")
_MAX_TIME: Final = 2**63 - 1


def _inner_bytes(inner: Serde[Any], topic: str, value: Any) -> bytes:
    if not isinstance(value, Windowed):
        raise SerializationError(f"{topic}: a windowed serde got {type(value).__name__}, "
                                 "not a Windowed key")
    data = inner.serialize(topic, value.key)
    if data is None:
        raise SerializationError(f"{topic}: a windowed key needs a key")
    return data


def _window(topic: str, start: int, end: int) -> Window:
    try:
        return Window(start, end)
    except ValueError as exc:
        raise SerializationError(f"{topic}: {exc}") from None


class TimeWindowedSerde:
    """Windowed keys of time (and sliding) windows of `window_size_ms`."""

    def __init__(self, inner: Serde[Any], window_size: Duration) -> None:
        self.inner = inner
        self.window_size_ms = to_ms(window_size, "window size")

    def serialize(self, topic: str, value: Windowed | None) -> bytes | None:
        if value is None:
            return None
        return _inner_bytes(self.inner, topic, value) + _LONG.pack(value.window.start)

    def deserialize(self, topic: str, data: bytes | None) -> Windowed | None:
        if data is None:
            return None
        if len(data) < _LONG.size:
            raise SerializationError(f"{topic}: a time-windowed key has at least 8 bytes, "
                                     f"not {len(data)}")
        start = _LONG.unpack_from(data, len(data) - _LONG.size)[0]
        window = _window(topic, start, min(start + self.window_size_ms, _MAX_TIME))
        return Windowed(self.inner.deserialize(topic, bytes(data[:-_LONG.size])), window)


class SessionWindowedSerde:
    """Windowed keys of session windows."""

    def __init__(self, inner: Serde[Any]) -> None:
        self.inner = inner

    def serialize(self, topic: str, value: Windowed | None) -> bytes | None:
        if value is None:
            return None
        return _inner_bytes(self.inner, topic, value) + _TWO_LONGS.pack(value.window.end,
                                                                          value.window.start)

    def deserialize(self, topic: str, data: bytes | None) -> Windowed | None:
        if data is None:
            return None
        if len(data) < _TWO_LONGS.size:
            raise SerializationError(f"{topic}: a session-windowed key has at least 16 "
                                     f"bytes, not {len(data)}")
        end, start = _TWO_LONGS.unpack_from(data, len(data) - _TWO_LONGS.size)
        window = _window(topic, start, end)
        return Windowed(self.inner.deserialize(topic, bytes(data[:-_TWO_LONGS.size])), window)


class WindowedSerdes:
    """WindowedSerdes.time_windowed(inner, size) and .session_windowed(inner), as in Kafka."""

    @staticmethod
    def time_windowed(inner: Serde[Any], window_size: Duration) -> TimeWindowedSerde:
        return TimeWindowedSerde(inner, window_size)

    @staticmethod
    def session_windowed(inner: Serde[Any]) -> SessionWindowedSerde:
        return SessionWindowedSerde(inner)
