"""Kafka primitives for the records of the internal topics (`__consumer_offsets`,
`__transaction_state`): a reader that checks every length against the bytes left, and the few
writers the formats share."""

from __future__ import annotations

import struct
from typing import Final

MAX_TAGGED_FIELDS: Final = 1024


class LogFormatError(ValueError):
    """The bytes are not an internal-topic key or value this broker can read."""


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def legacy_string(value: str) -> bytes:
    """An int16-length string, as keys are written."""
    raw = value.encode()
    if len(raw) > 0x7FFF:
        raise LogFormatError(f"string of {len(raw)} bytes does not fit an int16 length")
    return struct.pack(">h", len(raw)) + raw


class LogReader:
    """Reads Kafka primitives from `buf`, checking each length against the bytes left;
    `flexible` selects compact lengths (uvarint + 1) over legacy ones."""

    __slots__ = ("buf", "flexible", "pos")

    def __init__(self, buf: bytes, flexible: bool = False) -> None:
        self.buf = buf
        self.pos = 0
        self.flexible = flexible

    def left(self) -> int:
        return len(self.buf) - self.pos

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or size > self.left():
            raise LogFormatError(f"{what}: needs {size} bytes, {self.left()} left")
        chunk = self.buf[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def fixed(self, fmt: str, what: str) -> int:
        value: int = struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]
        return value

    def int16(self, what: str) -> int:
        return self.fixed(">h", what)

    def int32(self, what: str) -> int:
        return self.fixed(">i", what)

    def int64(self, what: str) -> int:
        return self.fixed(">q", what)

    def uvarint(self, what: str) -> int:
        value = 0
        for shift in range(0, 35, 7):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise LogFormatError(f"{what}: unsigned varint longer than 5 bytes")

    def _length(self, what: str, legacy_fmt: str) -> int:
        if self.flexible:
            return self.uvarint(what) - 1
        return self.fixed(legacy_fmt, what)

    def nullable_string(self, what: str) -> str | None:
        size = self._length(what, ">h")
        if size == -1:
            return None
        try:
            return self.take(size, what).decode()
        except UnicodeDecodeError as exc:
            raise LogFormatError(f"{what}: not UTF-8 ({exc})") from None

    def string(self, what: str) -> str:
        value = self.nullable_string(what)
        if value is None:
            raise LogFormatError(f"{what}: null where a string is required")
        return value

    def bytes_(self, what: str) -> bytes:
        return self.take(self._length(what, ">i"), what)

    def array_count(self, what: str, min_element_bytes: int = 1,
                    nullable: bool = False) -> int:
        """An array count (-1 is null, read as empty when `nullable`), bounded by the bytes
        left: every element takes at least `min_element_bytes`."""
        count = self._length(what, ">i")
        if count == -1 and nullable:
            return 0
        if count < 0 or count * min_element_bytes > self.left():
            raise LogFormatError(f"{what}: bad array count {count}")
        return count

    def skip_tagged_fields(self, what: str) -> None:
        if not self.flexible:
            return
        count = self.uvarint(what)
        if count > MAX_TAGGED_FIELDS:
            raise LogFormatError(f"{what}: {count} tagged fields")
        for _ in range(count):
            self.uvarint(what)
            self.take(self.uvarint(what), what)

    def end(self, what: str) -> None:
        if self.pos != len(self.buf):
            raise LogFormatError(f"{what}: {self.left()} trailing bytes")
