"""Serdes: how keys and values become bytes on a topic and back (Kafka Streams' Serde).

A `Serde` has `serialize(topic, value) -> bytes | None` and `deserialize(topic, data) -> value`;
None passes through both ways (a tombstone stays a tombstone). The built-in ones write what
Kafka's own serializers write, so a Java application reads what a strom.streams one writes:
integers and longs big-endian two's complement (4 and 8 bytes), doubles IEEE 754 big-endian,
strings UTF-8, JSON as UTF-8 text. `JsonSerde(SomeDataclass)` (or a pydantic model) turns the
JSON object into that type.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Callable
from typing import Any, Final, Generic, Protocol, TypeVar

T = TypeVar("T")


class SerializationError(ValueError):
    """A value its serde cannot write, or bytes it cannot read; says which topic and why."""


class Serde(Protocol[T]):
    def serialize(self, topic: str, value: T | None) -> bytes | None: ...

    def deserialize(self, topic: str, data: bytes | None) -> T | None: ...


class BytesSerde:
    """Bytes as they are."""

    def serialize(self, topic: str, value: bytes | None) -> bytes | None:
        if value is not None and not isinstance(value, bytes | bytearray | memoryview):
            raise SerializationError(f"{topic}: the bytes serde got {type(value).__name__}")
        return None if value is None else bytes(value)

    def deserialize(self, topic: str, data: bytes | None) -> bytes | None:
        return data


class StringSerde:
    """UTF-8 text (Kafka's StringSerializer)."""

    def serialize(self, topic: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise SerializationError(f"{topic}: the string serde got {type(value).__name__}")
        return value.encode()

    def deserialize(self, topic: str, data: bytes | None) -> str | None:
        if data is None:
            return None
        try:
            return bytes(data).decode()
        except UnicodeDecodeError as exc:
            raise SerializationError(f"{topic}: not UTF-8 text: {exc}") from None


class _StructSerde:
    def __init__(self, fmt: str, name: str, kind: type) -> None:
        self._struct = struct.Struct(fmt)
        self._name = name
        self._kind = kind

    def serialize(self, topic: str, value: Any) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, self._kind) or isinstance(value, bool):
            raise SerializationError(f"{topic}: the {self._name} serde got "
                                     f"{type(value).__name__}")
        try:
            return self._struct.pack(value)
        except struct.error as exc:
            raise SerializationError(f"{topic}: {value!r} is not a {self._name}: {exc}"
                                     ) from None

    def deserialize(self, topic: str, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) != self._struct.size:
            raise SerializationError(f"{topic}: a {self._name} is {self._struct.size} bytes, "
                                     f"not {len(data)}")
        return self._struct.unpack(data)[0]


class IntegerSerde(_StructSerde):
    """4-byte big-endian signed integers (Kafka's IntegerSerializer)."""

    def __init__(self) -> None:
        super().__init__(">i", "integer", int)


class LongSerde(_StructSerde):
    """8-byte big-endian signed integers (Kafka's LongSerializer)."""

    def __init__(self) -> None:
        super().__init__(">q", "long", int)


class DoubleSerde(_StructSerde):
    """8-byte IEEE 754 big-endian (Kafka's DoubleSerializer)."""

    def __init__(self) -> None:
        super().__init__(">d", "double", float | int)  # type: ignore[arg-type]


class JsonSerde(Generic[T]):
    """JSON as UTF-8 text; with `cls` (a dataclass or a pydantic model) objects of that type
    are written as JSON objects and read back as that type."""

    def __init__(self, cls: type[T] | None = None, *, default: Callable[[Any], Any] | None = None
                 ) -> None:
        self.cls = cls
        self._default = default
        self._load: Callable[[Any], Any] | None = None
        self._dump: Callable[[Any], Any] | None = None
        if cls is not None:
            if dataclasses.is_dataclass(cls):
                self._load = lambda data: cls(**data)
                self._dump = dataclasses.asdict
            elif hasattr(cls, "model_validate") and hasattr(cls, "model_dump"):
                self._load = getattr(cls, "model_validate")  # noqa: B009 (pydantic v2)
                self._dump = lambda obj: obj.model_dump(mode="json")
            else:
                raise TypeError(f"JsonSerde({cls.__name__}): give a dataclass or a pydantic "
                                "model (or no class for plain JSON values)")

    def serialize(self, topic: str, value: T | None) -> bytes | None:
        if value is None:
            return None
        try:
            plain = self._dump(value) if self._dump is not None else value
            return json.dumps(plain, separators=(",", ":"), default=self._default).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"{topic}: cannot write {type(value).__name__} as JSON: "
                                     f"{exc}") from None

    def deserialize(self, topic: str, data: bytes | None) -> T | None:
        if data is None:
            return None
        try:
            loaded = json.loads(data)
            return self._load(loaded) if self._load is not None else loaded  # type: ignore[no-any-return]
        except (ValueError, TypeError) as exc:
            what = f"JSON for {self.cls.__name__}" if self.cls is not None else "JSON"
            raise SerializationError(f"{topic}: not {what}: {exc}") from None


class Serdes:
    """The built-in serdes by name: Serdes.String(), Serdes.Long(), ... as in Kafka Streams."""

    @staticmethod
    def Bytes() -> BytesSerde:
        return BYTES

    @staticmethod
    def String() -> StringSerde:
        return STRING

    @staticmethod
    def Integer() -> IntegerSerde:
        return INTEGER

    @staticmethod
    def Long() -> LongSerde:
        return LONG

    @staticmethod
    def Double() -> DoubleSerde:
        return DOUBLE

    @staticmethod
    def Json(cls: type[T] | None = None) -> JsonSerde[T]:
        return JsonSerde(cls)


BYTES: Final = BytesSerde()
STRING: Final = StringSerde()
INTEGER: Final = IntegerSerde()
LONG: Final = LongSerde()
DOUBLE: Final = DoubleSerde()
JSON: Final[JsonSerde[Any]] = JsonSerde()
